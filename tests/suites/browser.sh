#!/usr/bin/env bash
# The demo pages in headless Chromium (Debian's package, driven by playwright-core from npm)
# against the real `nerve` binary and the support-chat example agents. Screenshots of each page
# go to tests/artifacts/. The pages are also checked through a hub restart and against an agent
# written as the Python client README shows.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"

. "$root/tests/lib.sh"
[ -x /usr/bin/chromium ] || need chromium
python3 -c 'import ensurepip, venv' 2>/dev/null || need python3-venv
command -v node >/dev/null || { echo "node is required (Node 20 or later)" >&2; exit 1; }

nerve_bin "$root"

venv="$root/target/py-examples-venv"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install -q ./clients/python
export PYTHON="$venv/bin/python"

cd tests/browser
npm ci --no-audit --no-fund --loglevel=error
timeout --signal=TERM 300 node --test --test-concurrency=1 --test-force-exit --test-reporter=spec test/*.test.js
