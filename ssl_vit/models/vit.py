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

:func:`vision_transformer` builds the network from constructor arguments (timm style; ``num_classes > 0``
adds timm's classifier ``head``); :func:`build_vit` is the same from a model config, always with
``num_classes=0`` (sslvit's backbones return features). The ``sslvit_vit_*`` timm entries
(``ssl_vit/models/timm_entries.py``) call :func:`vision_transformer` through timm's builder.

Example::

    from ssl_vit.models import create_backbone
    from ssl_vit.config import ModelConfig
    vit = create_backbone(ModelConfig(name="vit_pico", img_size=28, patch_size=7, in_chans=1))
    feats = vit(torch.randn(8, 1, 28, 28))          # (8, 128): CLS token after the final norm
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Dict, Optional

import torch
import torch.nn as nn
from timm.layers import build_sincos2d_pos_embed, to_2tuple
from timm.models import VisionTransformer

from ssl_vit.config.schema import ModelConfig
from ssl_vit.core.attention import set_attention, token_count
from ssl_vit.models import stems

# embed_dim, depth, num_heads (mlp_ratio 4). MoCo v3's ViT-S has 12 heads (timm's has 6).
SIZES: Dict[str, Dict[str, int]] = {
    "vit_micro": dict(embed_dim=64, depth=4, num_heads=2),  # tests / smoke
    "vit_pico": dict(embed_dim=128, depth=6, num_heads=4),  # 28-32 px, CPU demo
    "vit_nano": dict(embed_dim=192, depth=6, num_heads=3),  # 28-32 px
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
    return replace(
        cfg,
        embed_dim=cfg.embed_dim or size["embed_dim"],
        depth=cfg.depth or size["depth"] - int(stems.replaces_block(cfg)),
        num_heads=cfg.num_heads or size["num_heads"],
        mlp_ratio=cfg.mlp_ratio or 4.0,
    )


def sincos_pos_embed(grid_hw, dim: int, num_prefix: int = 1) -> torch.Tensor:
    """(1, num_prefix + H*W, dim) fixed position embedding; prefix (CLS) positions are zero."""
    pe = build_sincos2d_pos_embed(list(grid_hw), dim=dim, temperature=10000.0)  # (H*W, dim)
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
    own fan-in (``sqrt(6 / (C_in*k*k + D))``; the stem's conv layers keep the stem's own init). A classifier
    ``head`` (``num_classes > 0``) keeps timm's init: MoCo v3's covers the backbone."""
    for name, child in model.named_children():
        if name != "head":
            moco_init_linears_(child)
    if model.cls_token is not None:
        nn.init.normal_(model.cls_token, std=1e-6)
    proj = getattr(model.patch_embed, "proj", None)
    if isinstance(proj, nn.Sequential):  # conv stem (ssl_vit/models/stems.py)
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
        fused = device_type != "cpu" or token_count(model) >= CPU_SDPA_MIN_TOKENS
    else:
        fused = str(mode).lower() in ("true", "1", "yes")
    set_attention(model, fused)


def runs_on(device_type: Optional[str], device=None) -> str:
    """The device type a model will run on (``fused_attn='auto'``): ``device_type``, else ``device``'s, else cpu."""
    return device_type or (torch.device(device).type if device is not None else "cpu")


def vision_transformer(
    img_size=224,
    patch_size=16,
    in_chans: int = 3,
    num_classes: int = 0,
    *,
    global_pool: str = "token",
    embed_dim: int = 192,
    depth: int = 12,
    num_heads: int = 3,
    mlp_ratio: float = 4.0,
    qk_norm: bool = False,
    drop_rate: float = 0.0,
    pos_drop_rate: float = 0.0,
    patch_drop_rate: float = 0.0,
    proj_drop_rate: float = 0.0,
    attn_drop_rate: float = 0.0,
    drop_path_rate: float = 0.0,
    stem: str = "patchify",
    stem_channels: int = 0,
    stem_stride: int = 0,
    pos_embed: str = "sincos",
    patch_embed_frozen: bool = True,
    stem_frozen: bool = False,
    fused_attn="auto",
    device_type: Optional[str] = None,
    device=None,
    dtype=None,
) -> VisionTransformer:
    """timm ``VisionTransformer`` with MoCo v3's choices (module docstring), from constructor arguments.

    timm's arguments keep timm's meaning (``global_pool``, the drop rates, ``device``, ``dtype``); the others
    are sslvit's model config: ``stem`` (+ ``stem_channels`` / ``stem_stride`` of conv stems),
    ``pos_embed`` (sincos | learned), ``patch_embed_frozen`` / ``stem_frozen`` (random patch projection),
    ``fused_attn`` (true | false | auto, for ``device_type``: default ``device``'s type, else cpu).
    Built with timm's ``dynamic_img_size=True``: inputs of another size (a multiple of the patch) get the
    position embedding resampled to their grid, as DINO does for multi-crop's local views (``method.local_crops``);
    at ``img_size`` nothing changes.
    ``num_classes=0``: ``forward`` returns ``(B, D)`` features (the CLS token after the final norm, for
    ``global_pool='token'``); ``> 0``: ``(B, num_classes)`` logits from timm's ``head``.
    """
    if pos_embed not in ("sincos", "learned"):
        raise ValueError(f"pos_embed must be 'sincos' or 'learned', not {pos_embed!r}")
    p = to_2tuple(patch_size)
    if p[0] != p[1]:
        raise ValueError(f"patch_size must be square (MoCo v3's patch projection init), got {tuple(p)}")
    model = VisionTransformer(
        img_size=img_size,
        patch_size=p[0],
        in_chans=in_chans,
        num_classes=num_classes,
        global_pool=global_pool,
        embed_dim=embed_dim,
        depth=depth,
        num_heads=num_heads,
        mlp_ratio=mlp_ratio,
        qkv_bias=True,
        qk_norm=bool(qk_norm),
        class_token=True,
        drop_rate=drop_rate,
        pos_drop_rate=pos_drop_rate,
        patch_drop_rate=patch_drop_rate,
        proj_drop_rate=proj_drop_rate,
        attn_drop_rate=attn_drop_rate,
        drop_path_rate=drop_path_rate,
        embed_layer=stems.stem_layer(stem, stem_channels, stem_stride),
        pos_embed="learn",
        dynamic_img_size=True,
        device=device,
        dtype=dtype,
    )
    moco_init_(model, in_chans, p[0])
    if pos_embed == "sincos":
        with torch.no_grad():
            model.pos_embed.copy_(sincos_pos_embed(model.patch_embed.grid_size, embed_dim, model.num_prefix_tokens))
        model.pos_embed.requires_grad_(False)
    freeze_patch_projection(model, patch_embed_frozen, stem_frozen)
    set_fused_attn(model, fused_attn, runs_on(device_type, device))
    return model


def vit_args(cfg: ModelConfig) -> Dict:
    """A resolved model config -> :func:`vision_transformer` arguments (stem options only for conv stems, which
    have them; ``num_classes`` left at 0)."""
    pe = cfg.patch_embed
    stem_opts = dict(stem_channels=pe.stem_channels, stem_stride=pe.stem_stride) if stems.is_conv_stem(cfg.stem) else {}
    return dict(
        img_size=cfg.img_size,
        patch_size=cfg.patch_size,
        in_chans=cfg.in_chans,
        embed_dim=cfg.embed_dim,
        depth=cfg.depth,
        num_heads=cfg.num_heads,
        mlp_ratio=cfg.mlp_ratio,
        qk_norm=bool(cfg.qk_norm),
        drop_path_rate=cfg.drop_path_rate,
        stem=cfg.stem,
        pos_embed=cfg.pos_embed,
        patch_embed_frozen=pe.frozen,
        stem_frozen=pe.stem_frozen,
        fused_attn=cfg.fused_attn,
        **stem_opts,
    )


def build_vit(cfg: ModelConfig, device_type: str = "cpu") -> VisionTransformer:
    """Model config -> backbone (``num_classes=0``: ``forward(x)`` returns ``(B, D)`` features)."""
    return vision_transformer(**vit_args(resolve(cfg)), device_type=device_type)
