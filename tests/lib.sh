# Shared by the suites and tests/run.sh. `tests/run.sh` builds the workspace once and exports
# NERVE_BIN; a suite run on its own builds the hub binary itself.

# Installs Debian packages when run as root (updating the package lists once per run);
# otherwise says what is missing and stops.
need() {
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

nerve_bin() {
  local root=$1
  if [ -z "${NERVE_BIN:-}" ]; then
    echo "cargo build -p nerve-hub --bin nerve"
    cargo build -q --locked -p nerve-hub --bin nerve
    NERVE_BIN="${CARGO_TARGET_DIR:-$root/target}/debug/nerve"
  fi
  [ -x "$NERVE_BIN" ] || { echo "no hub binary at $NERVE_BIN" >&2; exit 1; }
  export NERVE_BIN
}
