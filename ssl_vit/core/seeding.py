"""Seeds derived from names and numbers, so every random draw is a pure function of (purpose, seed, step).

Example::

    torch.Generator().manual_seed(derive_seed("aug", cfg.seed, step))   # the views of step ``step``
"""

from __future__ import annotations

import hashlib


def derive_seed(*parts) -> int:
    """A stable 63-bit seed from any tuple of ints/strings (independent of PYTHONHASHSEED)."""
    h = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(h, "little") & ((1 << 63) - 1)
