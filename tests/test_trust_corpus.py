"""A corpus of hostile pickles: every one is refused by the default trust policy and
none of them runs (each would create a canary file if it did).

Each gadget is also run under full trust (plain ``pickle.loads``) where that is
safe, to prove it is real: the canary appears there. Gadgets that only change a
class are checked the same way (the class is changed under full trust, and put
back).
"""
from __future__ import annotations

import copyreg
import fractions
import marshal
import os
import pickle
import struct
import subprocess
import sys
import time
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List

import dill
import pytest

from sshpipe.errors import PayloadError, UntrustedPayload
from sshpipe.trust import DEFAULT, FULL, TrustPolicy

# -- a tiny pickle assembler (protocol 0 text opcodes plus a few binary ones) ------


def glob(module: str, name: str) -> bytes:
    """GLOBAL: push module.name (the unpickler imports and looks it up)."""
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def stack_glob(module: str, name: str) -> bytes:
    """STACK_GLOBAL from two short strings (protocol 4: dotted names allowed)."""
    return text(module) + text(name) + b"\x93"


def text(value: str) -> bytes:
    """BINUNICODE."""
    data = value.encode()
    return b"X" + struct.pack("<I", len(data)) + data


def tup(*items: bytes) -> bytes:
    return b"(" + b"".join(items) + b"t"


def call(func: bytes, *args: bytes) -> bytes:
    """REDUCE: func(*args)."""
    return func + tup(*args) + b"R"


def integer(value: int) -> bytes:
    return b"I" + str(value).encode() + b"\n"


def lst(*items: bytes) -> bytes:
    return b"(" + b"".join(items) + b"l"


def program(body: bytes) -> bytes:
    return b"\x80\x04" + body + b"."


# -- the gadgets ------------------------------------------------------------------

@dataclass
class Gadget:
    name: str
    build: Callable[[str, Path], bytes]   # (canary path, scratch dir) -> pickle
    live: bool = True                     # runs (creates the canary) under full trust
    slow: bool = False                    # the canary appears a moment later (a child)


def shell(canary: str) -> str:
    return f"touch {canary}"


def pycode(canary: str) -> str:
    return f"open({canary!r}, 'w').close()"


class ReduceTo:
    """An object whose pickle is ``func(*args)``: how every REDUCE gadget is made."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return (self.func, self.args)


class ReduceExTo(ReduceTo):
    def __reduce_ex__(self, protocol):
        return (self.func, self.args)


def by_pickler(protocol: int, factory) -> Callable[[str, Path], bytes]:
    return lambda canary, tmp: pickle.dumps(factory(canary, tmp), protocol=protocol)


def _os_system(canary, tmp):
    return ReduceTo(os.system, shell(canary))


def _dill_lambda(canary, tmp):
    fn = eval(f"lambda: {pycode(canary)}")  # a lambda: dill sends it by value
    return dill.dumps(ReduceTo(fn), recurse=True)


def _dill_closure(canary, tmp):
    def outer(path):
        def inner():
            open(path, "w").close()
        return inner
    return dill.dumps(ReduceTo(outer(canary)), recurse=True)


def binbytes(data: bytes) -> bytes:
    return b"B" + struct.pack("<I", len(data)) + data


def _marshal_function(canary, tmp):
    code = marshal.dumps(compile(pycode(canary), "<gadget>", "exec"))
    function = call(glob("types", "FunctionType"), call(glob("marshal", "loads"),
                                                        binbytes(code)), b"}")
    return program(function + b")R")


def _nested_pickle(canary, tmp):
    inner = pickle.dumps(ReduceTo(os.system, shell(canary)))
    return program(call(glob("pickle", "loads"), binbytes(inner)))


def _runpy_script(canary, tmp):
    script = tmp / "gadget_script.py"
    script.write_text(pycode(canary) + "\n")
    return program(call(glob("runpy", "run_path"), text(str(script))))


def _import_side_effect(canary, tmp):
    """A module whose import creates the canary: naming it must not import it."""
    (tmp / "sshpipe_gadget_module.py").write_text(pycode(canary) + "\nclass Error(Exception):\n"
                                                  "    pass\n")
    return program(call(stack_glob("sshpipe_gadget_module", "Error"), text("x")))


def _module_getattr_hook(canary, tmp):
    """A loaded module with a __getattr__ that runs code: never consulted."""
    module = types.ModuleType("sshpipe_gadget_lazy")
    module.__getattr__ = eval(f"lambda name: ({pycode(canary)}, ValueError)[1]")
    sys.modules["sshpipe_gadget_lazy"] = module
    return program(call(stack_glob("sshpipe_gadget_lazy", "Anything"), text("x")))


def _copyreg_reconstructor_popen(canary, tmp):
    popen = glob("subprocess", "Popen")
    return program(call(glob("copyreg", "_reconstructor"), popen, popen,
                        lst(text("touch"), text(canary))))


def _copyreg_extension(canary, tmp):
    """Register os.system as an extension code, then call it through EXT2."""
    code = 0x7FF0
    register = call(glob("copyreg", "add_extension"), text("posix"), text("system"),
                    integer(code))
    return program(register + b"0" + b"\x83" + struct.pack("<H", code)
                   + tup(text(shell(canary))) + b"R")


def _getattr_import_chain(canary, tmp):
    os_module = call(glob("builtins", "__import__"), text("os"))
    system = call(glob("builtins", "getattr"), os_module, text("system"))
    return program(system + tup(text(shell(canary))) + b"R")


def _getattr_through_allowed_class(canary, tmp):
    """getattr on an allowed class (pathlib.Path) to reach a method that writes."""
    write_text = call(glob("builtins", "getattr"), glob("pathlib", "Path"), text("write_text"))
    path = call(glob("pathlib", "Path"), text(canary))
    return program(write_text + tup(path, text("pwned")) + b"R")


def _methodcaller_on_allowed(canary, tmp):
    caller = call(glob("operator", "methodcaller"), text("write_text"), text("pwned"))
    return program(caller + tup(call(glob("pathlib", "Path"), text(canary))) + b"R")


def _attrgetter_chain(canary, tmp):
    getter = call(glob("operator", "attrgetter"), text("system"))
    os_module = call(glob("importlib", "import_module"), text("os"))
    return program(call(getter, os_module) + tup(text(shell(canary))) + b"R")


def _partial(canary, tmp):
    return program(call(glob("functools", "partial"), glob("os", "system"),
                        text(shell(canary))) + b")R")


def _sys_modules_getitem(canary, tmp):
    os_module = call(glob("operator", "getitem"), glob("sys", "modules"), text("os"))
    system = call(glob("builtins", "getattr"), os_module, text("system"))
    return program(system + tup(text(shell(canary))) + b"R")


def _timeit(canary, tmp):
    return program(call(glob("timeit", "timeit"), text(pycode(canary)), text("pass"),
                        glob("time", "perf_counter"), integer(1)))


def _defaultdict_factory(canary, tmp):
    """A defaultdict whose factory is os.system, then a missing key looked up."""
    return program(call(glob("collections", "defaultdict"), glob("os", "system")))


def _dill_get_attr(canary, tmp):
    os_module = call(glob("dill._dill", "_import_module"), text("os"))
    system = call(glob("dill._dill", "_get_attr"), os_module, text("system"))
    return program(system + tup(text(shell(canary))) + b"R")


def _dill_eval_repr(canary, tmp):
    return program(call(glob("dill._dill", "_eval_repr"), text(pycode(canary))))


def _dill_load_type_code(canary, tmp):
    """dill's type table hands out CodeType and FunctionType: build and call code."""
    code = marshal.dumps(compile(pycode(canary), "<gadget>", "exec"))
    function = call(glob("dill._dill", "_load_type"), text("FunctionType"))
    return program(function + tup(call(glob("marshal", "loads"), binbytes(code)), b"}")
                   + b"R" + b")R")


def _dill_create_filehandle(canary, tmp):
    """dill reopens pickled files: in mode 'w' that creates (or truncates) one."""
    with open(canary, "w") as handle:
        payload = dill.dumps(handle, fmode=dill.FILE_FMODE)
    os.unlink(canary)
    return payload


def _eval(canary, tmp):
    return program(call(glob("builtins", "eval"), text(pycode(canary))))


def _exec(canary, tmp):
    return program(call(glob("builtins", "exec"), text(pycode(canary))))


def _python2_builtin_eval(canary, tmp):
    """Protocol 0 with a Python 2 module name, which pickle maps to builtins."""
    return b"c__builtin__\neval\n(V" + pycode(canary).encode() + b"\ntR."


def _inst_opcode(canary, tmp):
    return b"(V" + shell(canary).encode() + b"\nios\nsystem\n."


def _obj_opcode(canary, tmp):
    return b"(" + glob("os", "system") + b"V" + shell(canary).encode() + b"\no."


def _open_write(canary, tmp):
    return program(call(glob("builtins", "open"), text(canary), text("w")))


def _io_open(canary, tmp):
    return program(call(glob("io", "open"), text(canary), text("w")))


def _shutil_copy(canary, tmp):
    source = tmp / "copy_source"
    source.write_text("x")
    return program(call(glob("shutil", "copyfile"), text(str(source)), text(canary)))


def _spawn(canary, tmp):
    return program(call(glob("os", "spawnlp"), integer(os.P_WAIT), text("touch"),
                        text("touch"), text(canary)))


def _subprocess_run(canary, tmp):
    return program(call(glob("subprocess", "run"), lst(text("touch"), text(canary))))


def _popen(canary, tmp):
    return program(call(glob("subprocess", "Popen"), lst(text("touch"), text(canary))))


def _posix_system(canary, tmp):
    return program(call(glob("posix", "system"), text(shell(canary))))


def _system_in_exception_args(canary, tmp):
    """An allowed exception class built from a forbidden call's result."""
    return program(call(glob("builtins", "ValueError"),
                        call(glob("os", "system"), text(shell(canary)))))


def _memo_hidden_global(canary, tmp):
    """os.system stored in the memo, popped, fetched back and called."""
    return program(glob("os", "system") + b"\x94" + b"0" + b"h\x00"
                   + tup(text(shell(canary))) + b"R")


GADGETS: List[Gadget] = [
    *(Gadget(f"os.system via pickle protocol {p}", by_pickler(p, _os_system)) for p in range(6)),
    *(Gadget(f"__reduce_ex__ gadget, protocol {p}",
             by_pickler(p, lambda c, t: ReduceExTo(os.system, shell(c)))) for p in (2, 5)),
    Gadget("posix.system", _posix_system),
    Gadget("subprocess.Popen", _popen, slow=True),
    Gadget("subprocess.run", _subprocess_run),
    Gadget("subprocess.check_call via pickler",
           by_pickler(5, lambda c, t: ReduceTo(subprocess.check_call, ["touch", c]))),
    Gadget("os.spawnlp", _spawn),
    Gadget("os.popen via pickler", by_pickler(4, lambda c, t: ReduceTo(os.popen, shell(c))),
           slow=True),
    Gadget("builtins.eval", _eval),
    Gadget("builtins.exec", _exec),
    Gadget("__builtin__.eval (Python 2 name mapping)", _python2_builtin_eval),
    Gadget("builtins.getattr(__import__('os'), 'system')", _getattr_import_chain),
    Gadget("getattr(pathlib.Path, 'write_text') on an allowed class",
           _getattr_through_allowed_class),
    Gadget("operator.methodcaller on an allowed object", _methodcaller_on_allowed),
    Gadget("operator.attrgetter + importlib.import_module", _attrgetter_chain),
    Gadget("operator.getitem(sys.modules, 'os')", _sys_modules_getitem),
    Gadget("functools.partial(os.system, ...)()", _partial),
    Gadget("timeit.timeit(code)", _timeit),
    Gadget("builtins.open(canary, 'w')", _open_write),
    Gadget("io.open(canary, 'w')", _io_open),
    Gadget("shutil.copyfile", _shutil_copy),
    Gadget("runpy.run_path", _runpy_script),
    Gadget("pickle.loads of a nested pickle", _nested_pickle),
    Gadget("marshal.loads + types.FunctionType", _marshal_function),
    Gadget("dill: lambda sent by value, then called", lambda c, t: _dill_lambda(c, t)),
    Gadget("dill: closure sent by value, then called", lambda c, t: _dill_closure(c, t)),
    Gadget("dill._dill._import_module + _get_attr", _dill_get_attr),
    Gadget("dill._dill._eval_repr", _dill_eval_repr),
    Gadget("dill._dill._load_type('FunctionType') + code", _dill_load_type_code),
    Gadget("dill._dill._create_filehandle (reopens a file for writing)",
           _dill_create_filehandle),
    Gadget("copyreg._reconstructor(subprocess.Popen, ...)", _copyreg_reconstructor_popen,
           slow=True),
    Gadget("copyreg.add_extension + EXT2", _copyreg_extension),
    Gadget("INST opcode naming os.system", _inst_opcode),
    Gadget("OBJ opcode with os.system", _obj_opcode),
    Gadget("import of a module that runs code", _import_side_effect),
    Gadget("module __getattr__ hook", _module_getattr_hook),
    Gadget("os.system's result as an allowed exception's argument", _system_in_exception_args),
    Gadget("os.system hidden in the memo", _memo_hidden_global),
    Gadget("collections.defaultdict(os.system)", _defaultdict_factory, live=False),
]

# Pickles that change a class (the default allows Fraction and RemoteTraceback) or
# reach past the allowed names: no canary, checked by what they would change.
STRUCTURAL = {
    "BUILD on an allowed class (sets an attribute on fractions.Fraction)":
        program(glob("fractions", "Fraction") + b"(N}" + text("_sshpipe_pwned") + b"I1\nst"
                + b"b"),
    "BUILD on a global fetched back from the memo":
        program(glob("fractions", "Fraction") + b"\x94" + b"0" + b"h\x00"
                + b"(N}" + text("_sshpipe_pwned") + b"I1\nst" + b"b"),
    "BUILD on an allowed exception class (sshpipe.errors.RemoteTraceback)":
        program(stack_glob("sshpipe.errors", "RemoteTraceback") + b"(N}"
                + text("_sshpipe_pwned") + b"I1\nst" + b"b"),
    "SETITEM on an allowed class":
        program(glob("collections", "Counter") + text("k") + b"I1\ns"),
    "APPENDS to an allowed class":
        program(glob("fractions", "Fraction") + b"(I1\ne"),
    "REDUCE of a computed object (not a named global)":
        program(call(glob("copyreg", "_reconstructor"), glob("collections", "Counter"),
                     glob("builtins", "dict"), b"N") + b")R"),
    "dunder name through an allowed exception (ValueError.__subclasses__)":
        program(call(stack_glob("builtins", "ValueError.__subclasses__"))),
    "dunder name to a metaclass (CalledProcessError.__class__)":
        program(call(stack_glob("subprocess", "CalledProcessError.__class__"), text("x"),
                     b")", b"}")),
    "a function in an imported module (subprocess.getoutput)":
        program(call(glob("subprocess", "getoutput"), text("true"))),
    "builtins.type (makes classes)":
        program(call(glob("builtins", "type"), text("X"), b")", b"}")),
    "enum.Enum's functional API (makes classes)":
        program(call(glob("enum", "Enum"), text("X"), text("A B"))),
    "builtins.range then list (a few bytes to gigabytes)":
        program(call(glob("builtins", "list"), call(glob("builtins", "range"),
                                                     integer(10 ** 12)))),
    "builtins.bytes(huge)": program(call(glob("builtins", "bytes"), integer(10 ** 12))),
    "persistent id (PERSID)": b"Pfile:/etc/passwd\n.",
    "persistent id (BINPERSID)": program(text("x") + b"Q"),
    "sys.modules": program(glob("sys", "modules")),
    "copyreg.__newobj__(subprocess.Popen)":
        program(call(glob("copyreg", "__newobj__"), glob("subprocess", "Popen"))),
    "NEWOBJ of subprocess.Popen": program(glob("subprocess", "Popen") + b")\x81"),
}


@pytest.fixture
def canary(tmp_path, monkeypatch):
    """A path that exists only if a gadget ran; modules made by gadgets are removed."""
    monkeypatch.syspath_prepend(str(tmp_path))
    before = set(sys.modules)
    path = tmp_path / "canary"
    yield path
    for name in set(sys.modules) - before:
        if name.startswith("sshpipe_gadget"):
            del sys.modules[name]
    sys.modules.pop("sshpipe_gadget_lazy", None)


def _appeared(path: Path, slow: bool) -> bool:
    deadline = time.monotonic() + (3.0 if slow else 0.0)
    while True:
        if path.exists():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)


@pytest.mark.parametrize("gadget", GADGETS, ids=[g.name for g in GADGETS])
def test_gadget_is_refused_and_never_runs(gadget, canary, tmp_path):
    """The default policy refuses the gadget with UntrustedPayload; the canary never
    appears and no module is imported for it."""
    payload = gadget.build(str(canary), tmp_path)
    with pytest.raises(UntrustedPayload) as caught:
        DEFAULT.loads(payload, host="evil", what="reply 7", seq=7)
    error = caught.value
    assert error.host == "evil" and error.seq == 7 and error.refused
    assert str(error).startswith("evil: reply 7: refused ")
    assert "sshpipe_gadget_module" not in sys.modules
    assert not _appeared(canary, gadget.slow), f"{gadget.name} ran"


@pytest.mark.parametrize("gadget", [g for g in GADGETS if g.live],
                         ids=[g.name for g in GADGETS if g.live])
def test_gadget_runs_under_full_trust(gadget, canary, tmp_path):
    """Control: the same bytes under plain pickle.loads do create the canary, so the
    refusal above is what stopped them."""
    payload = gadget.build(str(canary), tmp_path)
    try:
        result = FULL.loads(payload)
    except PayloadError:
        result = None  # some fail after running (e.g. a missing key afterwards)
    finally:
        if copyreg._extension_registry.get(("posix", "system")) == 0x7FF0:
            copyreg.remove_extension("posix", "system", 0x7FF0)
    del result
    assert _appeared(canary, gadget.slow), f"{gadget.name} did not run under full trust"


@pytest.mark.parametrize("name", list(STRUCTURAL))
def test_structural_gadget_is_refused(name):
    """Pickles that would change an allowed class, call a computed object, reach a
    dunder, or name a function or class maker are refused."""
    with pytest.raises(UntrustedPayload):
        DEFAULT.loads(STRUCTURAL[name], host="evil")
    assert not hasattr(fractions.Fraction, "_sshpipe_pwned")


def test_build_on_a_class_changes_it_under_full_trust():
    """Control: BUILD on a class does set its attribute when nothing checks it."""
    payload = STRUCTURAL["BUILD on an allowed class (sets an attribute on fractions.Fraction)"]
    try:
        pickle.loads(payload)
        assert fractions.Fraction._sshpipe_pwned == 1
    finally:
        if hasattr(fractions.Fraction, "_sshpipe_pwned"):
            del fractions.Fraction._sshpipe_pwned


def test_extension_cache_cannot_bypass_the_policy(canary):
    """A copyreg extension code already resolved by a trusted load (so cached) is still
    refused: EXT opcodes never reach find_class when cached."""
    code = 0x7FF1
    copyreg.add_extension("posix", "system", code)
    try:
        ext = b"\x83" + struct.pack("<H", code)
        pickle.loads(program(ext + b"0" + b"N"))  # a trusted load fills the cache
        assert code in copyreg._extension_cache
        with pytest.raises(UntrustedPayload, match="extension code"):
            DEFAULT.loads(program(ext + tup(text(shell(str(canary)))) + b"R"))
        assert not canary.exists()
    finally:
        copyreg.remove_extension("posix", "system", code)


def test_allowing_one_class_does_not_open_the_rest(canary, tmp_path):
    """A policy that allows a user class still refuses every gadget."""
    policy = TrustPolicy([Gadget, "collections"])
    for gadget in GADGETS:
        with pytest.raises(UntrustedPayload):
            policy.loads(gadget.build(str(canary), tmp_path))
    assert not _appeared(canary, slow=True)


def test_corpus_size():
    """The corpus is as large as the report says (guards against silently dropping
    entries)."""
    assert len(GADGETS) + len(STRUCTURAL) >= 60
