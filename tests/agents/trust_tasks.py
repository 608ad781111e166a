"""Tasks for the trust tests, shipped to the remote with ``modules=["trust_tasks"]``:
results and exceptions whose pickles run a command wherever they are loaded."""
import os


class SystemCall:
    """Pickles as ``os.system(command)``: loading it runs the command."""

    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


class Point:
    """A plain user class: data, but not data the default policy knows."""

    def __init__(self, x, y):
        self.x, self.y = x, y

    def __eq__(self, other):
        return isinstance(other, Point) and (self.x, self.y) == (other.x, other.y)


def hostile_result(command):
    return SystemCall(command)


def point(x, y):
    return Point(x, y)


def fails(message):
    raise KeyError(message)
