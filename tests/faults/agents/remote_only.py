"""A module only the remote side imports (the caller does not have it on its path)."""


class OnlyHere:
    """Replies of this class cannot be unpickled by the caller."""
