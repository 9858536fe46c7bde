"""Errors the CLI shows as a one-line message (exit code 1) instead of a traceback.

Plugins raise a subclass of :class:`UserError` for anything the user can fix: bad input,
a missing file, an unreachable daemon. Anything else is a bug and keeps its traceback.
"""


class UserError(Exception):
    """A problem the user can fix; ``str()`` is the whole message."""
