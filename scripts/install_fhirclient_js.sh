#!/bin/sh
# Install the JS SMART client (fhirclient 2.6.3, Apache-2.0, from the npm registry) that the
# client-library tests load in headless Chromium. Idempotent; prints the browser bundle's
# path. Usage: scripts/install_fhirclient_js.sh [PREFIX] (default: tests/vectors/smart_app/.npm)
# When npm itself is missing, installs Debian's nodejs and npm (needs root).
set -eu

prefix="${1:-$(dirname "$0")/../tests/vectors/smart_app/.npm}"
bundle="$prefix/node_modules/fhirclient/build/fhir-client.min.js"
if [ ! -f "$bundle" ]; then
    if ! command -v npm >/dev/null 2>&1; then
        if [ "$(id -u)" != "0" ]; then
            echo "install_fhirclient_js.sh: npm is missing and installing it needs root" >&2
            exit 1
        fi
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -q >&2
        apt-get install -y -q --no-install-recommends nodejs npm >&2
    fi
    npm install --silent --no-audit --no-fund --no-save --prefix "$prefix" fhirclient@2.6.3 >&2
fi
echo "$bundle"
