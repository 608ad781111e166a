"""The public names: every exported name resolves, and the lists stay sorted."""
from __future__ import annotations

import importlib
import inspect
import re
import sys
from typing import Dict, List, Set

import pytest

import sshpipe
import workers

SEED_NAMES = {"SSHPipe", "SSHPipeHandler", "SSHMultiPipe", "SSHConfig", "load", "loads", "dump",
              "dumps", "MpLogger", "LevelBasedFormatter", "TimedSizedRotatingHandler"}


@pytest.mark.parametrize("package", ["sshpipe", "workers"])
def test_every_exported_name_resolves_and_list_is_sorted(package):
    """Each name in __all__ imports lazily to a real object; __all__ is sorted."""
    module = importlib.import_module(package)
    assert module.__all__ == sorted(module.__all__)
    for name in module.__all__:
        assert getattr(module, name) is not None, name
    assert set(module.__all__) <= set(dir(module))


def test_seed_names_are_public():
    """The seed README's public names are exported by sshpipe."""
    import sshpipe

    assert SEED_NAMES <= set(sshpipe.__all__)


def test_unknown_name_is_an_attribute_error():
    """Asking for a name that is not exported raises AttributeError naming it."""
    import sshpipe

    with pytest.raises(AttributeError, match="no_such_name"):
        sshpipe.no_such_name  # noqa: B018


# Public modules whose __all__ counts as exporting a name (besides the packages).
PUBLIC_MODULES = ("sshpipe", "workers", "sshpipe.config", "sshpipe.mplog", "sshpipe.trust",
                  "sshpipe.testing", "sshpipe.protocol", "sshpipe.serial")
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_RAISES = re.compile(r"^Raises:\n((?:[ \t]+.*\n?|[ \t]*\n)*)", re.M)


def _names_in_signature(function) -> Set[str]:
    """Words in a callable's annotations and in its docstring's Raises section."""
    words: Set[str] = set()
    for annotation in (getattr(function, "__annotations__", None) or {}).values():
        words.update(_WORD.findall(annotation if isinstance(annotation, str)
                                   else repr(annotation)))
    raises = _RAISES.search(inspect.getdoc(function) or "")
    if raises:
        for line in raises.group(1).splitlines():
            if ":" in line:
                words.update(word.split(".")[-1]
                             for word in re.findall(r"[A-Za-z_][\w.]*", line.split(":")[0]))
    return words


def _public_callables(obj) -> List[object]:
    if not inspect.isclass(obj):
        return [obj] if callable(obj) else []
    found = []
    for name, member in vars(obj).items():
        if name.startswith("_") and name != "__init__":
            continue
        if isinstance(member, property):
            found.append(member.fget)
        elif isinstance(member, (staticmethod, classmethod)):
            found.append(member.__func__)
        elif callable(member):
            found.append(member)
    return found


def test_classes_in_public_signatures_are_exported():
    """Every sshpipe/workers class a public function or method takes, returns or
    raises (its annotations and its docstring's Raises section) is exported by
    sshpipe, workers or a public module, followed through each class found."""
    exported: Dict[int, str] = {}
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        for name in module.__all__:
            exported.setdefault(id(getattr(module, name)), f"{module_name}.{name}")
    todo = [getattr(sshpipe, name) for name in sshpipe.__all__]
    todo += [getattr(workers, name) for name in workers.__all__]
    seen: Set[int] = set()
    missing: Dict[str, Set[str]] = {}
    while todo:
        obj = todo.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        home = sys.modules.get(getattr(obj, "__module__", "") or "")
        for function in _public_callables(obj):
            for word in _names_in_signature(function):
                found = getattr(home, word, None)
                if not inspect.isclass(found) or not found.__module__.startswith(
                        ("sshpipe", "workers")):
                    continue
                if id(found) in exported:
                    todo.append(found)
                else:
                    where = f"{getattr(obj, '__qualname__', obj)}.{function.__name__}"
                    missing.setdefault(f"{found.__module__}.{found.__qualname__}",
                                       set()).add(where)
    assert not missing, "classes in public signatures but not exported: " + "; ".join(
        f"{name} (in {', '.join(sorted(users))})" for name, users in sorted(missing.items()))
