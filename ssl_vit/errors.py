"""The one exception type for bad usage or bad input.

Library code raises :class:`SslvitError` with a one-line message that names the problem *and* the fix;
the CLI prints it to stderr and exits with code 2 (no traceback). :class:`RunStopped` (a run that stopped
itself, e.g. on a stability alarm) is printed the same way with exit code 1. Anything else is a bug: exit
code 1.
"""


class SslvitError(Exception):
    """Bad usage or bad input. ``str(err)`` is a single line: what is wrong and how to fix it."""

    exit_code = 2


class RunStopped(SslvitError):
    """A training run stopped on purpose after a checkpoint (e.g. ``train.on_alarm=stop``): not bad input, so
    the CLI prints the one line and exits 1. ``str(err)`` names the step, the reason and what to change."""

    exit_code = 1
