"""Bottleneck adapter after the MLP (the "Adapter" baseline of the Convpass / NOAH comparisons).

Houlsby et al. 2019, "Parameter-Efficient Transfer Learning for NLP", sec. 2.1, in the ViT form the
VTAB-1k baselines use (NOAH, Zhang et al. 2022; Convpass table 1): one adapter per block, applied to the
MLP's output before the residual add, bottleneck width h = 8::

    x = x + mlp(n2(x)) + A(mlp(n2(x))),   A(y) = Linear(h -> D)(Dropout(GELU(Linear(D -> h)(y))))

Init: down xavier-uniform + zero bias, up zeros, so ``A`` starts at 0 and the model equals the backbone.

Shapes: ``BottleneckAdapter(y)``: ``(B, N, D) -> (B, N, D)`` (``y`` plus the adapter's correction).

Example::

    added = inject_adapter(backbone, hidden=8)      # depth BottleneckAdapter modules, 2*D*h + h + D params each
"""

from __future__ import annotations

from typing import List

import torch
import torch.nn as nn

from ssl_vit.adapt.inject import adapt_blocks, vit_layout


class BottleneckAdapter(nn.Module):
    """``y -> y + up(drop(gelu(down(y))))``: ``(B, N, D) -> (B, N, D)``."""

    def __init__(self, dim: int, hidden: int = 8, dropout: float = 0.1):
        super().__init__()
        self.down = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.drop = nn.Dropout(dropout)
        self.up = nn.Linear(hidden, dim)
        nn.init.xavier_uniform_(self.down.weight)
        nn.init.zeros_(self.down.bias)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return y + self.up(self.drop(self.act(self.down(y))))


def inject_adapter(backbone: nn.Module, hidden: int = 8, dropout: float = 0.1) -> List[nn.Module]:
    """One :class:`BottleneckAdapter` after every block's MLP. -> added modules."""
    dim = vit_layout(backbone).dim
    added = []
    for blk in adapt_blocks(backbone):
        blk.mlp_out = BottleneckAdapter(dim, hidden, dropout)
        added.append(blk.mlp_out)
    return added
