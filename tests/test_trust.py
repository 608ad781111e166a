"""The trust policy for what comes back from a remote: what the default lets
through, how a caller widens it, and how refusals and failures are reported."""
from __future__ import annotations

import array
import collections
import dataclasses
import datetime
import decimal
import enum
import fractions
import http
import ipaddress
import json
import pathlib
import pickle
import signal
import subprocess
import sys
import types
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sshpipe import serial
from sshpipe.errors import (AgentStartError, ConnectTimeout, FrameError, PayloadError,
                            PipeBroken, RemoteError, UntrustedPayload)
from sshpipe.trust import DATA_GLOBALS, DEFAULT, FULL, TrustPolicy, policy_for


@dataclasses.dataclass
class Point:
    """A user class: not plain data for the default policy."""

    x: int
    y: int


class Colour(enum.Enum):
    RED = 1


class TaskFailed(Exception):
    """A user exception whose __init__ takes other arguments than its args."""

    def __init__(self, code: int):
        super().__init__(f"failed with {code}")
        self.code = code


VALUES = [
    None, True, 3, 2 ** 100, 1.5, complex(1, 2), "text", b"\x00bytes", bytearray(b"ba"),
    [1, [2]], (1, (2,)), {"k": {"n": 1}}, {1, 2}, frozenset({3}), slice(1, 5, 2), Ellipsis,
    NotImplemented, int, str, dict,
    datetime.date(2026, 1, 2), datetime.time(3, 4), datetime.timedelta(days=2),
    datetime.datetime(2026, 1, 2, 3, 4, tzinfo=datetime.timezone(datetime.timedelta(hours=2))),
    decimal.Decimal("1.25"), fractions.Fraction(1, 3), uuid.UUID(int=12345),
    pathlib.PurePosixPath("/a/b"), pathlib.PureWindowsPath("c:/x"), pathlib.Path("/tmp/y"),
    ipaddress.ip_address("10.0.0.1"), ipaddress.ip_network("fe80::/64"),
    ipaddress.ip_interface("10.1.2.3/24"),
    collections.OrderedDict(a=1), collections.deque([1, 2], maxlen=5),
    collections.Counter("aab"), collections.defaultdict(list, {"a": [1]}),
    collections.ChainMap({"a": 1}, {"b": 2}), array.array("d", [1.5, 2.5]),
    types.SimpleNamespace(a=1, b=[2]), signal.SIGTERM, http.HTTPStatus.NOT_FOUND, Colour.RED,
]

EXCEPTIONS = [
    ValueError("v"), KeyError("k"), OSError(2, "No such file", "/x"), TimeoutError("late"),
    UnicodeDecodeError("utf-8", b"\xff", 0, 1, "bad"), SystemExit(3), KeyboardInterrupt(),
    subprocess.CalledProcessError(2, ["ls"], b"out", b"err"),
    json.JSONDecodeError("bad", "{x", 1), TaskFailed(7),
    PipeBroken("h1: broke", (3, 4), host="h1"), ConnectTimeout("h2: late", "h2"),
    FrameError("too big", 3, host="h3"), RemoteError("h4: failed", "h4", 1, "Traceback ..."),
    AgentStartError("h5: no python", "h5", 127, "sh: python3: not found"),
]


def dumps(obj, protocol=5) -> bytes:
    """pickle.dumps with the stdlib's reducers only (as the remote has them): another
    test may have imported distributed, which installs tblib's for every exception."""
    import copyreg
    import io

    buffer = io.BytesIO()
    pickler = pickle.Pickler(buffer, protocol=protocol)
    pickler.dispatch_table = {cls: reduce for cls, reduce in copyreg.dispatch_table.items()
                              if not (isinstance(cls, type) and issubclass(cls, BaseException))}
    pickler.dump(obj)
    return buffer.getvalue()


def _same(a, b) -> bool:
    if isinstance(a, BaseException):
        return type(a) is type(b) and a.args == b.args and vars(a) == vars(b)
    if isinstance(a, array.array):
        return a == b and a.typecode == b.typecode
    return type(a) is type(b) and (a == b or a is b)


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
@pytest.mark.parametrize("value", VALUES + EXCEPTIONS, ids=lambda v: type(v).__name__)
def test_default_loads_plain_data_and_exceptions(value, protocol):
    """Builtin and stdlib values, enums and exceptions (builtin, stdlib, user,
    sshpipe's own) load under the default policy, in every pickle protocol, exactly
    as plain pickle loads them."""
    if protocol < 2 and isinstance(value, (collections.deque, type(NotImplemented))):
        pytest.skip("not picklable in this protocol")
    if protocol < 5 and isinstance(value, bytearray):
        pytest.skip("before protocol 5 a bytearray is bytearray(bytes): refused, as "
                    "bytearray(n) makes n bytes from a few")
    data = dumps(value, protocol)
    loaded = DEFAULT.loads(data)
    assert _same(pickle.loads(data), loaded), (value, loaded)  # as plain pickle gives it
    assert type(loaded) is type(value) or protocol < 3


def test_sshpipe_errors_keep_their_fields_and_cause():
    """sshpipe's errors cross the policy whole: host, fields, chained cause."""
    error = PipeBroken("h: broke", (1,), host="h")
    error.__cause__ = OSError(104, "Connection reset")
    loaded = DEFAULT.loads(dumps(error))
    assert loaded.host == "h" and loaded.unhandled == (1,)
    assert isinstance(loaded.__cause__, OSError) and loaded.__cause__.errno == 104
    remote = DEFAULT.loads(dumps(RemoteError("m", "h", remote_traceback="TB")))
    assert str(remote.__cause__) == "TB"


def test_user_class_is_refused_with_a_hint_naming_it():
    """A user class is not plain data: refused, and the message says how to allow it."""
    with pytest.raises(UntrustedPayload) as caught:
        DEFAULT.loads(pickle.dumps(Point(1, 2)), host="db1", what="reply 4", seq=4)
    error = caught.value
    assert error.refused == f"{__name__}.Point"
    assert (error.host, error.seq, error.what) == ("db1", 4, "reply 4")
    assert str(error).startswith(f"db1: reply 4: refused {__name__}.Point: a class")
    assert f"trust_remote=['{__name__}:Point']" in str(error)
    assert isinstance(error, pickle.UnpicklingError)


@pytest.mark.parametrize("allow", [[Point], [f"{__name__}:Point"], [__name__],
                                   [__name__.split(".")[0]]])
def test_allow_list_widens_the_default(allow):
    """A class object, 'module:qualname', its module or a parent package allows it;
    the default data types still load alongside."""
    policy = policy_for(allow)
    assert policy.loads(pickle.dumps([Point(1, 2), datetime.date(2026, 1, 1)])) == [
        Point(1, 2), datetime.date(2026, 1, 1)]


def test_allowing_a_class_does_not_allow_its_neighbours():
    """'module:qualname' allows that one name, not the rest of the module."""
    policy = TrustPolicy([f"{__name__}:Colour"])
    with pytest.raises(UntrustedPayload):
        policy.loads(pickle.dumps(Point(1, 2)))


def test_exception_of_a_module_not_imported_is_refused_without_importing(tmp_path,
                                                                         monkeypatch):
    """Naming an exception class of a module the caller never imported does not
    import it (importing runs code); once the caller imports it, it loads."""
    (tmp_path / "sshpipe_trust_mod.py").write_text(
        "IMPORTED = True\nclass Boom(Exception):\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "sshpipe_trust_mod", raising=False)
    payload = b"\x80\x04\x8c\x11sshpipe_trust_mod\x8c\x04Boom\x93\x8c\x01x\x85R."
    with pytest.raises(UntrustedPayload, match="not imported here"):
        DEFAULT.loads(payload)
    assert "sshpipe_trust_mod" not in sys.modules
    import sshpipe_trust_mod

    assert type(DEFAULT.loads(payload)) is sshpipe_trust_mod.Boom


def test_full_trust_is_plain_pickle():
    """trust_remote=True loads what the default refuses."""
    assert policy_for(True) is FULL
    assert FULL.loads(pickle.dumps(Point(3, 4))) == Point(3, 4)


def test_policy_for_arguments():
    """False/None is the default, True full trust, a class or a string one entry;
    anything else is a TypeError or ValueError at construction."""
    assert policy_for(False) is DEFAULT and policy_for(None) is DEFAULT
    assert policy_for(Point) == TrustPolicy([Point])
    assert policy_for("numpy").allowed == ("numpy",)
    assert policy_for(TrustPolicy(["a.b"])) == TrustPolicy(["a.b"])
    with pytest.raises(TypeError):
        policy_for(3)
    with pytest.raises(ValueError):
        policy_for(["not a module!"])
    with pytest.raises(TypeError, match="no importable name"):
        policy_for([lambda: None])


def test_policy_pickles_by_name_and_shows_what_it_allows():
    """A policy travels (spawn) as names only, and its repr lists its additions."""
    policy = TrustPolicy([Point, "numpy"])
    assert pickle.loads(pickle.dumps(policy)) == policy
    assert repr(policy) == f"TrustPolicy(allow=['numpy', '{__name__}:Point'])"
    assert repr(DEFAULT) == "TrustPolicy()" and repr(FULL) == "TrustPolicy(full=True)"


@pytest.mark.parametrize("policy", [DEFAULT, FULL], ids=["default", "full"])
def test_broken_payloads_are_payload_errors_with_the_cause(policy):
    """A truncated pickle or a class missing here is a PayloadError naming the host
    and the message, the original error chained."""
    with pytest.raises(PayloadError, match="h9: reply 2: could not be loaded") as caught:
        policy.loads(pickle.dumps([1, 2, 3])[:-3], host="h9", what="reply 2", seq=2)
    assert not isinstance(caught.value, UntrustedPayload)
    assert caught.value.__cause__ is not None and caught.value.seq == 2


def test_serial_loads_without_a_policy_is_plain_pickle():
    """serial.loads(data) (the remote side, loading what the caller sent) is
    unchanged; with a policy it goes through it."""
    assert serial.loads(pickle.dumps(Point(1, 1))) == Point(1, 1)
    with pytest.raises(UntrustedPayload):
        serial.loads(pickle.dumps(Point(1, 1)), DEFAULT, host="h")


def test_data_table_names_exist_and_are_not_python2_renames():
    """Every allowed global exists, and none is a name that pickle's Python 2
    compatibility would map to something else."""
    import _compat_pickle
    import importlib

    for module, names in DATA_GLOBALS.items():
        assert module not in _compat_pickle.IMPORT_MAPPING
        loaded = importlib.import_module(module)
        for name in names:
            assert hasattr(loaded, name), (module, name)
            assert (module, name) not in _compat_pickle.NAME_MAPPING


plain = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
    | st.binary() | st.dates() | st.datetimes() | st.timedeltas() | st.decimals(allow_nan=False)
    | st.fractions() | st.uuids() | st.complex_numbers(allow_nan=False),
    lambda inner: st.lists(inner) | st.tuples(inner, inner)
    | st.dictionaries(st.text(), inner) | st.frozensets(st.integers()),
    max_leaves=30)


@settings(max_examples=200, deadline=None)
@given(plain)
def test_any_plain_value_loads_as_plain_pickle_does(value):
    """For any mix of plain values the default policy gives what pickle.loads gives
    (the fast path, the Unpickler path and the checked path agree)."""
    data = pickle.dumps(value, 5)
    assert DEFAULT.loads(data) == pickle.loads(data)
    assert TrustPolicy([Point]).loads(pickle.dumps([Point(1, 2), value])) == [Point(1, 2),
                                                                             value]
