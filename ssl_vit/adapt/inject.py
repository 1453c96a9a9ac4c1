"""The one injection mechanism every adaptation method uses: timm ``Block`` -> :class:`AdaptedBlock`.

An :class:`AdaptedBlock` re-registers a timm ``Block``'s own sub-modules under their own names (so the
frozen weights keep their timm keys, e.g. ``blocks.3.attn.qkv.weight``) and runs the same computation,
with five optional *slots* a method fills (all ``None`` = exactly the original block)::

    x = tokens_in(x)                                           # VPT: insert / replace prompt tokens
    h = norm1(x)
    x = x + drop_path1(ls1(attn(h))) + drop_path1(attn_parallel(h))      # Convpass: bypass on attention
    h = norm2(x)
    y = mlp_out(mlp(h))                                        # Adapter: bottleneck after the MLP
    x = x + drop_path2(ls2(y)) + drop_path2(mlp_parallel(h))   # Convpass: bypass on the MLP
    x = tokens_out(x)                                          # VPT: strip prompts after the last block

(``drop_path`` is called separately for the block and the bypass, i.e. independent masks, as in the
Convpass code.) Methods that change a layer *inside* attention (LoRA on the fused qkv) replace that
layer in place, keeping its parameters and key names (``ssl_vit/adapt/lora.py``).

Why by hand: timm has no adapter hooks and the authors' code rebinds ``Block.forward`` per method; one
explicit forward with slots keeps every method a small module and the training loop method-agnostic.

Example::

    layout = vit_layout(backbone)                  # VitLayout(dim=128, depth=6, num_prefix=1, grid=(4, 4), ...)
    blocks = adapt_blocks(backbone)                # List[AdaptedBlock], installed in backbone.blocks
    blocks[0].attn_parallel = my_module            # (B, N, D) -> (B, N, D)
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn as nn

from ssl_vit.errors import SslvitError

BLOCK_PARTS = ("norm1", "attn", "ls1", "drop_path1", "norm2", "mlp", "ls2", "drop_path2")
SLOTS = ("tokens_in", "attn_parallel", "mlp_out", "mlp_parallel", "tokens_out")


@dataclass(frozen=True)
class VitLayout:
    """What adaptation modules need to know about a backbone, read from the model itself."""

    dim: int  # token width D
    depth: int  # number of blocks
    num_prefix: int  # CLS (+ register) tokens before the patch tokens
    grid: Tuple[int, int]  # patch grid (H/p, W/p) at the model's image size
    in_chans: int
    patch_size: Tuple[int, int]


def vit_layout(model: nn.Module) -> VitLayout:
    """Layout of a timm ``VisionTransformer`` (sslvit backbones, official MoCo v3, timm/DeiT ViTs)."""
    blocks = getattr(model, "blocks", None)
    pe = getattr(model, "patch_embed", None)
    if blocks is None or pe is None or not hasattr(model, "embed_dim"):
        raise SslvitError(
            f"sslvit adapt needs a timm VisionTransformer (blocks, patch_embed, embed_dim); got "
            f"{type(model).__name__}: load the backbone with sslvit's checkpoint loader"
        )
    grid = tuple(int(g) for g in getattr(pe, "grid_size", ()) or ())
    if len(grid) != 2:
        raise SslvitError(
            f"the backbone's patch embedding ({type(pe).__name__}) has no 2-D grid_size; "
            f"convolutional bypasses need the patch grid"
        )
    patch = tuple(int(p) for p in getattr(pe, "patch_size", (1, 1)))
    in_chans = int(getattr(getattr(pe, "proj", None), "in_channels", 3))
    return VitLayout(
        int(model.embed_dim), len(blocks), int(getattr(model, "num_prefix_tokens", 1)), grid, in_chans, patch
    )


class AdaptedBlock(nn.Module):
    """A timm ``Block`` with adaptation slots; same parameters, same keys, same output when slots are empty.

    ``forward(x)``: ``(B, N, D) -> (B, N', D)`` (``N' = N`` unless ``tokens_in``/``tokens_out`` change it).
    """

    def __init__(self, block: nn.Module):
        super().__init__()
        missing = [p for p in BLOCK_PARTS if not hasattr(block, p)]
        if missing:
            raise SslvitError(
                f"block type {type(block).__name__} lacks {missing[0]}; sslvit adapt supports timm "
                f"VisionTransformer blocks (norm1, attn, ls1, drop_path1, norm2, mlp, ls2, drop_path2)"
            )
        for p in BLOCK_PARTS:
            setattr(self, p, getattr(block, p))
        for s in SLOTS:
            setattr(self, s, None)

    def forward(self, x: torch.Tensor, attn_mask: Optional[torch.Tensor] = None, is_causal: bool = False):
        if self.tokens_in is not None:
            x = self.tokens_in(x)
        h = self.norm1(x)  # (B, N, D)
        if attn_mask is None and not is_causal:
            a = self.attn(h)
        else:
            a = self.attn(h, attn_mask=attn_mask, is_causal=is_causal)
        x = x + self.drop_path1(self.ls1(a))
        if self.attn_parallel is not None:
            x = x + self.drop_path1(self.attn_parallel(h))
        h = self.norm2(x)
        y = self.mlp(h)
        if self.mlp_out is not None:
            y = self.mlp_out(y)
        x = x + self.drop_path2(self.ls2(y))
        if self.mlp_parallel is not None:
            x = x + self.drop_path2(self.mlp_parallel(h))
        if self.tokens_out is not None:
            x = self.tokens_out(x)
        return x


def adapt_blocks(model: nn.Module) -> List[AdaptedBlock]:
    """Replace each of ``model.blocks`` by an :class:`AdaptedBlock` (once; idempotent) and return them."""
    vit_layout(model)
    blocks = model.blocks
    for i, blk in enumerate(blocks):
        if not isinstance(blk, AdaptedBlock):
            blocks[i] = AdaptedBlock(blk)
    return list(blocks)


def state_sha256(state: Dict[str, torch.Tensor]) -> str:
    """sha256 of a state dict's tensors (sorted keys, dtype, shape, bytes): the backbone's identity for
    adapter checkpoints (independent of config such as drop-path rate)."""
    h = hashlib.sha256()
    for k in sorted(state):
        t = state[k].detach().contiguous().cpu()
        h.update(f"{k}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()
