#!/usr/bin/env bash
# Static checks, run by .ci/run before the tests and failing it: ruff's lint rules
# over every Python file, then mypy --strict over the sshpipe and workers packages
# (both configured in pyproject.toml). Needs the environment scripts/setup.sh
# makes (the test extra holds both tools). Extra arguments go to mypy.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${SSHPIPE_VENV:-.venv}/bin/python"
echo "check: ruff $("$PY" -m ruff --version | cut -d' ' -f2)" >&2
"$PY" -m ruff check --quiet .
echo "check: $("$PY" -m mypy --version | cut -d' ' -f1-2) --strict" >&2
"$PY" -m mypy "$@"
