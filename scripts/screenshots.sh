#!/usr/bin/env bash
# Regenerates the README's screenshots (docs/screenshots/*.jpg) from the browser tests:
# the same flow as `make test` (real server, Debian's Chromium), saving the catalog
# and player pages on the way.
set -euo pipefail
cd "$(dirname "$0")/.."
make --no-print-directory setup browser
VIDEOFLIX_SCREENSHOTS="$PWD/docs/screenshots" .venv/bin/python -m pytest tests/test_browser.py -q \
    -p no:cacheprovider -k "full_flow or 360"
ls -l docs/screenshots
