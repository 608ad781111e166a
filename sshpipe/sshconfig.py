"""The seed's module name for the OpenSSH client config API.

``from sshpipe.sshconfig import load, loads, dump, dumps, SSHConfig`` keeps
working as the original sshpipe documented it; everything lives in
:mod:`sshpipe.config` (also exported from :mod:`sshpipe` itself).
"""
from __future__ import annotations

from sshpipe.config import (
    ConfigFileNotFoundError, SSHConfig, SSHConfigError, dump, dumps, load, loads,
)

__all__ = ["SSHConfig", "SSHConfigError", "ConfigFileNotFoundError", "load", "loads", "dump",
           "dumps"]
