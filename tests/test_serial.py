"""serial: what a payload carries is read from its opcodes, never from its bytes."""
from __future__ import annotations

import copyreg
import pickle
import types

import dill
import pytest

from sshpipe import VersionSkewError, serial

PROTOCOLS = [2, 3, 4, 5]
# Every name a code-carrying pickle may use, as text and as bytes: data that holds
# them is still data.
CODE_WORDS = ["_create_code", "_create_function", "dill._dill", "CodeType", "FunctionType",
              "dill._dill\n_create_code\n", "cdill._dill\n_create_code\n"]


class WithMethod:
    def method(self):
        return 1


def _local_classes():
    """Classes no module can give by name: dill sends them by value."""
    class Local(WithMethod):
        def other(self):
            return 2

    class Plain:
        value = 3

    return Local, Plain


def _data_payloads(protocol):
    """Plain data holding the code words, pickled by pickle and by dill."""
    data = [
        CODE_WORDS,
        {word: word.encode() for word in CODE_WORDS},
        ("dill._dill", "_create_code"),          # the operands STACK_GLOBAL would take
        b"".join(word.encode() for word in CODE_WORDS),
        bytearray(b"\x8c\ndill._dill\x94\x8c\x0c_create_code\x94\x93"),  # the opcodes, as data
        [["dill._dill", "_create_code"]] * 3,     # memoized strings, fetched again
    ]
    for value in data:
        yield pickle.dumps(value, protocol)
        yield dill.dumps(value, protocol)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_data_holding_the_code_names_carries_no_code(protocol):
    """The names of dill's code constructors inside strings and bytes are data."""
    for payload in _data_payloads(protocol):
        assert any(word.encode() in payload for word in ("_create_code", "CodeType")), payload
        assert not serial.carries_code(payload), pickle.loads(payload)


def _code_objects():
    offset = 5

    def closure():
        return offset

    yield lambda x: x + 1
    yield closure
    yield _local_classes()[0]
    yield _local_classes()[0]()
    yield [1, "two", {"f": lambda: 3}]       # code inside data
    yield closure.__code__


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_dill_code_payloads_carry_code(protocol):
    """What dill writes for lambdas, closures, classes with methods and bare code
    objects carries code, under every protocol (GLOBAL up to 3, STACK_GLOBAL from 4)."""
    for obj in _code_objects():
        payload = dill.dumps(obj, protocol, recurse=True)
        assert serial.carries_code(payload), obj


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_references_and_types_carry_no_code(protocol):
    """A function or class sent by reference, and a class without methods sent by
    value, hold no code object: they load on any Python."""
    import os.path
    for obj in (os.path.join, serial.dumps, WithMethod, WithMethod(), _local_classes()[1],
                _local_classes()[1](),
                types.FunctionType, types.CodeType):
        payload = dill.dumps(obj, protocol, recurse=True)
        assert not serial.carries_code(payload), obj


def test_named_globals_reads_both_global_opcodes():
    """GLOBAL (protocol 2) and STACK_GLOBAL (protocol 4, operands memoized) name
    the same globals; strings in the data are not named."""
    value = [serial.dumps, "os.path.join", serial.dumps]
    for protocol in PROTOCOLS:
        names = list(serial.named_globals(pickle.dumps(value, protocol)))
        assert names == ["sshpipe.serial.dumps"], (protocol, names)


def test_an_extension_code_naming_a_code_global_counts():
    """A global written as a copyreg extension code (EXT1) is looked up in the
    registry as the unpickler would."""
    from dill import _dill
    copyreg.add_extension("dill._dill", "_create_code", 240)
    try:
        payload = pickle.dumps(_dill._create_code, 2)
        assert b"_create_code" not in payload and b"\x82\xf0" in payload
        assert list(serial.named_globals(payload)) == ["dill._dill._create_code"]
        assert serial.carries_code(payload)
    finally:
        copyreg.remove_extension("dill._dill", "_create_code", 240)


def test_a_computed_global_name_counts_as_code():
    """STACK_GLOBAL whose operands the pickle computed cannot be named: taken to
    carry code (nothing sshpipe writes looks like this)."""
    # "builtins" pushed, then a name built by calling str() on a string.
    payload = (b"\x80\x04\x8c\x08builtins\x94\x8c\x08builtins\x94\x8c\x03str\x94\x93"
               b"\x8c\x0cCodeType_str\x94\x85R\x93.")
    assert "(computed)" in list(serial.named_globals(payload))
    assert serial.carries_code(payload)


def test_malformed_payloads_answer_without_raising():
    """Garbage, a truncated pickle and an empty one: no code, no exception; a
    truncated one that named a code global before it broke still counts."""
    code = dill.dumps(lambda: 1, 5, recurse=True)
    assert serial.carries_code(code[: code.index(b"_create_function") + 30])
    for payload in (b"", b"_create_code", b"\x80\x05\x8c\x0c_create_code", code[:3]):
        assert not serial.carries_code(payload), payload


def test_dumps_with_code_agrees_with_carries_code():
    """dumps_with_code's flag is carries_code of its payload; C pickle output never
    carries code."""
    for obj in [1, "x", {"_create_code": b"_create_code"}, WithMethod(), lambda: 2,
                *_local_classes()]:
        payload, has_code = serial.dumps_with_code(obj)
        assert has_code == serial.carries_code(payload), obj
    assert serial.dumps_with_code(lambda: 2)[1]
    assert not serial.dumps_with_code(["_create_code"])[1]


def test_code_skew_names_host_what_and_both_versions():
    """code_skew: None on the same minor, on an unknown remote version, and for
    payloads without code; otherwise a VersionSkewError naming host and versions."""
    local = serial.local_python()
    other = "3.9.18" if not local.startswith("3.9.") else "3.13.0"
    code = dill.dumps(lambda: 1, 5, recurse=True)
    data = pickle.dumps(["_create_code"], 5)
    assert serial.code_skew([code], local, "h") is None
    assert serial.code_skew([code], local.rsplit(".", 1)[0] + ".99", "h") is None
    assert serial.code_skew([code], "", "h") is None
    assert serial.code_skew([data, data], other, "h") is None
    error = serial.code_skew([data, code], other, "db1", "task 3 (f)")
    assert isinstance(error, VersionSkewError)
    assert error.host == "db1" and error.local == local and error.remote == other
    assert str(error).startswith("db1: task 3 (f) carries Python code") and other in str(error)


def test_same_minor():
    assert serial.same_minor("3.11.7", "3.11.0")
    assert not serial.same_minor("3.11.7", "3.1.17")
    assert not serial.same_minor("3.9.18", "3.13.0")
