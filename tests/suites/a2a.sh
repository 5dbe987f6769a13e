#!/usr/bin/env bash
# The official A2A Python SDK (a2a-sdk, pinned in tests/python/requirements.txt) against the
# hub's A2A gateway and a Python bus agent on /bus/ws; plus the support-chat worked example.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
  if [ "$(id -u)" = 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
  else
    echo "missing: python3-venv" >&2
    exit 1
  fi
fi
. "$root/tests/lib.sh"
nerve_bin "$root"
venv="$root/target/py-a2a-venv"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install -q -r tests/python/requirements.txt
cd tests/python
timeout 120 "$venv/bin/python" test_a2a_sdk.py
timeout 120 "$venv/bin/python" test_support_chat.py
