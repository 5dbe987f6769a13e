#!/usr/bin/env bash
# The test command: installs what is missing, builds, then runs unit tests, Rust end-to-end
# tests, the official-SDK tests in Node and the benchmark smoke run. Works on a fresh machine.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

say() { printf '\n==> %s\n' "$*"; }

. "$root/tests/lib.sh"

say "prerequisites"
command -v redis-server >/dev/null || need redis-server
command -v redis-cli >/dev/null || need redis-tools
command -v node >/dev/null || need nodejs npm
redis-server --version

say "build"
cargo build --workspace --all-targets --locked

# Every suite below uses this binary, so nothing is built or linked twice.
export NERVE_BIN="${CARGO_TARGET_DIR:-$root/target}/debug/nerve"

say "unit and Rust end-to-end tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast
else
  cargo test --workspace --locked --no-fail-fast
fi

for suite in tests/suites/*.sh; do
  [ -e "$suite" ] || continue
  say "suite: $(basename "$suite" .sh)"
  bash "$suite"
done

say "all tests passed"
