"""Visual Prompt Tuning: learnable tokens in a frozen ViT's sequence, shallow or deep.

Jia et al. 2022, "Visual Prompt Tuning", sec. 3.2: ``n`` prompt tokens are inserted after the prefix
(CLS) tokens, once the patch tokens have their position embedding, i.e. at the first block's input:
``[cls, P, patches]`` (VPT-shallow). VPT-deep gives every block its own prompts: at block ``i > 0`` the
previous block's outputs at the prompt positions are discarded and replaced by ``P_i``. Init as the
VPT code: uniform ``(-v, v)``, ``v = sqrt(6 / (C * p * p + D))`` (C input channels, p patch size).
Prompts are dropped again after the last block, so the backbone's pooling and output shape are
unchanged (the CLS token is what VPT classifies; other pools see only the original tokens).

Unlike the bypass methods, prompts change the output from the first step (they are attended to).

Shapes: ``PromptTokens(x)``: insert ``(B, P + L, D) -> (B, P + n + L, D)``; replace keeps the shape;
``StripPrompts``: ``(B, P + n + L, D) -> (B, P + L, D)``.

Example::

    added = inject_vpt(backbone, tokens=10, deep=True)   # depth PromptTokens, n*D params each
"""

from __future__ import annotations

import math
from typing import List

import torch
import torch.nn as nn

from ssl_vit.adapt.inject import adapt_blocks, vit_layout


class PromptTokens(nn.Module):
    """``n`` learnable tokens put after the ``num_prefix`` prefix tokens (``insert``) or over the previous
    block's prompt outputs (``replace``)."""

    def __init__(self, n: int, dim: int, num_prefix: int, replace: bool, init_bound: float, dropout: float = 0.0):
        super().__init__()
        self.prompts = nn.Parameter(torch.empty(1, n, dim).uniform_(-init_bound, init_bound))  # (1, n, D)
        self.num_prefix, self.replace, self.drop = num_prefix, replace, nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p, n = self.num_prefix, self.prompts.shape[1]
        prompts = self.drop(self.prompts).expand(x.shape[0], -1, -1).to(x.dtype)  # (B, n, D)
        rest = x[:, p + n :] if self.replace else x[:, p:]
        return torch.cat([x[:, :p], prompts, rest], 1)


class StripPrompts(nn.Module):
    """Drop the ``n`` prompt positions after the prefix tokens: ``(B, P + n + L, D) -> (B, P + L, D)``."""

    def __init__(self, n: int, num_prefix: int):
        super().__init__()
        self.n, self.num_prefix = n, num_prefix

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x[:, : self.num_prefix], x[:, self.num_prefix + self.n :]], 1)


def inject_vpt(backbone: nn.Module, tokens: int = 10, deep: bool = False, dropout: float = 0.0) -> List[nn.Module]:
    """VPT-shallow (prompts at block 0) or VPT-deep (new prompts at every block). -> added prompt modules."""
    lay = vit_layout(backbone)
    bound = math.sqrt(6.0 / float(lay.in_chans * lay.patch_size[0] * lay.patch_size[1] + lay.dim))
    blocks = adapt_blocks(backbone)
    added = []
    for i, blk in enumerate(blocks if deep else blocks[:1]):
        blk.tokens_in = PromptTokens(tokens, lay.dim, lay.num_prefix, replace=i > 0, init_bound=bound, dropout=dropout)
        added.append(blk.tokens_in)
    blocks[-1].tokens_out = StripPrompts(tokens, lay.num_prefix)
    return added
