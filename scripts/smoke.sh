#!/usr/bin/env bash
# Caller-version smoke runs: the tests marked "smoke" (chosen in tests/smoke.py:
# pipes, executor, multipipe, config, logging, under spawn, fork and forkserver)
# with each supported CPython at the ends of the range as the *caller*, in its
# own virtual environment (.venv-3.9, .venv-3.13: made by setup.sh with the test
# extra, skipped when already done).
#
# forkserver is the default start method of these runs (as it is on Linux from
# Python 3.14), and a DeprecationWarning is an error. 3.12+ warns when a
# multi-threaded process forks, but os.fork() swallows that warning even under
# -W error, so SSHPIPE_TEST_FORK_CHECK=1 (tests/smoke.py) fails the run when the
# test process forks while one of sshpipe's own threads runs.
#
# SSHPIPE_SMOKE_PYTHONS: the versions (default "3.9 3.13"), each found under
# pyenv or as pythonX.Y on PATH; SSHPIPE_SMOKE_TIMEOUT: seconds one version's
# run may take (default 600; a run takes about 3 minutes). Extra arguments go to
# pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

VERSIONS=${SSHPIPE_SMOKE_PYTHONS:-3.9 3.13}
BUDGET=${SSHPIPE_SMOKE_TIMEOUT:-600}

say() { echo "smoke: $*" >&2; }

find_python() {
    # The newest installed CPython $1 (e.g. 3.9): pyenv's first, then PATH.
    local version=$1 root found
    if command -v pyenv >/dev/null 2>&1; then
        root=$(pyenv root)
        found=$(ls -d "$root"/versions/"$version".*/bin/python"$version" 2>/dev/null \
                | sort -V | tail -n 1 || true)
        if [ -n "$found" ]; then echo "$found"; return; fi
    fi
    command -v "python$version" || true
}

status=0
summary=()
for version in $VERSIONS; do
    python=$(find_python "$version")
    if [ -z "$python" ]; then
        say "no CPython $version found (pyenv install $version)"
        summary+=("CPython $version: not found")
        status=1
        continue
    fi
    PYTHON=$python SSHPIPE_VENV=".venv-$version" SSHPIPE_EXTRAS=test bash scripts/setup.sh
    # Only the files tests/smoke.py lists are collected.
    read -r -a files <<< "$(cd tests && "../.venv-$version/bin/python" -c \
        'import smoke; print(smoke.paths())')"
    say "CPython $version ($python): pytest -m smoke, default start method forkserver"
    start=$(date +%s)
    set +e
    SSHPIPE_TEST_START_METHOD=forkserver SSHPIPE_TEST_FORK_CHECK=1 timeout -k 30 "$BUDGET" \
        ".venv-$version/bin/python" -m pytest -m smoke -q -p no:cacheprovider \
        -W error::DeprecationWarning "$@" "${files[@]}"
    code=$?
    set -e
    seconds=$(( $(date +%s) - start ))
    if [ "$code" -eq 124 ]; then
        summary+=("CPython $version: timed out after ${BUDGET} s")
        status=1
    elif [ "$code" -ne 0 ]; then
        summary+=("CPython $version: failed (pytest exit status $code) in ${seconds} s")
        status=1
    else
        summary+=("CPython $version: passed in ${seconds} s")
    fi
done
for line in "${summary[@]}"; do say "$line"; done
exit "$status"
