"""What a remote host may make the caller build: the trust policy for everything
that comes back (replies, task results and exceptions, the log records inside
them).

Why: a pickle is a small program. Its ``GLOBAL`` opcodes import any name and its
``REDUCE`` opcode calls it, so ``pickle.loads`` of bytes from a compromised host
is code execution in the caller (``os.system``, ``subprocess.Popen``,
``builtins.eval``, dill's code and function constructors ...). OpenSSH never lets
a server run code on the client; by default neither does sshpipe.

A :class:`TrustPolicy` decides which globals a remote's pickle may name:

- by default (``trust_remote=False``): plain data only. Builtin scalars and
  containers need no global at all; on top of them a fixed table of stdlib value
  types (:data:`DATA_GLOBALS`: datetime, decimal, fractions, uuid, pathlib,
  ipaddress, collections, array ...); exception classes (any ``BaseException``
  subclass) and enums of modules the caller has *already imported*, so remote
  exceptions and sshpipe's own errors arrive as themselves. Nothing is imported
  on the remote's say-so (importing runs a module's code), and a name is looked
  up in the module's ``__dict__``, never through ``getattr`` hooks;
- ``trust_remote=[...]``: the default plus classes or functions given as objects,
  modules given by name (``"numpy"``: everything in it and under it) and single
  globals given as ``"module:qualname"``. Allowing a module trusts every
  callable in it;
- ``trust_remote=True``: full trust, plain ``pickle.loads`` as before.

Allowed names alone are not enough: a pickle can also *change* an allowed class
(``BUILD`` on a class sets its attributes, so a pickle could replace
``PurePath``'s slots for every path in the process) or call something that is
not a global. So whenever a pickle names a class or function that can be changed
(one defined in Python, not a builtin type), its opcodes are first checked as a
stack machine (:func:`_check_structure`): only globals may be called or
instantiated, and nothing is built into or set on a global. Builtin types cannot
be changed, so plain data and builtin values load at the C unpickler's speed,
with one ``find_class`` call per distinct global.

What this does not bound: the CPU and memory a hostile payload can cost (up to
the pipe's ``max_frame`` per message, and more through values that are slow to
build); a remote can still lie in the data it sends.
"""
from __future__ import annotations

import _compat_pickle
import copyreg
import enum
import importlib
import io
import pickle
import pickletools
import sys
import types
from typing import Any, Dict, FrozenSet, Iterable, List, Optional, Tuple, Union

from sshpipe.errors import PayloadError, UntrustedPayload

__all__ = ["DATA_GLOBALS", "DEFAULT", "FULL", "TrustPolicy", "TrustRemote", "policy_for"]

# Stdlib globals that build values and run nothing else whatever their arguments:
# what the C pickler writes for these types (protocol 5). Left out on purpose:
# builtins.range, bytes and bytearray (they turn a few bytes of pickle into any
# amount of memory, and protocol 5 has opcodes for bytes), type, getattr and
# every function that imports, evaluates or touches files and processes.
DATA_GLOBALS: Dict[str, FrozenSet[str]] = {
    "builtins": frozenset({"complex", "slice", "set", "frozenset", "list", "tuple", "dict",
                           "int", "float", "str", "bool", "object", "Ellipsis",
                           "NotImplemented"}),
    # Protocols 0 and 1 build objects with these (they call an allowed class's
    # __new__, and its __init__ for _reconstructor).
    "copyreg": frozenset({"_reconstructor", "__newobj__", "__newobj_ex__"}),
    "_codecs": frozenset({"encode"}),           # protocols 0-2 write bytes as encode(str)
    "collections": frozenset({"OrderedDict", "deque", "Counter", "defaultdict", "ChainMap"}),
    "datetime": frozenset({"date", "time", "datetime", "timedelta", "timezone", "tzinfo"}),
    "decimal": frozenset({"Decimal"}),
    "fractions": frozenset({"Fraction"}),
    "uuid": frozenset({"UUID", "SafeUUID"}),
    "pathlib": frozenset({"PurePath", "PurePosixPath", "PureWindowsPath", "Path", "PosixPath",
                          "WindowsPath"}),
    "ipaddress": frozenset({"IPv4Address", "IPv6Address", "IPv4Network", "IPv6Network",
                            "IPv4Interface", "IPv6Interface"}),
    "array": frozenset({"array", "_array_reconstructor"}),
    "types": frozenset({"SimpleNamespace"}),
}

# The opcodes through which a pickle reaches anything but builtin data: GLOBAL,
# INST, STACK_GLOBAL, EXT1/2/4, PERSID, BINPERSID. A small payload whose bytes
# hold none of them (anywhere, data included) goes straight to pickle.loads,
# which costs a few microseconds less than an Unpickler; larger ones are not
# scanned (the scan would cost more than it saves).
_PRECHECKED = 4096


_NAMING_OPCODES = b"ci\x93\x82\x83\x84PQ"


def _names_nothing(data: bytes) -> bool:
    """True if no byte of ``data`` could be an opcode that names a global (one C
    pass deleting those bytes: cheaper than a regex class or a search per byte)."""
    return len(data.translate(None, _NAMING_OPCODES)) == len(data)

# type.__flags__ bits (CPython's object.h): a heap type is made by a class
# statement (or PyType_FromSpec); an immutable one refuses setattr (3.10+).
_HEAPTYPE = 1 << 9
_IMMUTABLETYPE = 1 << 8


class _Refused(Exception):
    """Raised inside the unpickler; turned into UntrustedPayload by loads()."""

    def __init__(self, refused: str, reason: str, allowable: bool = False):
        super().__init__(refused, reason)
        self.refused = refused
        self.reason = reason
        self.allowable = allowable  # worth suggesting trust_remote=[that name]


class _ScanNeeded(Exception):
    """The pickle names something changeable: check its structure first."""


def _is_changeable(obj: Any) -> bool:
    """True if a pickle's BUILD could set attributes on ``obj`` itself."""
    if isinstance(obj, type):
        flags = obj.__flags__
        return bool(flags & _HEAPTYPE) and not flags & _IMMUTABLETYPE
    return hasattr(obj, "__dict__")  # Python functions, module-level instances


def _lookup(namespace: Any, qualname: str) -> Any:
    """``qualname`` in ``namespace`` through ``__dict__`` only: no ``getattr``, so no
    module ``__getattr__``, property or descriptor runs, and no dunder is reached."""
    obj = namespace
    for part in qualname.split("."):
        if not part or part.startswith("__"):
            return None
        try:
            obj = vars(obj).get(part)
        except TypeError:  # no __dict__
            return None
        if obj is None:
            return None
    return obj


def _name_of(obj: Any) -> Tuple[str, str]:
    module = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(qualname, str) or "<locals>" in qualname:
        raise TypeError(f"trust_remote: {obj!r} has no importable name (module, qualname); "
                        f"allow a class or function defined at module level, a module "
                        f"name, or 'module:qualname'")
    return module, qualname


class TrustPolicy:
    """Which globals a remote's pickles may name; see the module docstring.

    Args:
        allow: classes or functions (as objects), module names (``"pkg"`` allows
            ``pkg`` and everything under it) and single globals
            (``"module:qualname"``), on top of the default data types.
        full: trust the remote completely (plain ``pickle.loads``).
    """

    __slots__ = ("full", "_modules", "_names", "_objects")

    def __init__(self, allow: Iterable[Any] = (), *, full: bool = False):
        self.full = bool(full)
        modules: List[str] = []
        names: Dict[Tuple[str, str], Any] = {}
        for entry in allow:
            if isinstance(entry, str):
                module, sep, qualname = entry.partition(":")
                if not module or not all(part.isidentifier() for part in module.split(".")) \
                        or (sep and not all(p.isidentifier() for p in qualname.split("."))):
                    raise ValueError(f"trust_remote: {entry!r} is neither a module name nor "
                                     f"'module:qualname'")
                if sep:
                    names[(module, qualname)] = None  # resolved when first named
                else:
                    modules.append(module)
            else:
                names[_name_of(entry)] = entry
        self._modules = tuple(sorted(set(modules)))
        self._names = tuple(sorted(names))
        self._objects = {key: obj for key, obj in names.items() if obj is not None}

    # -- what it allows ----------------------------------------------------
    @property
    def allowed(self) -> Tuple[str, ...]:
        """The user's additions, as ``module`` and ``module:qualname`` strings."""
        return self._modules + tuple(f"{m}:{q}" for m, q in self._names)

    def _in_user_modules(self, module: str) -> bool:
        return any(module == m or module.startswith(m + ".") for m in self._modules)

    def _resolve(self, module: str, name: str) -> Any:
        """The object a pickle's global ``module.name`` stands for, if allowed.

        Raises:
            _Refused: it is not.
        """
        # Protocols 0-2 carry Python 2 names (__builtin__, copy_reg, exceptions):
        # map them as pickle does, then judge the name they stand for.
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        elif module in _compat_pickle.IMPORT_MAPPING:
            module = _compat_pickle.IMPORT_MAPPING[module]
        key = (module, name)
        if key in self._objects:
            return self._objects[key]
        if key in self._names or self._in_user_modules(module):
            # The user trusts this name or module: resolve it as pickle would.
            obj: Any = importlib.import_module(module)
            for part in name.split("."):
                obj = getattr(obj, part)
            return obj
        if name in DATA_GLOBALS.get(module, ()):
            return getattr(importlib.import_module(module), name)
        loaded = sys.modules.get(module)
        if isinstance(loaded, types.ModuleType):
            obj = _lookup(loaded, name)
            if isinstance(obj, type) and (issubclass(obj, BaseException)
                                          or (issubclass(obj, enum.Enum)
                                              and len(obj.__members__) > 0)):
                return obj
        raise _why_refused(module, name, loaded)

    # -- loading -------------------------------------------------------------
    def loads(self, data: bytes, *, host: Optional[str] = None, what: str = "a message",
              seq: Optional[int] = None) -> Any:
        """Unpickle ``data`` from ``host`` under this policy.

        Raises:
            UntrustedPayload: the policy refused it; nothing of it ran.
            PayloadError: it is not a valid pickle, names something missing
                here, or building it raised (the cause chained).
        """
        where = f"{host}: {what}" if host else what
        try:
            if self.full:
                return pickle.loads(data)
            return self._restricted_loads(data)
        except _Refused as refused:
            raise UntrustedPayload(f"{where}: refused {refused.refused}: {refused.reason}; "
                                   f"nothing in it was run. {_hint(refused, host)}", host,
                                   what=what, seq=seq, refused=refused.refused) from None
        except (Exception, SystemExit) as exc:  # SystemExit: a trusted pickle can raise it
            raise PayloadError(f"{where}: could not be loaded: {exc!r}", host, what=what,
                               seq=seq) from exc

    def _restricted_loads(self, data: bytes) -> Any:
        if type(data) is bytes and len(data) <= _PRECHECKED and _names_nothing(data):
            # No opcode that names a global: nothing but builtin data can come out.
            return pickle.loads(data)
        # copyreg's extension cache hands out objects without calling find_class:
        # only the structure check (which refuses extension codes) can see them.
        if copyreg._extension_cache:  # type: ignore[attr-defined]
            _check_structure(data)
            return _Unpickler(data, self, checked=True).load()
        try:
            return _Unpickler(data, self, checked=False).load()
        except _ScanNeeded:
            pass
        _check_structure(data)
        return _Unpickler(data, self, checked=True).load()

    # -- identity ------------------------------------------------------------
    def __reduce__(self) -> Tuple[Any, ...]:
        return (_rebuild_policy, (self.allowed, self.full))

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, TrustPolicy) and self.full == other.full
                and self.allowed == other.allowed)

    def __hash__(self) -> int:
        return hash((self.full, self.allowed))

    def __repr__(self) -> str:
        if self.full:
            return "TrustPolicy(full=True)"
        return f"TrustPolicy(allow={list(self.allowed)!r})" if self.allowed else \
            "TrustPolicy()"


def _hint(refused: _Refused, host: Optional[str]) -> str:
    who = host or "the remote"
    if refused.allowable:
        module, _, name = refused.refused.rpartition(".")
        return (f"If it is a class {who} may build here, allow it: "
                f"trust_remote=['{module}:{name}'] (or the class itself)")
    return f"Only trust_remote=True would load it: do that only if {who} may run code here"


def _rebuild_policy(allowed: Tuple[str, ...], full: bool) -> TrustPolicy:
    return TrustPolicy(allowed, full=full)


def _why_refused(module: str, name: str, loaded: Any) -> "_Refused":
    refused = f"{module}.{name}"
    if module == "dill" or module.startswith("dill."):
        return _Refused(refused, "dill would build code (a function, class or code object) "
                                 "sent by value")
    if loaded is None:
        return _Refused(refused, "its module is not imported here, and importing it would "
                                 "run it", allowable=True)
    obj = _lookup(loaded, name) if isinstance(loaded, types.ModuleType) else None
    if isinstance(obj, type):
        return _Refused(refused, "a class that is not plain data, an exception or an enum",
                        allowable=True)
    if callable(obj):
        return _Refused(refused, "a function: a pickle that calls it can do whatever it does")
    return _Refused(refused, "not plain data, nor allowed by trust_remote")


class _Unpickler(pickle.Unpickler):
    """The C unpickler with every global passed through a policy."""

    def __init__(self, data: bytes, policy: TrustPolicy, *, checked: bool):
        super().__init__(io.BytesIO(data))
        self._policy = policy
        self._checked = checked  # the structure was checked: changeable globals are fine

    def find_class(self, module: str, name: str) -> Any:
        obj = self._policy._resolve(module, name)
        if not self._checked and _is_changeable(obj):
            raise _ScanNeeded
        return obj

    def persistent_load(self, pid: Any) -> Any:
        raise _Refused("persistent id", "sshpipe never sends persistent ids")


# -- the structure check ------------------------------------------------------------

class _Global:
    """A stack entry that is a global (a class or function the pickle named)."""

    __slots__ = ("name",)

    def __init__(self, name: str):
        self.name = name


_MARK = object()
_VALUE = object()
_STRINGS = frozenset({"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE"})
# opcode -> how many entries below the operands are the object it works on
_CALLS = {"REDUCE": 2, "NEWOBJ": 2, "NEWOBJ_EX": 3}
_FILLS = frozenset({"BUILD", "APPEND", "APPENDS", "SETITEM", "SETITEMS", "ADDITEMS"})
_GETS = frozenset({"GET", "BINGET", "LONG_BINGET"})
_PUTS = frozenset({"PUT", "BINPUT", "LONG_BINPUT"})


def _check_structure(data: bytes) -> None:
    """Run the pickle's opcodes over a model of its stack, refusing a call of
    anything but a global and any change to a global (BUILD, append, setitem).

    Each entry stands for an object: a :class:`_Global`, a string (kept, for
    STACK_GLOBAL's operands), or any other value. The memo is modelled the same
    way, so a global cannot be disguised by storing and fetching it.

    Raises:
        _Refused: a forbidden operation, or an opcode sshpipe never sends.
        ValueError: the pickle is malformed (pickletools' own checks).
    """
    stack: List[Any] = []
    memo: Dict[int, Any] = {}
    for opcode, arg, at in pickletools.genops(data):
        pos = -1 if at is None else at  # None only for a stream without tell()
        name = opcode.name
        if name in _STRINGS:
            stack.append(arg)
        elif name == "MARK":
            stack.append(_MARK)
        elif name == "MEMOIZE":
            memo[len(memo)] = _top(stack, pos)
        elif name in _PUTS:
            if not isinstance(arg, int):  # pickletools decodes every PUT's key as an int
                raise ValueError(f"pickle at byte {pos}: memo key {arg!r} is not a number")
            memo[arg] = _top(stack, pos)
        elif name in _GETS:
            if arg not in memo:
                raise ValueError(f"pickle at byte {pos}: memo key {arg} is not set")
            stack.append(memo[arg])
        elif name == "DUP":
            stack.append(_top(stack, pos))
        elif name == "GLOBAL":
            stack.append(_Global(str(arg).replace(" ", ".")))
        elif name == "STACK_GLOBAL":
            module, qualname = _pop(stack, 2, pos)
            stack.append(_Global(f"{module}.{qualname}" if isinstance(module, str)
                                 and isinstance(qualname, str) else "(computed name)"))
        elif name in ("EXT1", "EXT2", "EXT4"):
            raise _Refused(f"extension code {arg}",
                           "copyreg extension codes are not accepted from a remote")
        elif name in ("PERSID", "BINPERSID"):
            raise _Refused("persistent id", "sshpipe never sends persistent ids")
        else:
            _apply(opcode, name, stack, pos)


def _top(stack: List[Any], pos: int) -> Any:
    if not stack or stack[-1] is _MARK:
        raise ValueError(f"pickle at byte {pos}: nothing on the stack")
    return stack[-1]


def _pop(stack: List[Any], count: int, pos: int) -> List[Any]:
    if count == 0:
        return []
    if len(stack) < count or any(entry is _MARK for entry in stack[-count:]):
        raise ValueError(f"pickle at byte {pos}: stack underflow")
    items = stack[-count:]
    del stack[-count:]
    return items


def _apply(opcode: Any, name: str, stack: List[Any], pos: int) -> None:
    """Any other opcode: pop its operands (checking calls and fills), push values."""
    before = opcode.stack_before
    if pickletools.markobject in before:
        try:
            mark = len(stack) - 1 - stack[::-1].index(_MARK)
        except ValueError:
            raise ValueError(f"pickle at byte {pos}: no mark on the stack") from None
        items = stack[mark + 1:]
        del stack[mark:]
        below = _pop(stack, before.index(pickletools.markobject), pos)
    else:
        items = []
        below = _pop(stack, len(before), pos)
    if name in _CALLS:
        _must_be_global(below[0], name)
    elif name == "OBJ":
        _must_be_global(items[0] if items else None, name)
    elif name in _FILLS and isinstance(below[0], _Global):
        raise _Refused(below[0].name, f"the pickle would change it ({name} on an existing "
                                      f"class or function)")
    stack.extend(_VALUE for _ in opcode.stack_after)


def _must_be_global(entry: Any, name: str) -> None:
    if not isinstance(entry, _Global):
        raise _Refused(f"{name} of a computed object",
                       "only classes and functions named by the pickle may be called")


DEFAULT = TrustPolicy()
FULL = TrustPolicy(full=True)

TrustRemote = Union[bool, TrustPolicy, Iterable[Any]]


def policy_for(trust_remote: Any) -> TrustPolicy:
    """The policy a ``trust_remote=`` argument stands for: False (or None) the
    default, True full trust, a :class:`TrustPolicy` itself, anything else the
    default plus the classes, functions and names it lists.

    Raises:
        TypeError, ValueError: an entry that names nothing importable.
    """
    if trust_remote is None or trust_remote is False:
        return DEFAULT
    if trust_remote is True:
        return FULL
    if isinstance(trust_remote, TrustPolicy):
        return trust_remote
    if isinstance(trust_remote, (str, type, types.FunctionType)):
        trust_remote = [trust_remote]
    try:
        entries = list(trust_remote)
    except TypeError:
        raise TypeError(f"trust_remote must be True, False or a list of classes, functions "
                        f"and module names, not {trust_remote!r}") from None
    return TrustPolicy(entries)
