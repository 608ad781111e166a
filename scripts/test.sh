#!/usr/bin/env bash
# Set up (see setup.sh) and run the whole test suite against a real local sshd
# (and, as root, network-namespace hosts). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest "$@"
