"""Multi-crop for MoCo v3 (``method.local_crops > 0``): local queries against both global keys.

Multi-crop is not part of MoCo v3. It comes from SwAV (Caron et al. 2020, sec. 3.2: "two standard resolution
crops and V additional low resolution crops", the small crops only ever predict from the large ones) and DINO
(Caron et al. 2021, sec. 3.1: "all crops are passed through the student while only the global views are
passed through the teacher"). Here, per step with ``L`` local views of ``B`` images::

    q1, q2   = predictor(projector(backbone(x1 | x2)))        # (B, out) each, as MoCo v3
    l_1..l_L = predictor(projector(backbone(local[j])))       # (B, out) each; one backbone forward for all
    k1, k2   = momentum encoder(x1 | x2)                      # (B, out); it never sees a local view
    pairs    = (q1, k2), (q2, k1), (l_j, k1), (l_j, k2) for every j          # 2 + 2L pairs
    loss     = 2 * mean over the pairs of ctr(q, k)           # ctr: MoCo v3's InfoNCE * 2 tau

The factor 2 keeps MoCo v3's scale: with ``L = 0`` the loss is exactly ``ctr(q1, k2) + ctr(q2, k1)``, and
for any ``L`` the loss of uninformative queries stays ``4 tau ln(batch)`` (the loss-at-chance alarm). The
same loss, written as its two parts on that scale::

    ctr_global = ctr(q1, k2) + ctr(q2, k1)                   # the plain MoCo v3 loss
    ctr_local  = 2 * mean_j,i ctr(l_j, k_i)                   # the local pairs
    loss       = (ctr_global + L * ctr_local) / (1 + L)

Example::

    out = multicrop_loss(q1, q2, [l1, l2], k1, k2, temperature=0.2)
    out.loss.backward()                 # out.ctr_global, out.ctr_local: the two parts (logged as terms)
"""

from __future__ import annotations

from typing import NamedTuple, Optional, Sequence

import torch
import torch.nn as nn
from timm.models import VisionTransformer

from ssl_vit.errors import SslvitError
from ssl_vit.methods.base import GatherFn
from ssl_vit.methods.losses import contrastive_loss


class MultiCropLoss(NamedTuple):
    loss: torch.Tensor  # 0-d: 2 * mean over all (query, key) pairs of ctr
    ctr_global: torch.Tensor  # 0-d: ctr(q1, k2) + ctr(q2, k1), MoCo v3's loss
    ctr_local: torch.Tensor  # 0-d: 2 * mean over the local pairs (0 without local views)


def multicrop_loss(
    q1: torch.Tensor,
    q2: torch.Tensor,
    local_q: Sequence[torch.Tensor],
    k1: torch.Tensor,
    k2: torch.Tensor,
    temperature: float,
    gather: Optional[GatherFn] = None,
    rank: int = 0,
) -> MultiCropLoss:
    """Global queries ``q1, q2`` (B, out), local queries ``local_q`` (L tensors (B, out)), momentum keys
    ``k1, k2`` (B, out; no grad) -> the loss and its two parts (module docstring). Keys are gathered over
    ranks per pair, as :func:`~ssl_vit.methods.losses.contrastive_loss` does."""

    def ctr(q, k):
        return contrastive_loss(q, k, temperature, gather, rank)

    ctr_global = ctr(q1, k2) + ctr(q2, k1)
    L = len(local_q)
    if L == 0:
        return MultiCropLoss(ctr_global, ctr_global, torch.zeros_like(ctr_global))
    ctr_local = torch.stack([ctr(q, k) for q in local_q for k in (k1, k2)]).mean() * 2
    return MultiCropLoss((ctr_global + L * ctr_local) / (1 + L), ctr_global, ctr_local)


def check_local_view_backbone(backbone: nn.Module, local_crops: int) -> None:
    """One-line error unless ``backbone`` takes inputs smaller than its ``img_size`` (the local views): a timm
    ``VisionTransformer`` built with ``dynamic_img_size=True`` (the position embedding is resampled to the
    input's token grid, as DINO's ``interpolate_pos_encoding``)."""
    if isinstance(backbone, VisionTransformer) and backbone.dynamic_img_size:
        return
    why = "is built without it" if isinstance(backbone, VisionTransformer) else "is not one"
    raise SslvitError(
        f"method.local_crops={local_crops} needs a backbone that takes local views smaller than "
        f"model.img_size: a timm VisionTransformer built with dynamic_img_size=True (this "
        f"{type(backbone).__name__} {why}); set method.local_crops=0"
    )
