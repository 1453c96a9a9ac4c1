"""MoCo v3 projection and prediction MLPs, built on lightly's ``ProjectionHead``.

MoCo v3 sec. 4 / appendix: "The projection head is a 3-layer MLP. The prediction head is a 2-layer
MLP. The hidden layers of both MLPs are 4096-d and are with ReLU; the output layers of both MLPs are
256-d, without ReLU. In MoCo v3, all layers in both MLPs have BN." Linear layers have no bias, and the
last BN has no affine parameters (official ``_build_mlp``). lightly's ``MoCoProjectionHead`` ends in
an *affine* BN, so the blocks are spelled out here with lightly's base class.

Shapes: ``(B, in_dim) -> (B, out_dim)``.

Example::

    proj = mocov3_projector(384, 4096, 256)      # (B, 384) -> (B, 256)
    pred = mocov3_predictor(256, 4096, 256)      # (B, 256) -> (B, 256)
"""

from __future__ import annotations

import torch.nn as nn
from lightly.models.modules.heads import ProjectionHead


def _mlp(num_layers: int, in_dim: int, hidden_dim: int, out_dim: int) -> ProjectionHead:
    blocks = []
    for i in range(num_layers):
        d_in = in_dim if i == 0 else hidden_dim
        last = i == num_layers - 1
        d_out = out_dim if last else hidden_dim
        bn = nn.BatchNorm1d(d_out, affine=not last)
        blocks.append((d_in, d_out, bn, None if last else nn.ReLU(inplace=True), False))
    return ProjectionHead(blocks)


def mocov3_projector(in_dim: int, hidden_dim: int = 4096, out_dim: int = 256) -> ProjectionHead:
    """3-layer projection MLP: [Linear-BN-ReLU] x 2, Linear-BN(affine=False)."""
    return _mlp(3, in_dim, hidden_dim, out_dim)


def mocov3_predictor(in_dim: int = 256, hidden_dim: int = 4096, out_dim: int = 256) -> ProjectionHead:
    """2-layer prediction MLP: Linear-BN-ReLU, Linear-BN(affine=False)."""
    return _mlp(2, in_dim, hidden_dim, out_dim)
