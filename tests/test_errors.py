"""The error tree: one place, one base that gives ``.host`` and pickling, every
class exported, and errors.py fit to ship to a remote (stdlib only, Python 3.9)."""
from __future__ import annotations

import ast
import inspect
import pickle
import sys
from pathlib import Path

import pytest

import sshpipe
import workers
from sshpipe import errors
from workers import errors as worker_errors

ERROR_MODULES = (errors, worker_errors)

# Constructor arguments for each public error class (its own signature).
SAMPLES = {
    "SSHPipeError": ("boom", "h"),
    "SSHConfigError": ("bad line", "/etc/ssh/ssh_config", 3),
    "ConfigFileNotFoundError": ("no such file", "/nowhere/ssh_config"),
    "ConnectError": ("h: refused", "h"),
    "HostKeyError": ("h: key changed", "h"),
    "AuthenticationError": ("h: refused", "h"),
    "ConnectTimeout": ("h: late", "h"),
    "ProtocolError": ("h: not the protocol", "h"),
    "HandshakeError": ("h: no hello", "h"),
    "FrameError": ("too big", 4, "h"),
    "PayloadError": ("h: reply 2: broken", "h"),
    "ReplyDecodeError": ("h: reply 2: broken", "h"),
    "UntrustedPayload": ("h: reply 2: refused os.system", "h"),
    "AgentStartError": ("h: no agent", "h", 127, "sh: not found"),
    "VersionSkewError": ("h: skew", "h"),
    "StartError": ({"a": errors.ConnectError("h: refused", "h")}, 2),
    "PipeClosed": ("h: closed", "h"),
    "PipeBroken": ("h: broke", (1, 2), "h"),
    "MemberLost": ("a lost", "a", "h"),
    "RemoteError": ("h: failed", "h", 1, "Traceback (most recent call last): ..."),
    "RemoteTraceback": ("Traceback ...",),
    "HostLostError": ("h: lost", "h"),
    "BrokenHostPool": ("no host", "h"),
    "TaskTimeoutError": ("h: late", "h", 2.5),
    "WorkerDiedError": ("h: died", "h", -9),
    "TaskLoadError": ("h: task 3 could not be loaded", "h"),
    "ResultLoadError": ("h: the result of task 3 could not be loaded", "h"),
}


def roundtrip(obj):
    """Pickle and unpickle with the stdlib's reducers only: a library imported by
    another test (distributed installs tblib's) may have replaced them process-wide."""
    import copyreg
    import io

    buffer = io.BytesIO()
    pickler = pickle.Pickler(buffer, protocol=5)
    pickler.dispatch_table = {cls: reduce for cls, reduce in copyreg.dispatch_table.items()
                              if not (isinstance(cls, type) and issubclass(cls, BaseException))}
    pickler.dump(obj)
    return pickle.loads(buffer.getvalue())


def public_errors():
    for module in ERROR_MODULES:
        for name in module.__all__:
            yield name, getattr(module, name)


def test_every_public_error_is_exported_from_its_package():
    """Each error class is in its errors module's __all__ and in the package's."""
    for module, package in ((errors, sshpipe), (worker_errors, workers)):
        for name in module.__all__:
            assert name in package.__all__, name
            assert getattr(package, name, None) is getattr(module, name)


# Run in a child: importing every module pulls in the optional bridges (dask,
# joblib), and distributed changes how every exception pickles, process-wide.
_FIND_STRAYS = r"""
import importlib, inspect, json, pkgutil, sys
import sshpipe, sshpipe.testing, workers
from sshpipe import errors
from workers import errors as worker_errors
strays, unexported = [], []
for package in (sshpipe, workers):
    for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        if info.name.endswith("._oracle") or info.name.endswith(".__main__"):
            continue
        try:
            module = importlib.import_module(info.name)
        except ImportError:
            continue  # an optional extra that is not installed
        public = not any(p.startswith("_") for p in module.__name__.split("."))
        for name, obj in vars(module).items():
            if not (inspect.isclass(obj) and issubclass(obj, BaseException)
                    and obj.__module__ == module.__name__ and not name.startswith("_")):
                continue
            if module in (errors, worker_errors):
                continue
            if module.__name__.startswith("sshpipe.testing"):
                if issubclass(obj, errors.SSHPipeError) and name not in sshpipe.testing.__all__:
                    unexported.append(module.__name__ + "." + name)
                continue
            if module.__name__.startswith("sshpipe._openssh"):
                continue
            if public or issubclass(obj, errors.SSHPipeError):
                strays.append(module.__name__ + "." + name)
print(json.dumps([strays, unexported]))
"""


def test_no_exception_class_lives_outside_the_error_modules():
    """Every exception class of the API (an SSHPipeError, or any exception defined in a
    public module) is defined in one of the error modules. sshpipe.testing, a
    package of its own, exports its SSHServerError itself (its pytest plugin's
    TerminatedBySignal is the plugin's own); sshpipe._openssh's own
    subclasses of ConnectError and PipeBroken are that transport's (work in
    progress there). Private helpers (named with _, or in private modules and
    never leaving them) may live where used."""
    import json
    import subprocess

    found = subprocess.run([sys.executable, "-c", _FIND_STRAYS], capture_output=True,
                           text=True, timeout=120, check=True)
    strays, unexported = json.loads(found.stdout.strip().splitlines()[-1])
    assert strays == [] and unexported == []


@pytest.mark.parametrize("name,cls", list(public_errors()), ids=lambda v: getattr(v, "__name__", v))
def test_error_pickles_whole_with_host_fields_and_cause(name, cls):
    """Each error crosses pickle with its message, .host, fields and chained cause."""
    error = cls(*SAMPLES[name])
    error.__cause__ = OSError(104, "Connection reset by peer")
    back = roundtrip(error)
    assert type(back) is cls and str(back) == str(error)
    assert repr(vars(back)) == repr(vars(error))
    if issubclass(cls, errors.SSHPipeError):
        assert back.host == error.host
        assert isinstance(back.__cause__, OSError) and back.__cause__.errno == 104


def test_one_base_gives_host_and_pickling():
    """No error class writes its own __reduce__; every sshpipe error has .host."""
    for name, cls in public_errors():
        if cls is errors.SSHPipeError:
            continue
        assert "__reduce__" not in vars(cls), name
        if issubclass(cls, errors.SSHPipeError):
            assert hasattr(cls(*SAMPLES[name]), "host"), name
    assert errors.SSHPipeError("no host involved").host is None


def test_a_cause_that_cannot_pickle_travels_as_text():
    """An unpicklable cause does not stop the error: it arrives as its text."""
    import threading

    class HoldsLock(Exception):
        def __init__(self):
            super().__init__("holds a lock")
            self.lock = threading.Lock()

    error = errors.PipeBroken("h: broke", host="h")
    error.__cause__ = HoldsLock()
    back = roundtrip(error)
    assert isinstance(back.__cause__, errors.RemoteTraceback)
    assert "HoldsLock: holds a lock" in str(back.__cause__)


@pytest.mark.parametrize("module", ERROR_MODULES, ids=lambda m: m.__name__)
def test_error_modules_are_stdlib_only_and_python39(module):
    """errors.py is shipped to remotes: it imports only the stdlib (and sshpipe.errors)
    and parses as Python 3.9."""
    source = Path(module.__file__).read_text()
    tree = ast.parse(source, feature_version=(3, 9))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        else:
            continue
        for name in names:
            top = name.split(".")[0]
            assert top in sys.stdlib_module_names or name == "sshpipe.errors", name


# Modules whose every raise site is checked for naming its host (the others still
# have sites that only put the host in the message; see the closing note).
HOST_CHECKED = ("sshpipe/transport.py", "sshpipe/trust.py", "sshpipe/_known_hosts.py",
                "sshpipe/serial.py")


@pytest.mark.parametrize("relative", HOST_CHECKED)
def test_errors_built_here_name_their_host(relative):
    """Every sshpipe error these modules build passes its host (argument or host=),
    except the config errors, which concern a file."""
    root = Path(__file__).resolve().parent.parent
    classes = {name: getattr(errors, name) for name in errors.__all__}
    tree = ast.parse((root / relative).read_text())
    missing = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                and node.func.id in classes):
            continue
        cls = classes[node.func.id]
        if not issubclass(cls, errors.SSHPipeError) or issubclass(cls, errors.SSHConfigError):
            continue
        params = list(inspect.signature(cls.__init__).parameters)[1:]
        position = params.index("host") if "host" in params else None
        if not (any(k.arg == "host" for k in node.keywords)
                or (position is not None and len(node.args) > position)):
            missing.append(f"{relative}:{node.lineno} {node.func.id}")
    assert missing == []
