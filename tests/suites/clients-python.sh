#!/usr/bin/env bash
# The Python client (clients/python) against the real `nerve` binary: creates a venv with the
# pinned requirements, builds the hub, runs pytest.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)

command -v python3 >/dev/null || { echo "python3 (3.10 or later) is required" >&2; exit 1; }

. "$root/tests/lib.sh"
nerve_bin "$root"

cd clients/python
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/pip install --quiet --disable-pip-version-check -r requirements-test.txt
.venv/bin/python -m pytest -q tests
