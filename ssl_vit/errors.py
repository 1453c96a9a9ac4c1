"""The one exception type for bad usage or bad input.

Library code raises :class:`SslvitError` with a one-line message that names the problem *and* the fix;
the CLI prints it to stderr and exits with code 2 (no traceback). Anything else is a bug: exit code 1.
"""


class SslvitError(Exception):
    """Bad usage or bad input. ``str(err)`` is a single line: what is wrong and how to fix it."""

    exit_code = 2
