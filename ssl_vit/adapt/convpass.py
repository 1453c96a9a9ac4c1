"""Convpass: convolutional bypasses for a frozen ViT.

Jie & Deng 2022, "Convolutional Bypasses Are Better Vision Transformer Adapters" (arXiv 2207.07039),
sec. 3.2 (the Convpass module) and sec. 3.3 (Convpass in a ViT block); details as in the authors' public
code (PETL-ViT ``convpass/vtab``). Each block gets two bypasses, parallel to attention and to the MLP,
each fed the block's frozen LayerNorm output and added with a scale ``s``::

    x = x + attn(n1(x)) + s * B_attn(n1(x))
    x = x + mlp(n2(x))  + s * B_mlp(n2(x))

``B`` = Linear(D -> c) -> QuickGELU -> Conv3x3(c -> c) on the patch grid -> QuickGELU -> Dropout(0.1)
-> Linear(c -> D), c = 8. Each prefix token (CLS, registers) goes through the same conv as a 1x1 map
(zero padding: only the kernel's centre tap and the bias act on it). Init: down xavier-uniform + zero
bias, up all zeros (the bypass starts as zero: the model starts as the backbone), conv xavier-uniform or
identity-centre (zero kernel with an identity matrix at the centre tap; the authors pick per task).
``convpass_attn`` (sec. 4.4 of the report) keeps only the attention bypass.

Grid and width come from the model (:func:`ssl_vit.adapt.inject.vit_layout`): any patch grid, any
number of prefix tokens (0 for a ViT without CLS), any width.

Shapes: ``ConvBypass(h)``: ``(B, P + H*W, D) -> (B, P + H*W, D)``.

Example::

    backbone = load_backbone("runs/fm").model                   # 28 px, patch 7: grid 4x4, D = 128
    added = inject_convpass(backbone, scale=0.1, conv_init="xavier")   # 2 x depth ConvBypass modules
    feats = backbone(x)                                          # == the frozen backbone's at init
"""

from __future__ import annotations

import math
import typing
from typing import List, Tuple

import torch
import torch.nn as nn
from timm.layers import QuickGELU

from ssl_vit.adapt.inject import adapt_blocks, vit_layout
from ssl_vit.config.schema import ConvInit
from ssl_vit.errors import SslvitError

CONV_INITS = typing.get_args(ConvInit)  # the choices of adapt.conv_init


class ConvBypass(nn.Module):
    """One convolutional bypass, output already multiplied by ``scale``: ``(B, P + H*W, D) -> same``."""

    def __init__(
        self,
        dim: int,
        hidden: int,
        grid: Tuple[int, int],
        num_prefix: int,
        scale: float,
        conv_init: str = "xavier",
        dropout: float = 0.1,
    ):
        super().__init__()
        if conv_init not in CONV_INITS:
            raise SslvitError(f"adapt.conv_init '{conv_init}' is not one of {', '.join(CONV_INITS)}")
        self.grid, self.num_prefix, self.scale, self.hidden = tuple(grid), int(num_prefix), float(scale), hidden
        self.down = nn.Linear(dim, hidden)  # = a 1x1 conv
        self.conv = nn.Conv2d(hidden, hidden, 3, 1, 1)
        self.up = nn.Linear(hidden, dim)
        self.act = QuickGELU()
        self.drop = nn.Dropout(dropout)
        nn.init.xavier_uniform_(self.down.weight)
        nn.init.zeros_(self.down.bias)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)
        nn.init.zeros_(self.conv.bias)
        if conv_init == "xavier":
            nn.init.xavier_uniform_(self.conv.weight)
        else:  # identity at the centre tap, zero elsewhere
            with torch.no_grad():
                self.conv.weight.zero_()
                self.conv.weight[:, :, 1, 1] = torch.eye(hidden)

    def _grid_of(self, n_patch: int) -> Tuple[int, int]:
        if n_patch == self.grid[0] * self.grid[1]:
            return self.grid
        side = int(round(math.sqrt(n_patch)))  # dynamic image size: a square grid
        if side * side != n_patch:
            raise SslvitError(
                f"Convpass got {n_patch} patch tokens, which is neither the model's "
                f"{self.grid[0]}x{self.grid[1]} grid nor a square; feed images of the model's size"
            )
        return side, side

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        b, n, _ = h.shape
        p = self.num_prefix
        gh, gw = self._grid_of(n - p)
        z = self.act(self.down(h))  # (B, N, c)
        patches = z[:, p:].transpose(1, 2).reshape(b, self.hidden, gh, gw)  # (B, c, H, W)
        patches = self.conv(patches).flatten(2).transpose(1, 2)  # (B, H*W, c)
        if p:
            prefix = z[:, :p].reshape(b * p, self.hidden, 1, 1)  # (B*P, c, 1, 1)
            prefix = self.conv(prefix).reshape(b, p, self.hidden)  # (B, P, c)
            z = torch.cat([prefix, patches], 1)  # (B, N, c)
        else:
            z = patches
        return self.up(self.drop(self.act(z))) * self.scale  # (B, N, D)


def inject_convpass(
    backbone: nn.Module,
    scale: float,
    conv_init: str = "xavier",
    hidden: int = 8,
    dropout: float = 0.1,
    attn_only: bool = False,
) -> List[nn.Module]:
    """Add Convpass bypasses to every block (``attn_only``: the ``convpass_attn`` variant). -> added modules."""
    lay = vit_layout(backbone)
    added = []
    for blk in adapt_blocks(backbone):
        blk.attn_parallel = ConvBypass(lay.dim, hidden, lay.grid, lay.num_prefix, scale, conv_init, dropout)
        added.append(blk.attn_parallel)
        if not attn_only:
            blk.mlp_parallel = ConvBypass(lay.dim, hidden, lay.grid, lay.num_prefix, scale, conv_init, dropout)
            added.append(blk.mlp_parallel)
    return added
