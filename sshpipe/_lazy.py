"""Lazy re-exports for package ``__init__`` modules: import nothing until used.

Stdlib only: shipped to remote hosts with the agent runtime.
"""
from __future__ import annotations

import importlib
from typing import Any, Callable, Dict, List, MutableMapping, Tuple

__all__ = ["lazy_exports"]


def lazy_exports(package: str, exports: Dict[str, str],
                 namespace: MutableMapping[str, Any]
                 ) -> Tuple[Callable[[str], Any], Callable[[], List[str]]]:
    """A module ``__getattr__`` and ``__dir__`` for ``package`` that import
    ``exports`` (public name -> submodule) on first use and keep the result."""

    def __getattr__(name: str) -> Any:
        try:
            module_name = exports[name]
        except KeyError:
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        value = getattr(importlib.import_module(f"{package}.{module_name}"), name)
        namespace[name] = value
        return value

    def __dir__() -> List[str]:
        return sorted(set(namespace) | set(exports))

    return __getattr__, __dir__
