#!/usr/bin/env bash
# Set up a fresh machine for sshpipe: OpenSSH server/client and iproute2 from the
# system's packages (root only), then a virtual environment in .venv with sshpipe
# installed in editable mode with its test and benchmark extras and the joblib
# and dask extras their tests need.
#
# Each step says what it does and is skipped when already done: the install is
# redone only when pyproject.toml changed (its sha256 is kept in
# .venv/.sshpipe-setup), when the interpreter changed, or when .venv's sshpipe is
# not this checkout's. SSHPIPE_VENV names another environment directory, PYTHON
# the interpreter that creates it, SSHPIPE_EXTRAS the extras to install (default
# test,bench,joblib,dask; scripts/smoke.sh asks for test only).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${SSHPIPE_VENV:-.venv}
STAMP="$VENV/.sshpipe-setup"
EXTRAS=${SSHPIPE_EXTRAS:-test,bench,joblib,dask}

say() { echo "setup: $*" >&2; }

need=()
# Debian's own python3 ships venv separately.
"$PYTHON" -c "import venv, ensurepip" >/dev/null 2>&1 || need+=(python3-venv)
command -v sshd >/dev/null 2>&1 || [ -x /usr/sbin/sshd ] || need+=(openssh-server)
command -v ssh >/dev/null 2>&1 || need+=(openssh-client)
command -v ssh-keygen >/dev/null 2>&1 || need+=(openssh-client)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        say "missing ${need[*]}; install them (as root: apt-get install ${need[*]})"
        exit 1
    fi
    say "installing system packages: ${need[*]} (apt-get; a minute on a fresh machine)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if [ ! -x "$VENV/bin/python" ]; then
    say "creating the virtual environment $VENV with $("$PYTHON" -V 2>&1)"
    "$PYTHON" -m venv "$VENV"
fi

# What the install depends on: the package's metadata, the extras and the interpreter.
wanted="$(sha256sum pyproject.toml | cut -d' ' -f1) $EXTRAS $("$VENV/bin/python" -c \
    'import sys; print(sys.version.split()[0], sys.executable)')"
installed_here() {
    # Is the sshpipe that $VENV imports (from its own directory, not $PWD) this one?
    local python here
    python="$(cd "$VENV" && pwd -P)/bin/python"
    here="$(pwd -P)"
    (cd / && env -u PYTHONPATH "$python" -c '
import os, sys
import sshpipe
sys.exit(os.path.dirname(os.path.dirname(os.path.realpath(sshpipe.__file__))) != sys.argv[1])
' "$here") >/dev/null 2>&1
}
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$wanted" ] && installed_here; then
    say "sshpipe is installed in $VENV and pyproject.toml is unchanged: nothing to do"
    exit 0
fi
say "installing sshpipe (editable) with its extras $EXTRAS into $VENV" \
    "(pip; a minute or two the first time)"
rm -f "$STAMP"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -e ".[$EXTRAS]"
echo "$wanted" > "$STAMP"
say "done: $("$VENV/bin/python" -c 'import sshpipe; print("sshpipe", sshpipe.__version__)')" \
    "in $VENV"
