#!/usr/bin/env bash
# The TypeScript client (clients/js) against the real `nerve` binary: installs the locked npm
# packages, compiles with tsc, builds the hub, runs the tests with Node's built-in runner.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)

command -v node >/dev/null || { echo "node is required (Node 20 or later)" >&2; exit 1; }
command -v npm >/dev/null || { echo "npm is required" >&2; exit 1; }

. "$root/tests/lib.sh"
nerve_bin "$root"

cd clients/js
echo "npm ci (clients/js)"
npm ci --no-audit --no-fund --loglevel=error
npx tsc -p tsconfig.json
node --test --test-concurrency=2 --test-reporter=spec test/
