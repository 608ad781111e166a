"""Zero-install start-up: sshpipe cold and warm starts next to execnet (issue 5).

One run starts its own LocalSSHServer (a real sshd on 127.0.0.1) and a bare
virtual environment (no sshpipe, no dill) as the remote interpreter, then times,
interleaved over the rounds:

==================  ===========================================================
column              what is timed
==================  ===========================================================
sshpipe_cold        ``SSHPipe(handler=..., python=bare).start()`` with an empty
                    remote cache: the bundle (agent runtime + dill) is sent
sshpipe_warm        the same with the bundle already cached: only its hash is
                    sent, the cached files are re-hashed before use
sshpipe_warm_value  warm, with a handler class defined in ``__main__`` (sent by
                    value, so the remote imports dill to load it)
execnet             ``execnet.makegateway("ssh=...//python=bare")`` (execnet
                    ships its own gateway source on every start; ssh -C)
==================  ===========================================================

Each sample is construction plus ``start()`` (or ``makegateway``) until the
remote answered, then a clean close. The table gives the median and the best of
the samples, and the bundle's size. Every column includes the remote login
shell's start-up ($SHELL -c reads ~/.bashrc under sshd), the SSH handshake and
the remote interpreter's start-up.

Usage: python benchmarks/bench_bootstrap.py [--rounds N] [--json]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
import venv

import paramiko  # noqa: F401  imported before timing: forked pipe children inherit it

from sshpipe import SSHPipe, SSHPipeHandler
from sshpipe.bootstrap import build_bundle
from sshpipe.testing import LocalSSHServer

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "handlers"))

from echo_handler import Echo  # noqa: E402  (shipped with modules=["echo_handler"])


class ByValueEcho(SSHPipeHandler):
    """Defined in __main__: travels by value, so the remote needs dill to load it."""

    def handle(self, received):
        self.reply(received)


def _bare_python(directory: str) -> str:
    venv.EnvBuilder(with_pip=False).create(directory)
    return os.path.join(directory, "bin", "python")


def _time_pipe(server, python, cache, handler, modules) -> float:
    started = time.perf_counter()
    pipe = SSHPipe(server.alias, handler=handler, modules=modules, config=server.config_path,
                   python=python, env={"XDG_CACHE_HOME": cache})
    pipe.start()
    elapsed = time.perf_counter() - started
    pipe.close(timeout=30)
    return elapsed


def _time_execnet(server, python) -> float:
    import execnet

    started = time.perf_counter()
    gateway = execnet.makegateway(
        f"ssh={server.alias}//ssh_config={server.config_path}//python={python}")
    elapsed = time.perf_counter() - started
    gateway.exit()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="sshpipe-bench-bootstrap-")
    samples = {"sshpipe_cold": [], "sshpipe_warm": [], "sshpipe_warm_value": [], "execnet": []}
    try:
        python = _bare_python(os.path.join(work, "venv"))
        warm_cache = os.path.join(work, "warm-cache")
        with LocalSSHServer(alias="bench-bootstrap") as server:
            _time_pipe(server, python, warm_cache, Echo, ["echo_handler"])  # fill the cache
            _time_pipe(server, python, warm_cache, ByValueEcho, [])
            for index in range(args.rounds):
                cold = os.path.join(work, f"cold-{index}")
                samples["sshpipe_cold"].append(
                    _time_pipe(server, python, cold, Echo, ["echo_handler"]))
                samples["sshpipe_warm"].append(
                    _time_pipe(server, python, warm_cache, Echo, ["echo_handler"]))
                samples["sshpipe_warm_value"].append(
                    _time_pipe(server, python, warm_cache, ByValueEcho, []))
                samples["execnet"].append(_time_execnet(server, python))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    bundle = build_bundle(("echo_handler",))
    result = {name: {"median_ms": statistics.median(values) * 1000,
                     "best_ms": min(values) * 1000} for name, values in samples.items()}
    execnet_ms = result["execnet"]["median_ms"]
    result["bundle"] = {"zip_bytes": bundle.size, "files": bundle.files}
    result["targets"] = {
        "warm <= 0.5 x execnet": result["sshpipe_warm"]["median_ms"] <= 0.5 * execnet_ms,
        "cold <= execnet": result["sshpipe_cold"]["median_ms"] <= execnet_ms,
    }
    result["machine"] = {"cpus": os.cpu_count(), "load": os.getloadavg()[0],
                         "python": platform.python_version(), "rounds": args.rounds}
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{'column':<20}{'median ms':>12}{'best ms':>10}")
    for name in samples:
        print(f"{name:<20}{result[name]['median_ms']:>12.0f}{result[name]['best_ms']:>10.0f}")
    print(f"bundle: {bundle.size} bytes zipped, {bundle.files} files")
    for target, met in result["targets"].items():
        print(f"  {'MET   ' if met else 'MISSED'} {target}")
    print(f"{args.rounds} rounds, {os.cpu_count()} cpus, load {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
