"""Warm starts against the real sshd: the zygote forks isolated agents, and every
way it can be missing, stale or untrusted falls back to a cold start (issue 14).

The test sshd runs as root on 127.0.0.1, so remote processes are local ones:
the tests look at them through /proc (the zygotes are below the server's
watchdog, a subreaper)."""
from __future__ import annotations

import glob
import multiprocessing
import os
import signal
import socket
import struct
import sys
import threading
import time
from pathlib import Path

import pytest

from sshpipe import PipeBroken, PipeState, SSHPipe, stop_zygotes
from sshpipe import _zygote, _zygote_client
from sshpipe.testing import descendants, process_name, wait_gone

from pipe_transports import transport  # noqa: F401 (autouse: each test per transport)

AGENTS = Path(__file__).parent / "agents"
DEADLINE = 60.0


@pytest.fixture(autouse=True)
def probe(monkeypatch):
    monkeypatch.syspath_prepend(str(AGENTS))
    import zygote_probe

    return zygote_probe


@pytest.fixture
def openssh_only(transport):  # noqa: F811
    """The zygote's side is the same whatever carried the session: tests of it
    alone run once (on the shared master, the fastest), to keep the suite's time."""
    if transport != "openssh":
        pytest.skip("transport-independent: runs with the OpenSSH transport")


def zygotes(sshd):
    return [p for p in descendants(sshd.watchdog) if process_name(p) == _zygote.NAME]


@pytest.fixture(scope="module", autouse=True)
def private_tmpdir(tmp_path_factory):
    """The remote sessions' TMPDIR, so that this run's zygotes have a socket
    directory of their own (other runs on the machine, as the same user, stop
    theirs in theirs)."""
    directory = tmp_path_factory.mktemp("zygote-tmp")
    os.chmod(directory, 0o755)
    PRIVATE["TMPDIR"] = str(directory)
    yield directory
    PRIVATE.clear()


PRIVATE: dict = {}


def stop_all(sshd) -> None:
    """Stop every zygote, including one still warming up (started by a cold
    start just before: it listens a moment later, and is stopped then)."""
    deadline = time.monotonic() + DEADLINE
    while True:
        stop_zygotes(sshd.alias, config=sshd.config_path, python=sshd.python, env=dict(PRIVATE))
        left = wait_gone(zygotes(sshd), 1.0)
        if not left:
            return
        assert time.monotonic() < deadline, f"zygotes still running: {left}"


@pytest.fixture(autouse=True)
def no_zygote_before_or_after(sshd):
    """Each test starts with no zygote and leaves none."""
    stop_all(sshd)
    yield
    stop_all(sshd)


def make(sshd, probe, **kwargs) -> SSHPipe:
    kwargs["env"] = {**PRIVATE, **(kwargs.get("env") or {})}
    kwargs.setdefault("handler", probe.Probe)
    kwargs.setdefault("modules", ["zygote_probe"])
    kwargs.setdefault("python", sshd.python)
    kwargs.setdefault("warm", True)
    kwargs.setdefault("ready_timeout", DEADLINE)
    return SSHPipe(sshd.alias, config=sshd.config_path, **kwargs)


def info_of(sshd, probe, **kwargs):
    """Start a pipe, ask its agent for its info, close it: (remote_info, info)."""
    pipe = make(sshd, probe, **kwargs)
    pipe.start()
    try:
        pipe.send("info")
        return pipe.remote_info, pipe.recv(timeout=DEADLINE)
    finally:
        pipe.close()


def wait_warm(sshd, probe, **kwargs):
    """Start pipes until one starts warm (the first cold one's zygote is ready)."""
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        remote, info = info_of(sshd, probe, **kwargs)
        if remote["start"] == "warm":
            return remote, info
        time.sleep(0.05)
    raise AssertionError("no warm start within the deadline")


def test_first_start_is_cold_and_starts_a_zygote_the_next_are_warm(sshd, probe):
    remote, cold = info_of(sshd, probe)
    assert remote["start"] == "cold" and remote["warm"].startswith("no zygote")
    remote, warm = wait_warm(sshd, probe)
    assert remote["bundle_sent"] is False and remote["warm"] is None
    assert len(zygotes(sshd)) == 1
    remote, again = info_of(sshd, probe)
    assert remote["start"] == "warm"
    assert len({cold["pid"], warm["pid"], again["pid"]}) == 3


def test_warm_agent_is_set_up_as_a_cold_one(sshd, probe):
    """Same cwd, umask, environment, argv and open fds as a cold agent; its own
    session and process group; the user's modules imported by the agent itself."""
    env = {"ZYGOTE_PROBE": "given"}
    _, cold = info_of(sshd, probe, warm=False, env=env)
    _, warm = wait_warm(sshd, probe, env=env)
    for key in ("cwd", "umask", "env", "argv", "fds", "comm", "state"):
        assert warm[key] == cold[key], key
    zygote = zygotes(sshd)[0].pid
    assert warm["pgid"] == warm["pid"] and warm["sid"] != zygote
    assert warm["sid"] == warm["ppid"], "the supervisor leads the agent's session"
    assert warm["imported_by"] == warm["pid"], "the zygote imported the user's module"
    assert warm["ssh_connection"], "the session's own environment reaches the agent"


def test_two_warm_agents_share_nothing(sshd, probe, openssh_only):
    wait_warm(sshd, probe, env={"ZYGOTE_PROBE": "given"})
    first = make(sshd, probe, env={"ZYGOTE_PROBE": "given"})
    second = make(sshd, probe, env={"ZYGOTE_PROBE": "given"})
    with first, second:
        assert first.remote_info["start"] == second.remote_info["start"] == "warm"
        first.send("info")
        before = first.recv(timeout=DEADLINE)
        first.send("mutate")
        assert first.recv(timeout=DEADLINE) == "mutated"
        second.send("info")
        other = second.recv(timeout=DEADLINE)
        first.send("info")
        after = first.recv(timeout=DEADLINE)
    assert after["state"] == [after["pid"]] and after["cwd"] == "/" and after["env"] == "changed"
    assert other["state"] == [] and other["cwd"] == before["cwd"] and other["env"] == "given"
    assert other["fds"] == before["fds"] and len(after["fds"]) == len(before["fds"]) + 1
    assert len({before["pid"], other["pid"]}) == 2
    assert len({before["pgid"], other["pgid"]}) == 2 and len({before["sid"], other["sid"]}) == 2


def test_killed_zygote_falls_back_cold_and_is_replaced(sshd, probe):
    wait_warm(sshd, probe)
    (zygote,) = zygotes(sshd)
    os.kill(zygote.pid, signal.SIGKILL)
    assert wait_gone([zygote], 10) == []
    remote, _ = info_of(sshd, probe)
    assert remote["start"] == "cold" and remote["warm"] == "no zygote"
    remote, _ = wait_warm(sshd, probe)
    assert [z.pid for z in zygotes(sshd)] != [zygote.pid]


def test_bundle_change_gets_a_new_zygote_and_ends_the_old(sshd, probe, openssh_only):
    wait_warm(sshd, probe)
    (old,) = zygotes(sshd)
    changed = ["zygote_probe", "zi_handlers"]
    remote, _ = info_of(sshd, probe, modules=changed)
    assert remote["start"] == "cold" and remote["warm"] == "no zygote"
    remote, _ = wait_warm(sshd, probe, modules=changed)
    assert wait_gone([old], 10) == [], "the old bundle's zygote still runs"
    assert len(zygotes(sshd)) == 1


@pytest.mark.parametrize("spoil", ["mode", "owner"])
def test_socket_directory_others_could_write_is_refused(sshd, probe, spoil, openssh_only):
    _, info = wait_warm(sshd, probe)
    directory = info["socket_dir"]
    stop_all(sshd)
    if spoil == "mode":
        os.chmod(directory, 0o770)
    else:
        os.chown(directory, 65534, -1)
    try:
        for _ in range(2):  # nor does the cold start leave a zygote behind for the next
            remote, _ = info_of(sshd, probe)
            assert remote["start"] == "cold"
            assert remote["warm"] == "no zygote (no private socket directory)"
        assert zygotes(sshd) == []
    finally:
        os.chown(directory, 0, -1)
        os.chmod(directory, 0o700)


def settled(pipe):
    """The pipe's state once its events thread has seen its end (it does so just
    after the child's exit, which join() waits for)."""
    deadline = time.monotonic() + DEADLINE
    while pipe.state is PipeState.RUNNING and time.monotonic() < deadline:
        time.sleep(0.005)
    return pipe.state


def test_exit_status_signal_and_terminate_as_with_a_cold_start(sshd, probe):
    wait_warm(sshd, probe)
    endings = {}
    for warm in (False, True):
        pipe = make(sshd, probe, warm=warm)
        pipe.start()
        pipe.send(("exit", 3))
        pipe.join(DEADLINE)
        killed = make(sshd, probe, warm=warm)
        killed.start()
        killed.send("info")
        os.kill(killed.recv(timeout=DEADLINE)["pid"], signal.SIGKILL)
        killed.join(DEADLINE)
        ended = make(sshd, probe, warm=warm)
        ended.start()
        assert ended.remote_info["start"] == ("warm" if warm else "cold")
        ended.terminate()
        ended.join(DEADLINE)
        endings[warm] = (pipe.exitcode, killed.exitcode, settled(killed), ended.exitcode,
                         settled(ended))
        for each in (pipe, killed, ended):
            try:
                each.close()
            except PipeBroken:
                pass
    assert endings[True] == endings[False]
    assert endings[True][:2] == (3, -signal.SIGKILL)


def test_what_a_warm_agent_started_ends_with_it(sshd, probe, openssh_only):
    from sshpipe.testing import process_id

    wait_warm(sshd, probe)
    pipe = make(sshd, probe)
    pipe.start()
    pipe.send("child")
    child = process_id(pipe.recv(timeout=DEADLINE))
    pipe.close()
    assert wait_gone([child], 10) == []


@pytest.mark.parametrize("method", ["spawn", "fork", "forkserver"])
def test_warm_under_every_start_method(sshd, probe, method, openssh_only):
    context = multiprocessing.get_context(method)
    remote, _ = wait_warm(sshd, probe, mp_context=context)
    assert remote["start"] == "warm"


def test_warm_false_never_uses_or_starts_a_zygote(sshd, probe, openssh_only):
    for _ in range(2):
        remote, _ = info_of(sshd, probe, warm=False)
        assert remote["start"] == "cold" and remote["warm"] is None
    assert zygotes(sshd) == []


def test_zygote_ends_when_idle_and_leaves_no_file(sshd, probe):
    _, info = info_of(sshd, probe, warm=2.0)
    deadline = time.monotonic() + DEADLINE
    while not zygotes(sshd) or not glob.glob(os.path.join(info["socket_dir"], "*.sock")):
        assert time.monotonic() < deadline, "no zygote listens"
        time.sleep(0.02)
    (zygote,) = zygotes(sshd)
    assert wait_gone([zygote], 2.0 + 5) == []
    # (a zygote removes the files that dead ones left as it starts)
    assert os.listdir(info["socket_dir"]) == []


def test_zygote_ends_with_its_master(sshd, probe, transport):  # noqa: F811
    if transport != "openssh":
        pytest.skip("only the OpenSSH transport's zygote is tied to a connection")
    from sshpipe._openssh import stop_masters

    wait_warm(sshd, probe)
    (zygote,) = zygotes(sshd)
    stop_masters(owner=os.getpid())  # this run's only: other runs share the directory
    assert wait_gone([zygote], 5) == []


def test_zygote_refuses_a_request_of_another_key_and_other_users(sshd, probe, openssh_only):
    _, info = wait_warm(sshd, probe)
    directory = info["socket_dir"].encode()
    (path,) = glob.glob(os.path.join(info["socket_dir"], "*.sock"))
    uid = os.getuid()
    # The same user with another environment: refused, and nothing of ours is read.
    sock = _zygote_client._connect(path.encode(), uid)
    reader, writer = os.pipe()
    try:
        line = b'{"hash": "%s"}' % os.path.basename(path).split("-")[1][:-5].encode()
        message = _zygote_client._message(b"spawn", [b"22", b"/", sys.executable.encode(),
                                                     line, b"ZYGOTE_PROBE=other"])
        sock.sendmsg([message], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                  struct.pack("4i", reader, writer, writer, reader))])
        answer = _zygote_client._recv_line(sock)
    finally:
        sock.close()
        os.close(reader)
        os.close(writer)
    assert answer.startswith(b"NO "), answer
    # Another user cannot even reach the socket: the directory is 0700.
    child = os.fork()
    if child == 0:
        try:
            os.setgid(65534)
            os.setuid(65534)
            _zygote_client._connect(path.encode(), 65534)
            os._exit(0)
        except PermissionError:
            os._exit(13)
        except BaseException:
            os._exit(1)
    _, status = os.waitpid(child, 0)
    assert os.WEXITSTATUS(status) == 13
    assert _zygote_client.safe_dir(directory, uid)


def test_many_warm_starts_at_once_are_bounded_and_clean(sshd, probe, transport):  # noqa: F811
    if transport != "openssh":
        pytest.skip("one shared master; with paramiko each start is its own handshake")
    wait_warm(sshd, probe)
    pipes = [make(sshd, probe) for _ in range(20)]
    errors = []

    def start(pipe):
        try:
            pipe.start()
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(pipe,)) for pipe in pipes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(DEADLINE * 2)
    assert errors == []
    pids = {pipe.remote_info["pid"] for pipe in pipes}
    warm = sum(pipe.remote_info["start"] == "warm" for pipe in pipes)
    for pipe in pipes:
        pipe.close()
    assert len(pids) == 20 and warm >= 15
    # one zygote at most (none if the master it is tied to was stopped meanwhile:
    # other runs on this machine stop the user's masters)
    assert len(zygotes(sshd)) <= 1
    assert all(pipe.exitcode == 0 for pipe in pipes)


def test_remote_python_3_9(sshd, probe, openssh_only):
    python = os.path.expanduser("~/.pyenv/versions/3.9.18/bin/python3")
    if not os.path.exists(python):
        pytest.skip("no CPython 3.9 here")
    remote, info = wait_warm(sshd, probe, python=python)
    assert remote["python"].startswith("3.9") if "python" in remote else True
    assert info["pid"] != os.getpid()


def test_client_checks_the_socket_directory_as_openssh_does(tmp_path):
    uid = os.getuid()
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    os.chmod(tmp_path, 0o755)
    assert _zygote_client.safe_dir(str(private).encode(), uid)
    os.chmod(private, 0o750)
    assert not _zygote_client.safe_dir(str(private).encode(), uid)
    os.chmod(private, 0o700)
    os.chmod(tmp_path, 0o777)  # a parent others can write (not sticky)
    assert not _zygote_client.safe_dir(str(private).encode(), uid)
    os.chmod(tmp_path, 0o1777)  # sticky but not root's: still refused when not root
    assert _zygote_client.safe_dir(str(private).encode(), uid) == (uid == 0)
    os.chmod(tmp_path, 0o755)
    link = tmp_path / "link"
    link.symlink_to(private)
    assert not _zygote_client.safe_dir(str(link).encode(), uid)


def test_request_hash_and_names():
    line = b'{"hash": "' + b"ab" * 32 + b'", "zygote": {"idle": 30}}'
    assert _zygote_client.request_hash(line) == b"ab" * 32
    assert _zygote_client.request_hash(b'{"hash": "XYZ"}') is None
    prefix, name = _zygote_client.names(b"material", b"ab" * 32)
    assert name.startswith(prefix + b"-") and name.endswith(b".sock")
    assert _zygote_client.names(b"other", b"ab" * 32)[0] != prefix


def test_executor_and_multipipe_start_warm(sshd, probe, openssh_only):
    """SSHExecutor and SSHMultiPipe pass warm= to their pipes: a later executor's
    host agent and a multipipe's members are forked from the zygote."""
    from sshpipe import SSHMultiPipe
    from workers import SSHExecutor

    options = dict(config=sshd.config_path, python=sshd.python, warm=True, ready_timeout=DEADLINE,
                   env=dict(PRIVATE))
    starts = []
    deadline = time.monotonic() + DEADLINE
    while "warm" not in starts and time.monotonic() < deadline:
        with SSHExecutor([sshd.alias], slots=1, **options) as executor:
            assert executor.submit(pow, 2, 5).result(timeout=DEADLINE) == 32
            (link,) = executor._core.links.values()
            starts.append(link.pipe.remote_info["start"])
    assert starts[0] == "cold" and starts[-1] == "warm"
    # the probe's bundle differs from the executor's: its zygote is another
    wait_warm(sshd, probe)
    multi = SSHMultiPipe(handler=probe.Probe, modules=["zygote_probe"], **options)
    for name in ("a", "b"):
        multi.add(name, sshd.alias)
    with multi:
        assert [pipe.remote_info["start"] for pipe in multi._pipes.values()] == ["warm", "warm"]
