"""Comma-separated values on the command line and in ``--set``: ``'0.01,0.1'``, ``'[0.01, 0.1]'``, ``'(48, 64)'``.

Example::

    split_list("[0.01, 0.1]")          # ['0.01', '0.1']
"""

from __future__ import annotations

from typing import List


def split_list(text: str) -> List[str]:
    """The items of a comma-separated list, brackets and surrounding spaces removed, empty items dropped."""
    return [v.strip() for v in str(text).strip("()[] ").split(",") if v.strip()]
