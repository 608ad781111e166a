"""Zero-install start-up: sshpipe cold and warm starts next to execnet (issues 5, 11).

One run starts its own LocalSSHServer (a real sshd on 127.0.0.1) and a bare
virtual environment (no sshpipe, no dill) as the remote interpreter, then times,
interleaved over the rounds:

==================  ===========================================================
column              what is timed
==================  ===========================================================
sshpipe_cold        ``SSHPipe(handler=..., python=bare).start()`` with an empty
                    remote cache: the bundle (agent runtime + dill) is sent
sshpipe_warm        the same with the bundle already cached: only its hash is
                    sent; the cached bundle is verified before use
sshpipe_warm_value  warm, with a handler class defined in ``__main__`` (sent by
                    value, so the remote imports dill to load it)
sshpipe_exec        warm, a raw ``command`` (a Python script with sshpipe on its
                    path): since issue 11 it runs under the loader's supervisor
loader_warm         no SSH: the loader run locally with the bare Python and a
                    warm cache, from its start to the agent's hello (the remote
                    side's own cost: interpreter, cache check, imports, fork)
loader_warm_value   the same for the by-value handler (dill imported)
loader_warm*_cpu    CPU time (user + system) of those loader runs, start to
                    exit, agent and supervisor included: the remote's cost,
                    much steadier than wall time on a loaded machine
execnet             ``execnet.makegateway("ssh=...//python=bare")`` (execnet
                    ships its own gateway source on every start; ssh -C)
==================  ===========================================================

Each SSH sample is construction plus ``start()`` (or ``makegateway``) until the
remote answered, then a clean close. The table gives the median and the best of
the samples, and the bundle's size. The SSH columns include the remote login
shell's start-up ($SHELL -c reads ~/.bashrc under sshd), the SSH handshake and
the remote interpreter's start-up.

``--baseline DIR`` also times a second source tree (say, ``git worktree add
/tmp/base main``) in the same run: every round takes one sample of each column
from each tree, in turn, against the same sshd and bare Python, so that load
on a shared machine falls on both alike. Each tree's samples are taken in a
process of their own that imports that tree's sshpipe (``--sample``).

Usage: python benchmarks/bench_bootstrap.py [--rounds N] [--baseline DIR] [--json]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import venv

HERE = os.path.dirname(os.path.abspath(__file__))
TREE = os.path.dirname(HERE)
HANDLERS = os.path.join(HERE, "handlers")
ECHO_SCRIPT = os.path.join(HANDLERS, "echo_handler.py")
SSH_COLUMNS = ("sshpipe_cold", "sshpipe_warm", "sshpipe_warm_value", "sshpipe_exec")
LOCAL_COLUMNS = ("loader_warm", "loader_warm_value", "loader_warm_cpu", "loader_warm_value_cpu")


def _bare_python(directory: str) -> str:
    venv.EnvBuilder(with_pip=False).create(directory)
    return os.path.join(directory, "bin", "python")


# -- one tree's samples (run with that tree's sshpipe on sys.path) -----------------
def _sample(args) -> None:
    """Take one sample of every column with the sshpipe this process imports."""
    import paramiko  # noqa: F401  imported before timing: forked pipe children inherit it

    from sshpipe import SSHPipe, SSHPipeHandler, protocol, serial
    from sshpipe.bootstrap import LOADER_SOURCE, LOADER_SYNC, build_bundle

    sys.path.insert(0, HANDLERS)
    from echo_handler import Echo  # shipped with modules=["echo_handler"]

    class ByValueEcho(SSHPipeHandler):
        """Defined in __main__: travels by value, so the remote needs dill to load it."""

        def handle(self, received):
            self.reply(received)

    ByValueEcho.__module__ = "__main__"
    build_bundle(("echo_handler",))  # built once per caller process, as in a program
    build_bundle(())
    env_tree = {"PYTHONPATH": args.tree}

    def time_pipe(cache, **kwargs) -> float:
        started = time.perf_counter()
        pipe = SSHPipe(args.alias, config=args.config, env=dict(kwargs.pop("env", {}),
                                                                   XDG_CACHE_HOME=cache),
                       **kwargs)
        pipe.start()
        elapsed = time.perf_counter() - started
        pipe.close(timeout=30)
        return elapsed

    def time_loader(handler, modules) -> float:
        bundle = build_bundle(tuple(modules))
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": args.warm,
               "XDG_CACHE_HOME": args.warm}
        started = time.perf_counter()
        # A session of its own, as under sshd: the loader ends its process group.
        loader = subprocess.Popen([args.python, "-c", LOADER_SOURCE], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env,
                                  start_new_session=True)
        loader.stdin.write(json.dumps({"hash": bundle.digest}).encode() + b"\n")
        loader.stdin.flush()
        status = json.loads(loader.stdout.readline()[len(LOADER_SYNC):])
        if status["need"]:
            loader.stdin.write(json.dumps({"size": bundle.size}).encode() + b"\n" + bundle.data)
        body = serial.dumps((handler, (), {}))
        loader.stdin.write(json.dumps({"mode": "handler", "size": len(body), "argv": []})
                           .encode() + b"\n" + body)
        loader.stdin.flush()
        seen = b""
        while protocol.SYNC not in seen:
            chunk = os.read(loader.stdout.fileno(), 65536)
            if not chunk:
                raise RuntimeError("the loader ended before the agent's hello")
            seen += chunk
        elapsed = time.perf_counter() - started
        loader.stdin.close()
        loader.stdout.read()
        loader.stdout.close()
        _, _, usage = os.wait4(loader.pid, 0)  # the loader and all it waited for
        loader.returncode = 0
        if status["need"]:
            raise RuntimeError("the loader's cache was not warm")
        return elapsed, usage.ru_utime + usage.ru_stime

    result = {
        "sshpipe_cold": time_pipe(args.cold, handler=Echo, modules=["echo_handler"],
                                  python=args.python),
        "sshpipe_warm": time_pipe(args.warm, handler=Echo, modules=["echo_handler"],
                                  python=args.python),
        "sshpipe_warm_value": time_pipe(args.warm, handler=ByValueEcho, python=args.python),
        "sshpipe_exec": time_pipe(args.warm, command=[sys.executable, ECHO_SCRIPT],
                                  python=args.python, env=env_tree),
    }
    for name, handler, modules in (("loader_warm", Echo, ["echo_handler"]),
                                   ("loader_warm_value", ByValueEcho, [])):
        result[name], result[name + "_cpu"] = time_loader(handler, modules)
    print(json.dumps(result))


def _run_sample(tree: str, server, python: str, warm: str, cold: str) -> dict:
    env = dict(os.environ, PYTHONPATH=tree)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    done = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--sample", "--tree", tree,
         "--alias", server.alias, "--config", server.config_path, "--python", python,
         "--warm", warm, "--cold", cold],
        env=env, capture_output=True, text=True, timeout=300)
    if done.returncode:
        raise RuntimeError(f"sample from {tree} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


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
    parser.add_argument("--baseline", help="another source tree, timed in the same run")
    parser.add_argument("--json", action="store_true")
    for internal in ("--tree", "--alias", "--config", "--python", "--warm", "--cold"):
        parser.add_argument(internal, help=argparse.SUPPRESS)
    parser.add_argument("--sample", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sample:
        _sample(args)
        return
    from sshpipe.bootstrap import build_bundle
    from sshpipe.testing import LocalSSHServer

    trees = {"": TREE}
    if args.baseline:
        trees[" (baseline)"] = os.path.abspath(args.baseline)
    columns = SSH_COLUMNS + LOCAL_COLUMNS
    samples = {name + suffix: [] for suffix in trees for name in columns}
    samples["execnet"] = []
    work = tempfile.mkdtemp(prefix="sshpipe-bench-bootstrap-")
    try:
        python = _bare_python(os.path.join(work, "venv"))
        with LocalSSHServer(alias="bench-bootstrap") as server:
            warm = {suffix: os.path.join(work, f"warm{index}")
                    for index, suffix in enumerate(trees)}
            for suffix, tree in trees.items():  # fill each tree's warm cache
                _run_sample(tree, server, python, warm[suffix], os.path.join(work, "x"))
            for index in range(args.rounds):
                for suffix, tree in trees.items():
                    cold = os.path.join(work, f"cold-{index}{len(suffix)}")
                    for name, value in _run_sample(tree, server, python, warm[suffix],
                                                   cold).items():
                        samples[name + suffix].append(value)
                try:
                    samples["execnet"].append(_time_execnet(server, python))
                except ImportError:
                    pass
    finally:
        shutil.rmtree(work, ignore_errors=True)
    sys.path.insert(0, HANDLERS)
    bundle = build_bundle(("echo_handler",))
    result = {name: {"median_ms": statistics.median(values) * 1000,
                     "best_ms": min(values) * 1000} for name, values in samples.items() if values}
    result["bundle"] = {"zip_bytes": bundle.size, "files": bundle.files}
    if "execnet" in result:
        execnet_ms = result["execnet"]["median_ms"]
        result["targets"] = {
            "warm <= 0.5 x execnet": result["sshpipe_warm"]["median_ms"] <= 0.5 * execnet_ms,
            "cold <= execnet": result["sshpipe_cold"]["median_ms"] <= execnet_ms,
        }
    result["machine"] = {"cpus": os.cpu_count(), "load": os.getloadavg()[0],
                         "python": platform.python_version(), "rounds": args.rounds}
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{'column':<32}{'median ms':>12}{'best ms':>10}")
    for name in samples:
        if name in result:
            print(f"{name:<32}{result[name]['median_ms']:>12.0f}{result[name]['best_ms']:>10.0f}")
    print(f"bundle: {bundle.size} bytes zipped, {bundle.files} files")
    for target, met in result.get("targets", {}).items():
        print(f"  {'MET   ' if met else 'MISSED'} {target}")
    print(f"{args.rounds} rounds, {os.cpu_count()} cpus, load {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
