"""Misuse of the pipe API fails locally, at the call, with a message that says why."""
from __future__ import annotations

import io
import pickle
import socket
import threading
import tracemalloc
from pathlib import Path

import dill
import pytest

from sshpipe import PipeClosed, SSHPipe, SSHPipeClient, SSHPipeHandler, serial

from pipe_transports import transport  # noqa: F401 (autouse: each test per transport)

ECHO = str(Path(__file__).parent / "agents" / "echo_agent.py")


class Upper(SSHPipeHandler):
    def handle(self, received):
        self.reply(received.upper())


class NotAHandler:
    def handle(self, received):
        pass


def _echo(sshd, **kwargs) -> SSHPipe:
    return SSHPipe(sshd.alias, ECHO, config=sshd.config_path, python=sshd.python,
                   ready_timeout=30, **kwargs)


@pytest.mark.parametrize("modules, named", [([pickle], "'pickle'"), ("pickle", "string")])
def test_modules_takes_names_and_says_so(modules, named):
    """A module object (or a bare string, which would ship its letters) is a
    TypeError at construction that says what to give instead."""
    with pytest.raises(TypeError) as info:
        SSHPipe("box", handler=Upper, modules=modules)
    assert "module names" in str(info.value) and named in str(info.value)


def test_neither_command_nor_handler_says_neither_issue_18():
    """SSHPipe("box") with no agent says it was given neither, not "not both"."""
    with pytest.raises(ValueError) as info:
        SSHPipe("box")
    assert "neither" in str(info.value) and "not both" not in str(info.value)
    with pytest.raises(ValueError, match="not both"):
        SSHPipe("box", "agent.py", handler=Upper)


@pytest.mark.parametrize("handler", [NotAHandler, NotAHandler(), "Upper", len])
def test_handler_that_is_not_an_sshpipehandler_is_a_local_type_error_issue_18(handler):
    """A handler not derived from SSHPipeHandler is refused at construction."""
    with pytest.raises(TypeError, match="SSHPipeHandler"):
        SSHPipe("box", handler=handler)


def test_handler_class_and_instance_are_accepted():
    """An SSHPipeHandler subclass, an instance, or the seed's SSHPipeClient are fine."""
    for handler in (Upper, Upper(), SSHPipeClient):
        SSHPipe("box", handler=handler).close()


def test_seed_name_sshpipeclient_is_sshpipehandler_issue_18():
    """The seed README's SSHPipeClient is the same class as SSHPipeHandler."""
    import sshpipe
    from sshpipe.handler import SSHPipeClient as from_module

    assert SSHPipeClient is SSHPipeHandler is from_module
    assert "SSHPipeClient" in sshpipe.__all__


def test_recv_before_start_says_not_started_issue_18():
    """recv() on a pipe never started raises PipeClosed saying so, not EOFError."""
    pipe = SSHPipe("box", handler=Upper)
    with pytest.raises(PipeClosed, match="not started"):
        pipe.recv(timeout=1)
    with pytest.raises(PipeClosed, match="not started"):
        pipe.send("x")


def _host_bound_objects(tmp_path):
    held = threading.Lock()
    held.acquire()
    held_r = threading.RLock()
    held_r.acquire()
    listening = socket.socket()
    opened = open(tmp_path / "data.txt", "w")
    raw = open(tmp_path / "data.bin", "wb", buffering=0)
    return [
        (held, "a held lock", "_thread.lock"),
        (held_r, "a held lock", "RLock"),
        (opened, "an open file", "TextIOWrapper"),
        (raw, "an open file", "FileIO"),
        (listening, "a socket", "socket.socket"),
        (threading.Thread(target=print), "a thread", "threading.Thread"),
        ((x for x in range(3)), "a generator", "generator"),
        ({"nested": [opened]}, "an open file", "TextIOWrapper"),
        (lambda: opened.write("x"), "an open file", "TextIOWrapper"),  # dill's path
    ], [opened, raw, listening]


def test_serial_refuses_host_bound_objects_naming_the_type_issue_18(tmp_path):
    """Objects that mean nothing on another host are a TypeError naming their type,
    whether the C pickler or dill (a lambda's closure) meets them."""
    cases, to_close = _host_bound_objects(tmp_path)
    try:
        for obj, kind, type_name in cases:
            with pytest.raises(TypeError) as info:
                serial.dumps(obj)
            message = str(info.value)
            assert kind in message and type_name in message, message
            assert "dill.dumps" in message  # how to opt in
    finally:
        for resource in to_close:
            resource.close()


def test_serial_still_copies_what_copies_faithfully():
    """Unheld locks (inside objects), in-memory streams and the std streams pass."""
    for obj in (threading.Lock(), threading.Event(), io.BytesIO(b"x"), io.StringIO("y")):
        assert type(pickle.loads(serial.dumps(obj))) is type(obj)
    import sys

    assert pickle.loads(serial.dumps(sys.__stderr__)) is sys.__stderr__


def test_send_refuses_open_file_and_pipe_goes_on_issue_18(sshd, tmp_path):
    """send() of an open file raises TypeError at the call, nothing is sent, and the
    user can still opt in by serializing the object with dill themselves."""
    with _echo(sshd) as pipe, open(tmp_path / "notes.txt", "w") as notes:
        with pytest.raises(TypeError, match="open file"):
            pipe.send(notes)
        held = threading.Lock()
        held.acquire()
        with pytest.raises(TypeError, match="held lock"):
            pipe.send({"lock": held})
        pipe.send("still fine")
        assert pipe.recv(timeout=10) == "still fine"
        # Opting in: the user serializes it; the remote gets a (held) copy.
        pipe.send_bytes(dill.dumps(lambda _: held.locked(), recurse=True))
        assert pipe.recv(timeout=10) is True
    assert pipe.response().unhandled == ()


class _ArrayLike:
    """A numpy-like buffer: ``__array_interface__`` and ``nbytes``."""

    def __init__(self, size: int):
        self._data = bytearray(size)
        self.nbytes = size

    @property
    def __array_interface__(self):
        return {"shape": (self.nbytes,), "typestr": "|u1", "version": 3, "data": (0, False)}

    def __reduce__(self):
        return (bytearray, (bytes(self._data),))


@pytest.mark.parametrize("make", [bytes, bytearray, lambda n: memoryview(bytearray(n)),
                                  lambda n: "x" * n, _ArrayLike],
                         ids=["bytes", "bytearray", "memoryview", "str", "array"])
def test_oversized_send_is_refused_before_the_pickle_is_built_issue_18(make):
    """A message over max_frame is refused without serializing it: the call
    allocates next to nothing, where a pickle would copy the whole object."""
    size = 32 * 1024 * 1024
    obj = make(size)
    pipe = SSHPipe("box", handler=Upper, max_frame=1024 * 1024)
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match="max_frame"):
            pipe.send(obj)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        pipe.close()
    assert peak < size // 8, f"send() allocated {peak} bytes before refusing"


def test_oversized_send_on_a_running_pipe_leaves_it_usable(sshd):
    """Refusing an oversized message sends nothing; the pipe goes on."""
    with _echo(sshd, max_frame=1024 * 1024) as pipe:
        with pytest.raises(ValueError, match="at least 2097152 bytes"):
            pipe.send(b"x" * (2 * 1024 * 1024))
        pipe.send(b"small")
        assert pipe.recv(timeout=10) == b"small"
    assert pipe.response().unhandled == ()
