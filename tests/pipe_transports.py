"""The ``transport`` fixture: the pipe tests run once per transport.

Autouse and parametrized: a test module that imports it runs each of its tests
with ``SSHPipe``'s default transport set to ``paramiko`` and to ``openssh``
(the pipe's child gets the transport in its spec, so this holds under every
start method). The openssh run is skipped where no usable ``ssh`` is on PATH.
"""
from __future__ import annotations

import pytest

import sshpipe.pipe
from sshpipe._transports import openssh_usable

TRANSPORTS = ("paramiko", "openssh")


@pytest.fixture(params=TRANSPORTS, autouse=True)
def transport(request, monkeypatch):
    if request.param == "openssh" and not openssh_usable():
        pytest.skip("no OpenSSH client with multiplexing on PATH")
    monkeypatch.setattr(sshpipe.pipe, "DEFAULT_TRANSPORT", request.param)
    return request.param
