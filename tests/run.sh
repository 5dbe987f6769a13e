#!/usr/bin/env bash
# The test command: installs what is missing, builds, then runs unit tests, Rust end-to-end
# tests, the official-SDK tests in Node and the benchmark smoke run. Works on a fresh machine.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

say() { printf '\n==> %s\n' "$*"; }

apt_install() {
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    if [ -z "${NERVE_APT_UPDATED:-}" ]; then
      DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
      export NERVE_APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
  else
    echo "missing: $* (install it, or run as root so this script can)" >&2
    exit 1
  fi
}

say "prerequisites"
command -v redis-server >/dev/null || apt_install redis-server
command -v redis-cli >/dev/null || apt_install redis-tools
command -v node >/dev/null || apt_install nodejs npm
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
