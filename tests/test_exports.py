"""The public names: every exported name resolves, and the lists stay sorted."""
from __future__ import annotations

import importlib

import pytest

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
