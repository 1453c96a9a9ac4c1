"""LoRA on the query and value projections of a ViT's fused qkv layer.

Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language Models", sec. 4.1-4.2 (adapt W_q and W_v
only), in the form of the VTAB-1k baseline of the Convpass authors (PETL-ViT): rank r = 8, the update
``s * B(Dropout(A x))`` added to q and to v, ``A`` with nn.Linear's default (Kaiming-uniform) init,
``B`` zeros (the model starts as the backbone), dropout 0.1, scale ``s`` chosen like Convpass's.

timm fuses q, k, v into one ``Linear(D, 3D)`` whose output columns are ``[q | k | v]`` (reshaped to
``(3, heads, head_dim)`` by ``Attention``); :class:`LoRAQKV` replaces that layer *keeping its weight and
bias parameters under the same names* (``attn.qkv.weight``) and adds the two low-rank branches.

Shapes: ``LoRAQKV(x)``: ``(B, N, D) -> (B, N, 3D)``.

Example::

    added = inject_lora(backbone, rank=8, scale=1.0)     # 2 * depth low-rank pairs, 4*D*r params per block
"""

from __future__ import annotations

from typing import List

import torch
import torch.nn as nn
import torch.nn.functional as F

from ssl_vit.adapt.inject import adapt_blocks, vit_layout
from ssl_vit.errors import SslvitError


class LowRank(nn.Module):
    """``x -> scale * up(drop(down(x)))``, no biases: ``(B, N, D) -> (B, N, D)``."""

    def __init__(self, dim: int, rank: int, scale: float, dropout: float = 0.1):
        super().__init__()
        self.down = nn.Linear(dim, rank, bias=False)  # default Kaiming-uniform init, as LoRA
        self.drop = nn.Dropout(dropout)
        self.up = nn.Linear(rank, dim, bias=False)
        nn.init.zeros_(self.up.weight)
        self.scale = float(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.drop(self.down(x))) * self.scale


class LoRAQKV(nn.Module):
    """A fused qkv ``Linear(D, 3D)`` (its own frozen weight/bias, same keys) plus low-rank q and v updates."""

    def __init__(self, qkv: nn.Linear, rank: int, scale: float, dropout: float = 0.1):
        super().__init__()
        if not isinstance(qkv, nn.Linear) or qkv.out_features != 3 * qkv.in_features:
            raise SslvitError(
                f"LoRA expects a fused qkv Linear(D, 3D), got {qkv}; this attention layer is not a timm ViT Attention"
            )
        self.weight, self.bias = qkv.weight, qkv.bias
        self.in_features, self.out_features = qkv.in_features, qkv.out_features
        d = qkv.in_features
        self.lora_q = LowRank(d, rank, scale, dropout)
        self.lora_v = LowRank(d, rank, scale, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = F.linear(x, self.weight, self.bias).chunk(3, dim=-1)  # 3 x (B, N, D)
        return torch.cat([q + self.lora_q(x), k, v + self.lora_v(x)], -1)  # (B, N, 3D)


def inject_lora(backbone: nn.Module, rank: int = 8, scale: float = 1.0, dropout: float = 0.1) -> List[nn.Module]:
    """Replace every block's ``attn.qkv`` with a :class:`LoRAQKV`. -> added low-rank modules."""
    vit_layout(backbone)
    added = []
    for blk in adapt_blocks(backbone):
        qkv = blk.attn.qkv
        if isinstance(qkv, LoRAQKV):
            raise SslvitError("LoRA is already injected into this backbone; build a fresh one per method")
        blk.attn.qkv = LoRAQKV(qkv, rank, scale, dropout)
        added += [blk.attn.qkv.lora_q, blk.attn.qkv.lora_v]
    return added
