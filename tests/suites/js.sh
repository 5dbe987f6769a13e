#!/usr/bin/env bash
# Official Azure Web PubSub SDKs from npm (client, server REST, express upstream) against the real
# `nerve` binary: installs the locked npm packages, builds the hub, runs every test file with
# Node's built-in test runner.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)

command -v node >/dev/null || { echo "node is required (Node 20 or later)" >&2; exit 1; }
command -v npm >/dev/null || { echo "npm is required" >&2; exit 1; }

echo "npm ci (tests/js)"
(cd tests/js && npm ci --no-audit --no-fund --loglevel=error)

. "$root/tests/lib.sh"
nerve_bin "$root"

cd tests/js
# Each test file starts its own hub; two files at a time suits a 2-core machine. A file whose
# tests are done exits even if an SDK timer is still pending, and the whole run is capped.
timeout --signal=TERM 900 \
  node --test --test-concurrency=2 --test-force-exit --test-reporter=spec test/*.test.js
