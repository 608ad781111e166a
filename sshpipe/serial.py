"""Serialization of messages: C pickle when it is safe, dill when it is needed.

Stdlib only (dill is imported when needed): shipped to remote hosts as source.

dill pickles what pickle cannot (lambdas, closures, classes and functions defined
in ``__main__``), but its pickler is pure Python and 20 to 100 times slower than
the C one. So :func:`dumps` first tries the C pickler with a guard that refuses
anything pickle would store *by reference* to ``__main__`` (such a reference
cannot be resolved on the other end), and falls back to dill for whatever is
refused or fails. :func:`loads` is plain ``pickle.loads``: dill's output loads
with it, importing dill only when the data needs it.
"""
from __future__ import annotations

import io
import pickle
import types
from typing import Any, Tuple

__all__ = ["PROTOCOL", "carries_code", "dump_parts", "dumps", "dumps_with_code", "loads"]

# Protocol 5 is understood by every supported Python (3.8 and later).
PROTOCOL = 5


# PROTO 5 and BINBYTES8: the opcodes before a bytes object's length and data.
_PROTO_5_BINBYTES8 = b"\x80\x05\x8e"
# From this size on a bytes message is sent without being copied into a pickle.
_ZERO_COPY_BYTES = 64 * 1024
# Types whose pickle can hold nothing but data.
_PLAIN = frozenset((type(None), bool, int, float, complex, str, bytes, bytearray))


class _ByValueNeeded(Exception):
    """The object refers to ``__main__``: only dill can carry it by value."""


class _GuardedPickler(pickle.Pickler):
    # Called for every object except None, bools, ints, floats, bytes, str and the
    # builtin containers, so plain data pays nothing for the guard.
    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, (type, types.FunctionType)):
            module = getattr(obj, "__module__", None)
        else:
            module = getattr(type(obj), "__module__", None)
        if module == "__main__":
            raise _ByValueNeeded
        return NotImplemented


def dumps(obj: Any) -> bytes:
    """Serialize ``obj`` for the other end of a pipe.

    Raises:
        Exception: whatever dill raises for an object it cannot serialize either
            (``TypeError``, ``pickle.PicklingError`` ...), and ``ImportError``
            when such an object needs dill and dill is not installed.
    """
    return dumps_with_code(obj)[0]


def dumps_with_code(obj: Any) -> Tuple[bytes, bool]:
    """:func:`dumps`, plus whether the result carries code objects (functions or
    classes sent by value), which load only on the Python minor version that
    made them. Only dill's output can, so only it is scanned."""
    if type(obj) in _PLAIN:
        return pickle.dumps(obj, PROTOCOL), False  # nothing in it refers to __main__
    buffer = io.BytesIO()
    try:
        _GuardedPickler(buffer, protocol=PROTOCOL).dump(obj)
        return buffer.getvalue(), False
    except (_ByValueNeeded, pickle.PicklingError, TypeError, AttributeError):
        pass
    import dill

    # recurse: carry only the globals a function uses, not its whole module (which
    # the other end may not have).
    payload = dill.dumps(obj, protocol=PROTOCOL, recurse=True)
    return payload, carries_code(payload)


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


def carries_code(payload: bytes) -> bool:
    """True if a serialized payload holds code objects (dill by value)."""
    return b"_create_code" in payload


def loads(data: bytes) -> Any:
    """Inverse of :func:`dumps`."""
    return pickle.loads(data)
