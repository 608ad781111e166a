"""The test bed's one error type, apart so that every test-bed module can raise it."""
from __future__ import annotations

from sshpipe.errors import SSHPipeError

__all__ = ["SSHServerError"]


class SSHServerError(SSHPipeError):
    """The test sshd, its namespaces or its watchdog could not be set up, did not
    come up, or could not be cleaned up."""
