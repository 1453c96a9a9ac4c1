"""MoCo v3 contrastive loss (InfoNCE scaled by 2*tau), rank-aware.

MoCo v3 Algorithm 1: ``ctr(q, k) = CrossEntropy(q @ k.T / tau, arange(N)) * 2 * tau`` on
L2-normalised ``q`` (B, D) and ``k`` (B, D); the symmetric loss is ``ctr(q1, k2) + ctr(q2, k1)``.
With several processes the keys of all ranks are gathered (no gradient), so each query sees the
global batch as negatives and its positive sits at ``rank * B + i``.

Written here rather than taken from lightly: ``NTXentLoss`` contrasts both views against each other
(2B-2 negatives, no 2*tau factor) and cannot take keys from a separate momentum encoder.

Example::

    loss = contrastive_loss(q1, k2, tau=0.2) + contrastive_loss(q2, k1, tau=0.2)
"""

from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.nn.functional as F


def contrastive_loss(
    q: torch.Tensor,
    k: torch.Tensor,
    temperature: float,
    gather: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
    rank: int = 0,
) -> torch.Tensor:
    """q: (B, D) queries (with grad), k: (B, D) keys (no grad) -> scalar loss."""
    q = F.normalize(q.float(), dim=1)
    k = F.normalize(k.float(), dim=1)
    if gather is not None:
        k = gather(k)  # (world * B, D)
    logits = q @ k.t() / temperature  # (B, world * B)
    labels = torch.arange(q.shape[0], device=q.device) + rank * q.shape[0]
    return F.cross_entropy(logits, labels) * (2 * temperature)
