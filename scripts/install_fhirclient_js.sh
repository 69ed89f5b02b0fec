#!/bin/sh
# Install the JS SMART client (fhirclient 2.6.3, Apache-2.0, from the npm registry) that the
# client-library tests load in headless Chromium. Idempotent; prints the browser bundle's
# path. Usage: scripts/install_fhirclient_js.sh [PREFIX] (default: tests/vectors/smart_app/.npm)
set -eu

prefix="${1:-$(dirname "$0")/../tests/vectors/smart_app/.npm}"
bundle="$prefix/node_modules/fhirclient/build/fhir-client.min.js"
if [ ! -f "$bundle" ]; then
    npm install --silent --no-audit --no-fund --no-save --prefix "$prefix" fhirclient@2.6.3 >&2
fi
echo "$bundle"
