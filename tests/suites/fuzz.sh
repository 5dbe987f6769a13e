#!/usr/bin/env bash
# A short fuzz run (cargo fuzz, libFuzzer) of every parser of untrusted input: the client frame
# parser, the service frame parser clients use, the protobuf frame reader, token verification,
# the OData filter parser and the agent bus envelope. Each target runs FUZZ_SECONDS (default
# 10); longer runs: see hub/docs/operations.md.
#
# cargo-fuzz needs nightly compiler flags; on a stable toolchain RUSTC_BOOTSTRAP=1 enables
# them. The sanitizer is off (-s none): the crates forbid unsafe code, so AddressSanitizer
# adds build time and little signal; panics, overflows and hangs are what this catches.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
seconds="${FUZZ_SECONDS:-10}"
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked --version 0.13.2
fi
cd "$root/hub/fuzz"
export RUSTC_BOOTSTRAP=1
for target in client_frame server_frame protobuf_frame mqtt_packet jwt_claims odata_filter bus_envelope; do
  echo "fuzz: $target for ${seconds}s"
  # A finding makes cargo fuzz exit non-zero and leaves the input under artifacts/<target>/.
  cargo fuzz run -s none "$target" -- -max_total_time="$seconds" -rss_limit_mb=2048 \
    -max_len=65536 2>&1 | tail -n 3
done
echo "fuzz: all targets clean"
