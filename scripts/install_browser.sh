#!/bin/sh
# Install the headless browser the browser tests drive: Debian's chromium (Playwright runs it
# through `executable_path`; it never downloads a browser build of its own).
# Idempotent: does nothing when /usr/bin/chromium is already there. Needs root (apt-get).
set -eu

if [ -x /usr/bin/chromium ]; then
    exit 0
fi
if [ "$(id -u)" != "0" ]; then
    echo "install_browser.sh: chromium is missing and installing it needs root" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends chromium fonts-dejavu-core
