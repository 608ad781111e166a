"""The host list an SSHExecutor is given: its forms, parsed into (name, address, options)."""
from __future__ import annotations

from typing import Any, Dict, Iterable, List, Mapping, Tuple, Union

__all__ = ["HostSpec", "parse_hosts"]

HostSpec = Union[str, Tuple[str, Mapping[str, Any]], Mapping[str, Any]]


def parse_hosts(hosts: Iterable[HostSpec]) -> List[Tuple[str, str, Dict[str, Any]]]:
    """(name, address, options) per host; names made unique."""
    parsed = []
    seen: Dict[str, int] = {}
    for spec in hosts:
        if isinstance(spec, str):
            address, options = spec, {}
        elif isinstance(spec, tuple) and len(spec) == 2 and isinstance(spec[0], str):
            address, options = spec[0], dict(spec[1])
        elif isinstance(spec, Mapping):
            options = dict(spec)
            try:
                address = options.pop("host")
            except KeyError:
                raise ValueError(f"a host given as a dict needs a 'host' key: {spec!r}") from None
        else:
            raise TypeError(f"a host is an ssh alias, (alias, options) or a dict, not {spec!r}")
        name = options.pop("name", None) or address
        count = seen.get(name, 0) + 1
        seen[name] = count
        if count > 1:
            name = f"{name}#{count}"
        parsed.append((name, address, options))
    if not parsed:
        raise ValueError("an SSHExecutor needs at least one host")
    return parsed
