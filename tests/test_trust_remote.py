"""A compromised host against the real sshd: what it sends back cannot run code in
the caller unless the caller chose to trust it.

The canary command only works in the caller's process tree: it needs an
environment variable set here, which sshd does not pass to the remote side (the
"remote" is this same machine, so a bare ``touch`` could not tell them apart).
"""
from __future__ import annotations

import pickle
import sys
import time
from pathlib import Path

import pytest

from sshpipe import ReplyDecodeError, SSHMultiPipe, SSHPipe, TrustPolicy, UntrustedPayload

sys.path.insert(0, str(Path(__file__).parent / "agents"))
import trust_tasks  # noqa: E402

from test_trust_corpus import GADGETS  # noqa: E402

HOSTILE = str(Path(__file__).parent / "agents" / "hostile_agent.py")
MARK = "SSHPIPE_TRUST_CANARY_HERE"


@pytest.fixture
def canary(tmp_path, monkeypatch):
    monkeypatch.setenv(MARK, "1")
    yield tmp_path / "canary"
    sys.modules.pop("sshpipe_gadget_lazy", None)  # left by one corpus gadget's build


def caller_only(canary: Path) -> str:
    """A shell command that creates the canary only in the caller's process tree."""
    return f'test -n "${MARK}" && touch {canary}'


def hostile_pipe(sshd, **kwargs) -> SSHPipe:
    return SSHPipe(sshd.alias, HOSTILE, config=sshd.config_path, python=sshd.python,
                   ready_timeout=30, **kwargs)


def system_gadget(command: str) -> bytes:
    return pickle.dumps(trust_tasks.SystemCall(command), protocol=5)


def appeared(path: Path, within: float = 1.0) -> bool:
    deadline = time.monotonic() + within
    while not path.exists():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_hostile_replies_are_refused_and_the_next_reply_arrives(sshd, canary, tmp_path):
    """Every corpus gadget a hostile agent replies raises UntrustedPayload naming the
    host and the reply's number; none runs, and the benign reply after each arrives."""
    with hostile_pipe(sshd) as pipe:
        number = 0
        for gadget in GADGETS:
            pipe.send(gadget.build(str(canary), tmp_path))
            pipe.send(pickle.dumps(("benign", number)))
            with pytest.raises(UntrustedPayload) as caught:
                pipe.recv(timeout=30)
            number += 1
            error = caught.value
            assert isinstance(error, ReplyDecodeError)
            assert (error.host, error.seq) == (sshd.alias, number)
            assert str(error).startswith(f"{sshd.alias}: reply {number}: refused ")
            assert pipe.recv(timeout=30) == ("benign", number - 1)
            number += 1
        response = pipe.close(timeout=30)
    assert response.exitcode == 0
    assert not appeared(canary, within=3.0), "a gadget ran in the caller"


def test_the_same_reply_runs_code_under_full_trust(sshd, canary):
    """Control: with trust_remote=True the caller loads the reply with plain pickle
    and the command runs here, which is what the default prevents."""
    with hostile_pipe(sshd, trust_remote=True) as pipe:
        pipe.send(system_gadget(caller_only(canary)))
        assert pipe.recv(timeout=30) == 0  # os.system's exit status
        pipe.close(timeout=30)
    assert appeared(canary)


def test_allowed_user_class_loads_and_others_stay_refused(sshd):
    """trust_remote=[cls] lets that class through; a gadget still is refused."""
    with hostile_pipe(sshd, trust_remote=[trust_tasks.Point]) as pipe:
        pipe.send(pickle.dumps(trust_tasks.Point(1, 2)))
        assert pipe.recv(timeout=30) == trust_tasks.Point(1, 2)
        pipe.send(system_gadget("true"))
        with pytest.raises(UntrustedPayload, match="refused posix.system"):
            pipe.recv(timeout=30)
        pipe.close(timeout=30)
    with hostile_pipe(sshd) as pipe:
        pipe.send(pickle.dumps(trust_tasks.Point(1, 2)))
        with pytest.raises(UntrustedPayload, match="trust_remote=\\['trust_tasks:Point'\\]"):
            pipe.recv(timeout=30)
        pipe.close(timeout=30)


def test_multipipe_passes_trust_to_its_members(sshd, canary):
    """SSHMultiPipe(trust_remote=...) reaches every member: a refused reply comes out
    of recv() as UntrustedPayload naming the host; the member's next reply follows."""
    with SSHMultiPipe({"a": {"host": sshd.alias}}, command=HOSTILE, config=sshd.config_path,
                      python=sshd.python, ready_timeout=30,
                      trust_remote=TrustPolicy()) as multi:
        multi.send("a", system_gadget(caller_only(canary)))
        multi.send("a", pickle.dumps("after"))
        with pytest.raises(UntrustedPayload) as caught:
            multi.recv(timeout=30)
        assert caught.value.host == sshd.alias
        assert multi.recv(timeout=30) == ("a", "after")
    assert not appeared(canary)


def test_executor_refuses_a_hostile_result_and_the_host_stays(make_executor, canary):
    """A task whose result pickles as os.system fails with UntrustedPayload naming the
    host and the task; nothing runs here; the host keeps serving tasks."""
    from workers import ResultLoadError

    executor = make_executor(slots=1)
    future = executor.submit(trust_tasks.hostile_result, caller_only(canary))
    error = future.exception(timeout=60)
    assert isinstance(error, ResultLoadError)  # what the executor raises for a result
    refused = error.__cause__
    assert isinstance(refused, UntrustedPayload) and refused.refused == "posix.system"
    assert refused.host == error.host == executor_host(executor) and refused.seq is not None
    assert f"task {refused.seq} (hostile_result)" in str(refused)
    assert isinstance(executor.submit(trust_tasks.point, 1, 2).exception(timeout=60).__cause__,
                      UntrustedPayload)
    with pytest.raises(KeyError, match="missing"):
        executor.submit(trust_tasks.fails, "missing").result(timeout=60)
    assert executor.submit(sum, [1, 2]).result(timeout=60) == 3
    assert not appeared(canary, within=2.0)


def test_executor_trust_list_and_full_trust(make_executor, canary):
    """trust_remote=[cls] lets the class's results through; trust_remote=True runs the
    hostile result's command here (the control for the test above)."""
    listed = make_executor(slots=1, trust_remote=[trust_tasks.Point])
    assert listed.submit(trust_tasks.point, 1, 2).result(timeout=60) == trust_tasks.Point(1, 2)
    full = make_executor(slots=1, trust_remote=True)
    assert full.submit(trust_tasks.hostile_result, caller_only(canary)).result(timeout=60) == 0
    assert appeared(canary)


def executor_host(executor) -> str:
    (name,) = executor.hosts
    return name


@pytest.fixture
def make_executor(sshd):
    from workers import SSHExecutor

    made = []

    def make(**kwargs):
        made.append(SSHExecutor([sshd.alias], config=sshd.config_path, python=sshd.python,
                                modules=["trust_tasks"], ready_timeout=60, **kwargs))
        return made[-1]

    yield make
    for executor in made:
        executor.shutdown(wait=True, cancel_futures=True)
