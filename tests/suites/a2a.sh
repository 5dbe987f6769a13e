#!/usr/bin/env bash
# The official Python SDKs pinned in tests/python/requirements.txt against the real hub: A2A
# (a2a-sdk) against the A2A gateway and a Python bus agent on /bus/ws, A2A push notifications
# through a2a-sdk to a real webhook, the support-chat worked example, Web PubSub
# (azure-messaging-webpubsubclient and -service) on one node and on two nodes sharing a
# throwaway redis-server, and the protobuf subprotocols through a client that grpcio-tools
# generates from protocol/proto/webpubsub.v1.proto.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
. "$root/tests/lib.sh"
python3 -c 'import ensurepip, venv' 2>/dev/null || need python3-venv
nerve_bin "$root"
venv="$root/target/py-a2a-venv"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install -q -r tests/python/requirements.txt ./clients/python
cd tests/python
timeout 120 "$venv/bin/python" test_a2a_sdk.py
timeout 120 "$venv/bin/python" test_a2a_push_sdk.py
timeout 120 "$venv/bin/python" test_support_chat.py
timeout 300 "$venv/bin/python" test_webpubsub_sdk.py
timeout 300 "$venv/bin/python" test_protobuf_subprotocol.py
