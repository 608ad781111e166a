"""Starting a pipe: from SSHPipe's arguments to the child's frozen spec and the
caller's event source.

:class:`Launch` holds what the agent is (a handler, a target, a ``.py`` script
or another command) and how it is reached, from ``SSHPipe.__init__`` (so a bad
command or handler raises there) until ``start()``: ``start()`` resolves the
ssh settings and the transport (:meth:`Launch.resolve`, so a config error raises
in the caller), serializes the handler (:meth:`Launch.prepare`, so a bad one
raises in the caller) and fixes everything the child needs in a
:class:`~sshpipe._child.ChildSpec` (:meth:`Launch.spec`). :func:`event_source`
builds what the caller reads the pipe's events from, per transport.
"""
from __future__ import annotations

import os
import shlex
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

from sshpipe import _child, bootstrap, serial
from sshpipe._child import ChildSpec
from sshpipe._stream import AgentStream, ChildEvents, OpenSSHEvents
from sshpipe._transports import resolve_transport
from sshpipe.handler import SSHPipeHandler, TargetHandler
from sshpipe.transport import ConnectSettings, settings_for

__all__ = ["Launch", "LaunchLine", "event_source"]

# Idle seconds an OpenSSH master outlives its last session (ControlPersist); it
# also ends with the caller process that started it.
OPENSSH_PERSIST = 60.0
# Warm starts (see sshpipe._zygote): off by default until they carry the suite;
# a number given as warm= is the zygote's idle bound in seconds.
WARM_DEFAULT = False
WARM_IDLE = 30.0
# The ssh connection's bound when neither the pipe nor the config sets one.
DEFAULT_CONNECT_TIMEOUT = 30.0

# (mode, payload, argv) as the loader's launch line carries them: mode "handler"
# (payload: the serialized handler call), "script" or "exec" (argv).
LaunchLine = Tuple[str, bytes, List[str]]


class Launch:
    """What the agent is and how it is run, until ``start()`` (see the module docstring).

    Args are SSHPipe's (``target``/``args``/``kwargs`` become the handler
    :class:`~sshpipe.handler.TargetHandler`).

    Raises:
        ValueError: not exactly one of command, handler or target, or an empty
            command.
        TypeError: ``handler`` is not an SSHPipeHandler subclass or instance, or
            ``modules`` holds something other than module names.
    """

    def __init__(self, *, command: Union[str, Sequence[str], None], handler: Any,
                 handler_args: Sequence[Any], handler_kwargs: Optional[Dict[str, Any]],
                 target: Optional[Callable[..., Any]], args: Sequence[Any],
                 kwargs: Optional[Dict[str, Any]], modules: Sequence[str], python: str,
                 cwd: Optional[str], env: Optional[Dict[str, str]], port: Optional[int],
                 identity_file: Optional[str], connect_timeout: Optional[float],
                 heartbeat: Optional[float], warm: Union[bool, float, None] = None):
        if target is not None:
            if command is not None or handler is not None:
                raise ValueError("SSHPipe takes one of command, handler or target")
            handler, handler_args, handler_kwargs = TargetHandler, (target, args, kwargs), {}
        self.runs_target = target is not None
        if (command is None) == (handler is None):
            raise ValueError("SSHPipe needs a remote command or a handler, " + (
                "not both" if handler is not None else "and was given neither"))
        if handler is not None and not (isinstance(handler, SSHPipeHandler) or (
                isinstance(handler, type) and issubclass(handler, SSHPipeHandler))):
            raise TypeError(f"handler must be an SSHPipeHandler subclass or instance, "
                            f"not {handler!r}")
        self.handler = handler
        self.port = port
        self.identity_file = identity_file
        self.connect_timeout = connect_timeout
        self.python = python
        self.heartbeat = heartbeat
        # Dropped by prepare(), as Process drops its target (bpo-30775): the handler
        # and its arguments live on only inside the spec's (or the stream's) bytes.
        self._handler_call: Any = (handler, tuple(handler_args), dict(handler_kwargs or {}))
        if isinstance(modules, str):
            raise TypeError(f"modules takes a list of module names, not the string {modules!r}")
        for module in modules:
            if not isinstance(module, str):
                name = getattr(module, "__name__", None)
                hint = f" (give its name, {name!r})" if isinstance(name, str) else ""
                raise TypeError(f"modules takes module names, not {module!r}{hint}")
        self.modules = tuple(modules)
        if command is None:
            argv: List[str] = []
        elif isinstance(command, str):
            argv = shlex.split(command)
        else:
            argv = [str(word) for word in command]
        if command is not None and not argv:
            raise ValueError("the remote command is empty")
        # Every agent runs through the zero-install loader and its supervisor:
        # handlers, .py scripts, and any other command (exec'd by the loader).
        self.script_argv = argv
        exec_only = handler is None and not argv[0].endswith(".py")
        warm = WARM_DEFAULT if warm is None else warm
        # The zygote's idle bound; None: cold starts only (raw commands always).
        self.warm_idle: Optional[float] = None if exec_only or not warm else (
            WARM_IDLE if warm is True else float(warm))
        words = bootstrap.loader_command(python, exec_only=exec_only,
                                         warm=self.warm_idle is not None)
        self.remote_line = bootstrap.remote_command(words, cwd=cwd, env=env)
        self.settings: Optional[ConnectSettings] = None

    def resolve(self, host: str, config: Optional[str], user: Optional[str],
                transport: str) -> str:
        """Resolve the ssh settings (a config error raises here, in the caller; under
        fork the child starts with paramiko already imported) and the transport
        (``auto`` decided); returns the transport, "openssh" or "paramiko"."""
        self.settings = settings_for(host, config, user=user, port=self.port,
                                     identity_file=self.identity_file,
                                     connect_timeout=self.connect_timeout)
        if transport == "auto" and self.identity_file:
            transport = "paramiko"  # an ssh master takes its keys from the config
        elif transport == "openssh" and self.identity_file:
            raise ValueError("identity_file= is a paramiko transport option; with "
                             "transport='openssh' set IdentityFile in the ssh config")
        return resolve_transport(transport)

    @property
    def start_timeout(self) -> float:
        """How long start() allows the connection, on top of the hello's bound."""
        return self.connect_timeout or DEFAULT_CONNECT_TIMEOUT

    def prepare(self, name: str, daemon: bool) -> Tuple[LaunchLine, bootstrap.Bundle]:
        """Serialize the handler (here, so a bad one raises in the caller) and build
        the bundle the loader gets; the handler call is dropped."""
        bundle = bootstrap.build_bundle(self.modules)
        handler_call = self._handler_call
        if self.runs_target:
            # What the target sees as current_process(), as a Process's target does.
            handler_call[2].update(process_name=name, daemon=daemon)
        launch: LaunchLine
        if self.handler is not None:
            launch = ("handler", serial.dumps(handler_call), [])
        elif self.script_argv[0].endswith(".py"):
            launch = ("script", b"", self.script_argv)
        else:
            launch = ("exec", b"", self.script_argv)
        self._handler_call = None
        self.handler = None
        return launch, bundle

    def spec(self, *, transport: str, launch: LaunchLine, bundle: bootstrap.Bundle,
             host: str, name: str, user: Optional[str], config: Optional[str],
             ready_timeout: float, max_frame: int, log_level: int, term_message: str,
             encoding: str, reply_window: int, reply_window_bytes: int) -> ChildSpec:
        """The child's frozen spec; after :meth:`resolve` and :meth:`prepare`."""
        settings = self.settings
        assert settings is not None, "resolve() comes first"
        target = None
        child_launch: Optional[LaunchLine] = launch
        child_bundle: Optional[bootstrap.Bundle] = bundle
        if transport == "openssh":
            from sshpipe._openssh.target import Target, config_for_ssh

            # The caller runs the loader stage: the child needs only to know that
            # the loader's supervisor runs the agent (its 128+N statuses).
            child_launch = (launch[0], b"", [])
            child_bundle = None
            target = Target(host, user=user, port=self.port, config=config_for_ssh(config))
        return ChildSpec(
            transport=transport, host=host, name=name, settings=settings,
            remote_line=self.remote_line, launch=child_launch, bundle=child_bundle,
            target=target, owner=os.getpid(), persist=OPENSSH_PERSIST,
            zygote=None if self.warm_idle is None else {"idle": self.warm_idle,
                                                        "tie": transport == "openssh"},
            connect_timeout=self.connect_timeout or settings.connect_timeout or
            DEFAULT_CONNECT_TIMEOUT,
            python=self.python, heartbeat=self.heartbeat, ready_timeout=ready_timeout,
            max_frame=max_frame, log_level=log_level, term_message=term_message,
            encoding=encoding, reply_window=reply_window,
            reply_window_bytes=reply_window_bytes)


def event_source(spec: ChildSpec, launch: LaunchLine, bundle: bootstrap.Bundle, *,
                 send: Callable[[Sequence[bytes]], None], event_reader: Any,
                 control_reader: Any) -> Tuple[Any, Tuple[float, float]]:
    """What the caller reads the pipe's events from, and the ``(heartbeat,
    dead_after)`` it times itself ((0, 0): the child times them).

    OpenSSH: the caller runs the loader stage through ``send`` (the outbox), read
    by the master once the child hands the pipe over, and reads the agent's raw
    stream plus the child's control pipe. paramiko: whole frames from the child.
    """
    if spec.transport != "openssh":
        return ChildEvents(event_reader, spec.max_frame, spec.host), (0.0, 0.0)
    heartbeat, dead_after = _child.heartbeat_of(spec)
    stream = AgentStream(host=spec.host, python=spec.python, launch=launch, bundle=bundle,
                         max_frame=spec.max_frame,
                         start=_child.start_frame(spec, heartbeat, dead_after), send=send)
    stream.supervised = launch is not None
    if stream.scan is not None:
        stream.scan.zygote = spec.zygote
    stream.begin()
    return (OpenSSHEvents(event_reader, control_reader, stream, spec.host, spec.encoding),
            (heartbeat, dead_after))
