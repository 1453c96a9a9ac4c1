"""ViT backbones: timm's ``VisionTransformer`` with MoCo v3's choices.

* fixed 2-D sin-cos position embedding (MoCo v3 ``vits.py``; the CLS position is zero), built with
  ``timm.layers.build_sincos2d_pos_embed`` (same frequencies; channel order sin,sin,cos,cos);
* MoCo v3 init: xavier-uniform Linear layers, q/k/v initialised as three separate matrices,
  CLS token N(0, 1e-6), zero biases;
* the *random patch projection* (MoCo v3 sec. 4.2): patch projection initialised uniform with
  ``sqrt(6 / (C*p*p + D))`` and, when ``model.patch_embed.frozen`` (default), never trained (conv stems,
  ``model.stem``: their last conv, with its own fan-in; see ``ssl_vit/models/stems.py``);
* ``fused_attn='auto'`` turns PyTorch SDPA off on CPU for short sequences (< 32 tokens), where timm's
  plain path trains slightly faster; longer sequences and GPUs use SDPA;
* ``model.qk_norm``: timm's ``qk_norm=True`` -- a LayerNorm over each head's queries and keys before
  ``q . k`` (Dehghani et al. 2023, ViT-22B sec. 2; Wortsman et al. 2023 sec. 3.1: it stops attention-logit
  growth); adds ``blocks.<i>.attn.{q,k}_norm.{weight,bias}`` to the state dict.

Checkpoint keys are timm's names, so a backbone's ``state_dict()`` loads into
``timm.create_model('vit_...', num_classes=0, ...)``.

Example::

    from ssl_vit.models import create_backbone
    from ssl_vit.config import ModelConfig
    vit = create_backbone(ModelConfig(name="vit_pico", img_size=28, patch_size=7, in_chans=1))
    feats = vit(torch.randn(8, 1, 28, 28))          # (8, 128): CLS token after the final norm
"""
from __future__ import annotations

import math
from dataclasses import replace
from functools import partial
from typing import Dict

import torch
import torch.nn as nn
from timm.layers import build_sincos2d_pos_embed
from timm.models import VisionTransformer

from ssl_vit.config.schema import ModelConfig
from ssl_vit.models import stems

# embed_dim, depth, num_heads (mlp_ratio 4). MoCo v3's ViT-S has 12 heads (timm's has 6).
SIZES: Dict[str, Dict[str, int]] = {
    "vit_micro": dict(embed_dim=64, depth=4, num_heads=2),     # tests / smoke
    "vit_pico": dict(embed_dim=128, depth=6, num_heads=4),     # 28-32 px, CPU demo
    "vit_nano": dict(embed_dim=192, depth=6, num_heads=3),     # 28-32 px
    "vit_tiny": dict(embed_dim=192, depth=12, num_heads=3),
    "vit_small": dict(embed_dim=384, depth=12, num_heads=12),
    "vit_base": dict(embed_dim=768, depth=12, num_heads=12),
    "vit_large": dict(embed_dim=1024, depth=24, num_heads=16),
}


def resolve(cfg: ModelConfig) -> ModelConfig:
    """Fill embed_dim / depth / num_heads / mlp_ratio from the named size (explicit values win).

    The named depth loses one block for a stem that replaces one (``conv``, MoCo v3 ``vit_conv_*``) unless
    ``model.patch_embed.reduce_depth=false``; an explicit ``model.depth`` is kept (so this is idempotent).
    """
    size = SIZES[cfg.name]
    return replace(cfg,
                   embed_dim=cfg.embed_dim or size["embed_dim"],
                   depth=cfg.depth or size["depth"] - int(stems.replaces_block(cfg)),
                   num_heads=cfg.num_heads or size["num_heads"],
                   mlp_ratio=cfg.mlp_ratio or 4.0)


def sincos_pos_embed(grid_hw, dim: int, num_prefix: int = 1) -> torch.Tensor:
    """(1, num_prefix + H*W, dim) fixed position embedding; prefix (CLS) positions are zero."""
    pe = build_sincos2d_pos_embed(list(grid_hw), dim=dim, temperature=10000.0)        # (H*W, dim)
    return torch.cat([torch.zeros(num_prefix, dim), pe], 0).unsqueeze(0)


def moco_init_linears_(module: nn.Module) -> None:
    """MoCo v3 init of every Linear below ``module``: xavier-uniform, q/k/v as three matrices, zero biases."""
    for name, m in module.named_modules():
        if isinstance(m, nn.Linear):
            if "qkv" in name:  # q, k, v as three (D x D) matrices
                val = math.sqrt(6.0 / float(m.weight.shape[0] // 3 + m.weight.shape[1]))
                nn.init.uniform_(m.weight, -val, val)
            else:
                nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def init_patch_projection_(proj: nn.Module, in_chans: int, patch_size: int, embed_dim: int) -> None:
    """MoCo v3 random patch projection init: uniform with ``sqrt(6 / (C*p*p + D))``, zero bias."""
    if isinstance(proj, nn.Conv2d) and proj.kernel_size[0] == patch_size:
        val = math.sqrt(6.0 / float(in_chans * patch_size * patch_size + embed_dim))
        nn.init.uniform_(proj.weight, -val, val)
        nn.init.zeros_(proj.bias)


def moco_init_(model: VisionTransformer, in_chans: int, patch_size: int) -> None:
    """MoCo v3 ``vits.py`` init. The patch projection: patchify's conv, or a conv stem's last conv with its
    own fan-in (``sqrt(6 / (C_in*k*k + D))``; the stem's conv layers keep the stem's own init)."""
    moco_init_linears_(model)
    if model.cls_token is not None:
        nn.init.normal_(model.cls_token, std=1e-6)
    proj = getattr(model.patch_embed, "proj", None)
    if isinstance(proj, nn.Sequential):                        # conv stem (ssl_vit/models/stems.py)
        last = stems.projection(model.patch_embed)
        init_patch_projection_(last, last.in_channels, last.kernel_size[0], model.embed_dim)
    else:
        init_patch_projection_(proj, in_chans, patch_size, model.embed_dim)


def freeze_patch_projection(model: VisionTransformer, frozen: bool = True, stem_frozen: bool = False) -> None:
    """Random patch projection: the stem's projection keeps its init (requires_grad False); with
    ``stem_frozen`` a conv stem's conv layers (and BN affine parameters) do too (stems.py: per stem)."""
    for p in stems.projection(model.patch_embed).parameters():
        p.requires_grad_(not frozen)
    for p in stems.conv_layer_params(model.patch_embed):
        p.requires_grad_(not stem_frozen)


# Below this many tokens timm's plain attention trains faster than SDPA on CPU; above it SDPA wins.
# Measured here (fp32, 2 threads, full MoCo v3 step): 17 tokens plain 4 % faster; 50 tokens SDPA 18 % faster.
CPU_SDPA_MIN_TOKENS = 32


def set_fused_attn(model: nn.Module, mode, device_type: str = "cpu") -> None:
    """``model.fused_attn``: true | false | auto (SDPA on GPU; on CPU only from CPU_SDPA_MIN_TOKENS tokens)."""
    if str(mode).lower() == "auto":
        pe = getattr(model, "patch_embed", None)
        tokens = int(getattr(pe, "num_patches", 0) or 0) + int(getattr(model, "num_prefix_tokens", 1))
        fused = device_type != "cpu" or tokens >= CPU_SDPA_MIN_TOKENS
    else:
        fused = str(mode).lower() in ("true", "1", "yes")
    for m in model.modules():
        if hasattr(m, "fused_attn"):
            m.fused_attn = fused


def build_vit(cfg: ModelConfig, device_type: str = "cpu") -> VisionTransformer:
    cfg = resolve(cfg)
    model = VisionTransformer(
        img_size=cfg.img_size, patch_size=cfg.patch_size, in_chans=cfg.in_chans, num_classes=0,
        embed_dim=cfg.embed_dim, depth=cfg.depth, num_heads=cfg.num_heads, mlp_ratio=cfg.mlp_ratio,
        qkv_bias=True, qk_norm=bool(cfg.qk_norm), class_token=True, global_pool="token", drop_path_rate=cfg.drop_path_rate,
        embed_layer=partial(stems.get_stem(cfg.stem), **stems.stem_kwargs(cfg)), pos_embed="learn",
    )
    moco_init_(model, cfg.in_chans, cfg.patch_size)
    if cfg.pos_embed == "sincos":
        with torch.no_grad():
            model.pos_embed.copy_(sincos_pos_embed(model.patch_embed.grid_size, cfg.embed_dim, model.num_prefix_tokens))
        model.pos_embed.requires_grad_(False)
    freeze_patch_projection(model, cfg.patch_embed.frozen, cfg.patch_embed.stem_frozen)
    set_fused_attn(model, cfg.fused_attn, device_type)
    return model
