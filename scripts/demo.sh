#!/usr/bin/env bash
# Set up (see setup.sh) and run the demo: start a local sshd, start a remote agent
# over SSH, send it work and print what comes back.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec "${SSHPIPE_VENV:-.venv}/bin/sshpipe" demo "$@"
