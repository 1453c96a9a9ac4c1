"""MoCo v3 (Chen, Xie, He 2021, "An Empirical Study of Training Self-Supervised Vision Transformers").

``MoCoV3.forward(x1, x2, m)`` returns the loss, like the official ``MoCo.forward``; the momentum
coefficient ``m`` is scheduled outside (``ssl_vit.engine.schedules``) and passed per step.

Per step (Algorithm 1)::

    f = backbone(cat(x1, x2))                      # (2B, D): one forward for both views
    q1, q2 = predictor(projector(f[:B])), ...(f[B:])    # (B, out): BN statistics per view, as official
    momentum <- m * momentum + (1 - m) * base      # before the keys, as official
    k1, k2 = momentum_projector(momentum_backbone(cat(x1, x2))) split   # no grad
    loss = ctr(q1, k2) + ctr(q2, k1)

Running the backbone once on both views is exact for ViTs (LayerNorm only); a stem with BatchNorm
sees statistics over 2B images instead of B (documented where such stems live).

``method.local_crops > 0`` adds multi-crop, which is *not* part of MoCo v3 (SwAV, Caron et al. 2020
sec. 3.2; DINO): ``forward(x1, x2, m, local)`` with ``local`` ``(L, B, C, s, s)`` small views that go through
the base encoder only (one backbone forward, projector + predictor per view) and are contrasted against
both momentum keys; the loss is 2 x the mean of ctr over all (query, key) pairs
(:func:`~ssl_vit.methods.multicrop.multicrop_loss`), exactly the loss above without local views. The
momentum encoder never sees a local view. Off by default (every recipe).

Example::

    model = MoCoV3(vit, 192, local_crops=2)        # vit: a timm ViT with dynamic_img_size=True
    loss = model(x1, x2, 0.99)                     # x1, x2: (B, C, 28, 28): plain MoCo v3
    loss = model(x1, x2, 0.99, local)              # local: (2, B, C, 14, 14); model.terms: ctr_global, ctr_local
"""

from __future__ import annotations

import copy
import math
from typing import Optional

import torch
import torch.nn as nn

from ssl_vit.methods.base import Method
from ssl_vit.methods.heads import mocov3_predictor, mocov3_projector
from ssl_vit.methods.losses import contrastive_loss
from ssl_vit.methods.momentum import update_momentum
from ssl_vit.methods.multicrop import check_local_view_backbone, multicrop_loss


def mocov3_chance_loss(global_batch: int, temperature: float) -> float:
    """The symmetric MoCo v3 loss of uninformative queries: each of its two terms is
    ``CrossEntropy * 2 tau`` over ``global_batch`` keys, ``ln(global_batch) * 2 tau`` at uniform logits, so
    ``4 tau ln(global_batch)`` (tau 0.2, batch 256: 4.436)."""
    return 4.0 * temperature * math.log(global_batch)


class MoCoV3(Method):
    def __init__(
        self,
        backbone: nn.Module,
        embed_dim: int,
        proj_hidden_dim: int = 4096,
        pred_hidden_dim: int = 4096,
        out_dim: int = 256,
        temperature: float = 0.2,
        local_crops: int = 0,
    ):
        super().__init__()
        if local_crops:
            check_local_view_backbone(backbone, local_crops)
        self.temperature, self.local_crops = temperature, local_crops
        self.backbone = backbone
        self.projector = mocov3_projector(embed_dim, proj_hidden_dim, out_dim)
        self.predictor = mocov3_predictor(out_dim, pred_hidden_dim, out_dim)
        self.momentum_backbone = copy.deepcopy(backbone)
        self.momentum_projector = copy.deepcopy(self.projector)
        for p in list(self.momentum_backbone.parameters()) + list(self.momentum_projector.parameters()):
            p.requires_grad_(False)
        # Method.begin_step: a per-step backbone (ViTAS) and its momentum copy pick the same sub-network

    def chance_loss(self, global_batch: int) -> Optional[float]:
        return mocov3_chance_loss(global_batch, self.temperature)

    @torch.no_grad()
    def update_momentum(self, m: float) -> None:
        update_momentum([self.backbone, self.projector], [self.momentum_backbone, self.momentum_projector], m)

    def forward(
        self, x1: torch.Tensor, x2: torch.Tensor, m: float, local: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        """x1, x2: (B, C, H, W) global views; local: None or (L, B, C, s, s) local views (multi-crop) -> loss."""
        B = x1.shape[0]
        x = torch.cat([x1, x2], 0)  # (2B, C, H, W)
        f = self.backbone(x)  # (2B, D)
        q1 = self.predictor(self.projector(f[:B]))  # (B, out)
        q2 = self.predictor(self.projector(f[B:]))  # (B, out)
        if local is not None:
            fl = self.backbone(local.flatten(0, 1))  # (L*B, D): one forward, crop-major
            lq = [self.predictor(self.projector(v)) for v in fl.split(B)]  # L x (B, out): BN per view
        with torch.no_grad():
            self.update_momentum(m)
            fk = self.momentum_backbone(x)  # (2B, D)
            k1 = self.momentum_projector(fk[:B])  # (B, out)
            k2 = self.momentum_projector(fk[B:])
        self.last_features = f.detach()
        if local is None:
            return contrastive_loss(q1, k2, self.temperature, self.gather, self.rank) + contrastive_loss(
                q2, k1, self.temperature, self.gather, self.rank
            )
        out = multicrop_loss(q1, q2, lq, k1, k2, self.temperature, self.gather, self.rank)
        self.terms = {"ctr_global": out.ctr_global.detach(), "ctr_local": out.ctr_local.detach()}
        return out.loss


def build_mocov3(backbone: nn.Module, embed_dim: int, method_cfg) -> MoCoV3:
    return MoCoV3(
        backbone,
        embed_dim,
        method_cfg.proj_hidden_dim,
        method_cfg.pred_hidden_dim,
        method_cfg.out_dim,
        method_cfg.temperature,
        method_cfg.local_crops,
    )
