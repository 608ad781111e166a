"""Serialization of messages: C pickle when it is safe, dill when it is needed.

Stdlib only (dill is imported when needed): shipped to remote hosts as source.

dill pickles what pickle cannot (lambdas, closures, classes and functions defined
in ``__main__``), but its pickler is pure Python and 20 to 100 times slower than
the C one. So :func:`dumps` first tries the C pickler with a guard that refuses
anything pickle would store *by reference* to ``__main__`` (such a reference
cannot be resolved on the other end), and falls back to dill for whatever is
refused or fails. :func:`loads` is ``pickle.loads``, under a trust policy for
what comes from a remote (:mod:`sshpipe.trust`): dill's output loads
with it, importing dill only when the data needs it.

Some objects mean something only in the process that holds them: an open file,
a socket, a thread, a held lock, a running generator. dill would happily make a
copy on the other end (a file reopened there by path, a lock already held by
nobody who will release it), which shares nothing with the original; so
:func:`dumps` refuses them with a ``TypeError`` naming the type. A caller who
does want such a copy serializes the object itself (``dill.dumps(obj)``) and
sends the bytes (``SSHPipe.send_bytes``).
"""
from __future__ import annotations

import copyreg
import functools
import io
import pickle
import pickletools
import platform
import socket
import sys
import threading
import types
from typing import Any, Dict, Iterable, Iterator, List, Optional, Tuple, Union

from sshpipe.errors import VersionSkewError

__all__ = ["CODE_GLOBALS", "PROTOCOL", "carries_code", "code_skew", "dump_parts", "dumps",
           "dumps_with_code", "loads", "local_python", "named_globals", "same_minor",
           "size_floor"]

# Protocol 5 is understood by every supported Python (3.8 and later).
PROTOCOL = 5


# PROTO 5 and BINBYTES8: the opcodes before a bytes object's length and data.
_PROTO_5_BINBYTES8 = b"\x80\x05\x8e"
# From this size on a bytes message is sent without being copied into a pickle.
_ZERO_COPY_BYTES = 64 * 1024
# Types whose pickle can hold nothing but data.
_PLAIN = frozenset((type(None), bool, int, float, complex, str, bytes, bytearray))


# Containers the C pickler passes to reducer_override: nothing to check on them.
_CONTAINERS = frozenset((dict, list, tuple, set, frozenset))
_LOCK = type(threading.Lock())
_RLOCKS = tuple({type(threading.RLock()), getattr(threading, "_PyRLock", type(threading.RLock()))})
_RUNNING_CODE = {types.GeneratorType: "a generator", types.CoroutineType: "a coroutine",
                 types.AsyncGeneratorType: "an async generator", types.FrameType: "a frame"}
# In-memory streams copy faithfully; the interpreter's own streams travel by name.
_MEMORY_STREAMS = (io.BytesIO, io.StringIO)


class _ByValueNeeded(Exception):
    """The object refers to ``__main__``: only dill can carry it by value."""


class _HostBound(TypeError):
    """The object means something only in this process (see the module docstring)."""


# type -> whether its instances can be host-bound (checked once per type).
_MAYBE_HOST_BOUND: Dict[type, bool] = {}


def _may_be_host_bound(cls: type) -> bool:
    return (cls is _LOCK or issubclass(cls, _RLOCKS) or cls in _RUNNING_CODE
            or issubclass(cls, (io.IOBase, socket.socket, threading.Thread)))


def _host_bound_kind(obj: Any) -> Optional[str]:
    """What ``obj`` is, in words, if a copy of it on another host would share
    nothing with it; None for anything else."""
    cls = type(obj)
    maybe = _MAYBE_HOST_BOUND.get(cls)
    if maybe is None:
        if len(_MAYBE_HOST_BOUND) > 4096:  # classes made on the fly: stay bounded
            _MAYBE_HOST_BOUND.clear()
        maybe = _MAYBE_HOST_BOUND[cls] = _may_be_host_bound(cls)
    if not maybe:
        return None
    if cls is _LOCK:
        return "a held lock" if obj.locked() else None
    if isinstance(obj, _RLOCKS):
        return "a held lock" if repr(obj).startswith("<locked") else None
    if cls in _RUNNING_CODE:
        return _RUNNING_CODE[cls]
    if isinstance(obj, io.IOBase):
        if isinstance(obj, _MEMORY_STREAMS) or any(
                obj is stream for stream in (sys.stdin, sys.stdout, sys.stderr, sys.__stdin__,
                                             sys.__stdout__, sys.__stderr__)):
            return None
        return "a closed file" if obj.closed else "an open file"
    if isinstance(obj, socket.socket):
        return "a socket"
    if isinstance(obj, threading.Thread):
        return "a thread"
    return None


def _refuse_host_bound(obj: Any) -> None:
    kind = _host_bound_kind(obj)
    if kind is not None:
        cls = type(obj)
        name = cls.__qualname__ if cls.__module__ == "builtins" else \
            f"{cls.__module__}.{cls.__qualname__}"
        raise _HostBound(
            f"cannot send {kind} ({name}) to another host: "
            f"a copy there would share nothing with it; send what it stands for (a path, "
            f"an address, the data) or, if a copy is what you want, serialize it yourself "
            f"and use send_bytes(dill.dumps(obj))")


class _GuardedPickler(pickle.Pickler):
    # Called for every object except None, bools, ints, floats, bytes and str, so
    # plain data pays little for the guard.
    def reducer_override(self, obj: Any) -> Any:
        if type(obj) in _CONTAINERS:
            return NotImplemented
        if isinstance(obj, (type, types.FunctionType)):
            module = getattr(obj, "__module__", None)
        else:
            module = getattr(type(obj), "__module__", None)
            _refuse_host_bound(obj)
        if module == "__main__":
            raise _ByValueNeeded
        return NotImplemented


@functools.lru_cache(maxsize=None)
def _dill_pickler() -> type:
    """dill's pickler with the same refusal (dill would copy such objects)."""
    import dill

    # dill has no stubs: its Pickler is Any, which strict mode will not subclass
    class _GuardedDillPickler(dill.Pickler):  # type: ignore[misc]
        def reducer_override(self, obj: Any) -> Any:
            if not isinstance(obj, type):
                _refuse_host_bound(obj)
            return NotImplemented

    return _GuardedDillPickler


def dumps(obj: Any) -> bytes:
    """Serialize ``obj`` for the other end of a pipe.

    Raises:
        TypeError: ``obj`` is or holds an object that means something only in
            this process (an open file, a socket, a thread, a held lock, a
            generator); the message names its type.
        Exception: whatever dill raises for an object it cannot serialize either
            (``TypeError``, ``pickle.PicklingError`` ...), and ``ImportError``
            when such an object needs dill and dill is not installed.
    """
    return _dump(obj)[0]


def dumps_with_code(obj: Any) -> Tuple[bytes, bool]:
    """:func:`dumps`, plus whether the result carries code objects (functions or
    classes sent by value), which load only on the Python minor version that
    made them. Only dill's output can, so only it is read (:func:`carries_code`)."""
    payload, by_dill = _dump(obj)
    return payload, by_dill and carries_code(payload)


def _dump(obj: Any) -> Tuple[bytes, bool]:
    """The pickle of ``obj`` and whether dill made it."""
    if type(obj) in _PLAIN:
        return pickle.dumps(obj, PROTOCOL), False  # nothing in it refers to __main__
    buffer = io.BytesIO()
    try:
        _GuardedPickler(buffer, protocol=PROTOCOL).dump(obj)
        return buffer.getvalue(), False
    except _HostBound as exc:
        raise TypeError(str(exc)) from None
    except (_ByValueNeeded, pickle.PicklingError, TypeError, AttributeError):
        pass
    buffer = io.BytesIO()
    try:
        # recurse: carry only the globals a function uses, not its whole module
        # (which the other end may not have).
        _dill_pickler()(buffer, PROTOCOL, recurse=True).dump(obj)
    except _HostBound as exc:
        raise TypeError(str(exc)) from None
    return buffer.getvalue(), True


def size_floor(obj: Any) -> int:
    """A lower bound on the size of ``obj``'s pickle, known without building it:
    the data size of bytes-like objects, strings and array buffers (anything with
    ``__array_interface__`` and ``nbytes``, as numpy arrays); 0 for the rest.
    Lets a sender refuse an oversized message before copying it."""
    if isinstance(obj, (bytes, bytearray, str)):
        return len(obj)
    if isinstance(obj, memoryview):
        return obj.nbytes
    if hasattr(type(obj), "__array_interface__"):
        nbytes = getattr(obj, "nbytes", None)
        if isinstance(nbytes, int):
            return nbytes
    return 0


def dump_parts(obj: Any) -> Tuple[Tuple[Any, ...], bool]:
    """:func:`dumps_with_code`, as pieces whose concatenation is the pickle.

    A large ``bytes`` object is not copied: its pickle is a fixed header, the
    object itself and the STOP opcode, which a writer can hand to ``writev`` as
    they are (the C pickler would copy it, growing its buffer on the way).
    """
    if type(obj) is bytes and len(obj) >= _ZERO_COPY_BYTES:
        head = _PROTO_5_BINBYTES8 + len(obj).to_bytes(8, "little")
        return (head, obj, b"."), False
    payload, has_code = dumps_with_code(obj)
    return (payload,), has_code


# Globals that build code objects or functions from their parts: a pickle that
# names one carries code, which loads only on the Python minor version that made
# it (a code object's constructor and bytecode change between minors). dill's
# ("dill.dill" before 0.3.0), and the types a hand-written reducer would name.
CODE_GLOBALS = frozenset({
    "dill._dill._create_code", "dill._dill._create_function",
    "dill.dill._create_code", "dill.dill._create_function",
    "types.CodeType", "types.FunctionType",
})
# What each of those names ends with: a pickle holding none of these bytes names
# none of them (a global's name is stored as its UTF-8 text, under any protocol).
_CODE_NAME_BYTES = tuple(sorted({name.rsplit(".", 1)[1].encode() for name in CODE_GLOBALS}))
_STRING_OPS = frozenset({"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE",
                         "SHORT_BINSTRING", "BINSTRING", "STRING"})
_MEMO_PUTS = frozenset({"PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE"})
_MEMO_GETS = frozenset({"GET", "BINGET", "LONG_BINGET"})
_NO_PUSH = frozenset({"PROTO", "FRAME", "STOP"})
_EXTENSIONS = frozenset({"EXT1", "EXT2", "EXT4"})


def named_globals(payload: bytes) -> Iterator[str]:
    """The globals a pickle names (``"module.qualname"``), in order, as its
    GLOBAL, STACK_GLOBAL and EXT opcodes would look them up; nothing is loaded.

    STACK_GLOBAL takes its two operands from the stack: the strings pushed just
    before it, directly or from the memo (as every pickler writes them). Operands
    the pickle computed some other way are named ``"(computed)"``.

    Raises:
        ValueError: the payload is not a well-formed pickle (from the point where
            it stops being one: the names before it have been given).
    """
    last: List[Any] = [None, None]    # the two most recent stack entries, if strings
    memo: Dict[int, Any] = {}
    for opcode, arg, _pos in pickletools.genops(payload):
        name = opcode.name
        if name in _MEMO_PUTS:
            slot = len(memo) if name == "MEMOIZE" else arg
            if isinstance(slot, int):  # pickletools gives every PUT an int key
                memo[slot] = last[-1]
            continue
        if name in _NO_PUSH:
            continue
        if name == "GLOBAL":
            value: Any = None
            yield str(arg).replace(" ", ".", 1)
        elif name == "STACK_GLOBAL":
            module, qualname = last
            value = None
            yield (f"{module}.{qualname}" if isinstance(module, str) and isinstance(qualname, str)
                   else "(computed)")
        elif name in _EXTENSIONS:
            value = None
            key = copyreg._inverted_registry.get(arg)  # type: ignore[attr-defined]
            yield f"{key[0]}.{key[1]}" if key else "(computed)"
        elif name in _STRING_OPS:
            value = arg
        elif name in _MEMO_GETS:
            value = memo.get(arg) if isinstance(arg, int) else None
        else:
            value = None
        last = [last[-1], value]


def carries_code(payload: bytes) -> bool:
    """True if a serialized payload holds code objects or functions sent by value
    (what dill writes for a lambda, a closure, a ``__main__`` function or class
    with methods): it names one of :data:`CODE_GLOBALS`.

    Exact: the pickle's opcodes are read (:func:`named_globals`), so those names
    inside the data (a string, a bytes object) do not count; a payload with none
    of their bytes anywhere is answered without reading it. A pickle whose global
    names are computed, or that is malformed before its end, is taken to carry
    code if it names a code global or a computed name up to that point, and not
    otherwise (it would not load anyway).
    """
    if not any(part in payload for part in _CODE_NAME_BYTES):
        registry = copyreg._inverted_registry  # type: ignore[attr-defined]
        if not registry or not any(f"{m}.{n}" in CODE_GLOBALS for m, n in registry.values()):
            return False
    try:
        for name in named_globals(payload):
            if name in CODE_GLOBALS or name == "(computed)":
                return True
    except ValueError:
        pass
    return False


def local_python() -> str:
    """This interpreter's version, as the remote's hello gives its own."""
    return platform.python_version()


def same_minor(one: str, other: str) -> bool:
    """True if two Python versions ("3.11.7") share their major and minor."""
    return one.split(".")[:2] == other.split(".")[:2]


def code_skew(payloads: Iterable[bytes], remote_python: str, host: str,
              what: str = "this object") -> Optional[VersionSkewError]:
    """The error for sending ``payloads`` to a host whose Python is
    ``remote_python`` (its hello's ``python``), or None when that Python can load
    them: the same minor version as this one, an unknown one (``""``), or no
    payload carries code (:func:`carries_code`, read only when the minors differ).
    ``what`` names the payloads in the message ("task 3 (f)")."""
    local = local_python()
    if not remote_python or same_minor(local, remote_python):
        return None
    if not any(carries_code(payload) for payload in payloads):
        return None
    return VersionSkewError(
        f"{host}: {what} carries Python code (a function or class sent by value) made "
        f"by Python {local}, which Python {remote_python} there cannot load; define it "
        f"in a module shipped with modules=[...] or use the same Python minor version "
        f"on both ends", host, local=local, remote=remote_python)


def loads(data: Union[bytes, bytearray, memoryview], policy: Any = None, *,
          host: "str | None" = None, what: str = "a message",
          seq: "int | None" = None) -> Any:
    """Inverse of :func:`dumps`.

    With no ``policy``, plain ``pickle.loads``: for what the *caller* sent, which
    the remote side runs by design. Whatever comes back from a remote is loaded
    under the pipe's :class:`sshpipe.trust.TrustPolicy` (``trust_remote=``), which
    by default refuses anything that would run code here.

    Raises:
        UntrustedPayload: ``policy`` refused the payload (nothing of it ran).
        PayloadError: with a ``policy``, any other failure to load it, naming
            ``host`` and ``what`` (the message), the cause chained.
    """
    if policy is None:
        return pickle.loads(data)
    return policy.loads(data, host=host, what=what, seq=seq)
