# Shared by the suites. `tests/run.sh` builds the workspace once and exports NERVE_BIN; a suite
# run on its own builds the hub binary itself.
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
