#!/usr/bin/env bash
# Every example in README.md, the client READMEs and the worked example's README, run as
# written against a stock `nerve` (tests/docs/run_snippets.py says how): shell, Python (in a
# fresh venv, installed as the README says), JavaScript (with the official Azure packages and
# @nerve/client) and Rust (built against clients/rust).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"

. "$root/tests/lib.sh"
python3 -c 'import ensurepip, venv' 2>/dev/null || need python3-venv
command -v curl >/dev/null || need curl
command -v node >/dev/null || { echo "node is required (Node 20 or later)" >&2; exit 1; }

nerve_bin "$root"
bus_bin="$(dirname "$NERVE_BIN")/nerve-bus"
if [ ! -x "$bus_bin" ]; then
  echo "cargo build -p nerve-agentbus --bin nerve-bus"
  cargo build -q --locked -p nerve-agentbus --bin nerve-bus
fi

echo "npm ci (tests/js, clients/js)"
(cd tests/js && npm ci --no-audit --no-fund --loglevel=error)
(cd clients/js && npm ci --no-audit --no-fund --loglevel=error && npx tsc -p tsconfig.json)

# A reader starts from nothing: a new venv each run, filled by the READMEs' own pip lines.
rm -rf "${CARGO_TARGET_DIR:-$root/target}/doc-snippets/venv"
timeout --signal=TERM 1500 python3 tests/docs/run_snippets.py \
  README.md clients/python/README.md clients/js/README.md clients/rust/README.md \
  examples/support-chat/README.md
