"""'Did you mean' for one-line errors about an unknown name.

Example::

    raise SslvitError(f"unknown backbone '{name}'" + did_you_mean(name, backbone_names()) + "; ...")
"""

from __future__ import annotations

import difflib
from typing import Iterable


def did_you_mean(name, choices: Iterable) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``choices`` to ``name``; '' when none is close."""
    hint = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1)
    return f" (did you mean '{hint[0]}'?)" if hint else ""
