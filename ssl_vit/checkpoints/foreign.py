"""Checkpoints written by other code: official MoCo v3, DeiT-style, plain timm state dicts.

The format is detected from the keys (as timm's ``checkpoint_filter_fn`` does)::

    official MoCo v3 (*.pth.tar)  {"arch", "epoch", "state_dict": {"module.base_encoder.<timm key>", ...}}
                                   -> keep base_encoder, drop its head.* (the projection MLP),
                                      momentum_encoder.* and predictor.*
    DeiT-style                    {"model": {<timm key>: ...}, ...}          -> drop head.* / head_dist.*
    plain timm                    {<timm key>: ...} (.pth / .bin / .safetensors without sslvit metadata)

The architecture is read off the shapes (embed dim, depth, MLP ratio, patch size and input channels
from the patch projection kernel, image size from the position embedding). A conv stem
(``patch_embed.proj.<i>.*``, e.g. MoCo v3's ``vit_conv_small``) is matched against sslvit's stems
(``ssl_vit.models.stems.infer_stem``), which gives the stem and the patch size; the depth is the file's
block count. Heads cannot be read off
shapes: they come from the official ``arch`` field (MoCo v3's ViT-S has 12 heads, timm's 6), else
timm's convention of 64-d heads, and ``--set model.num_heads=N`` overrides either.
"""

from __future__ import annotations

import math
import re
from typing import Dict, List, Optional, Tuple

import torch

from ssl_vit.config.schema import ModelConfig, PatchEmbedConfig
from ssl_vit.core.input_spec import InputSpec
from ssl_vit.errors import SslvitError
from ssl_vit.models.stems import infer_stem
from ssl_vit.models.vit import SIZES, sincos_pos_embed

MOCOV3_FORMAT = "mocov3.official"
DEIT_FORMAT = "deit"
TIMM_FORMAT = "timm"

MOCO_PREFIX = "module.base_encoder."
# MoCo v3 vits.py: (embed_dim, depth, num_heads). vit_conv_*: the conv stem (sslvit's model.stem=conv at
# patch 16) and one block fewer.
MOCO_ARCHS = {
    "vit_small": (384, 12, 12),
    "vit_base": (768, 12, 12),
    "vit_conv_small": (384, 11, 12),
    "vit_conv_base": (768, 11, 12),
}

# timm's ImageNet statistics: what official MoCo v3 / DeiT / timm ViTs were trained with.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_BLOCK = re.compile(r"^blocks\.(\d+)\.")


def looks_like_timm_vit(sd) -> bool:
    return (
        isinstance(sd, dict)
        and ("patch_embed.proj.weight" in sd or "patch_embed.proj.0.weight" in sd)
        and "pos_embed" in sd
        and any(isinstance(k, str) and k.startswith("blocks.0.") for k in sd)
    )


def _tensors(d: Dict) -> Dict[str, torch.Tensor]:
    return {k: v for k, v in d.items() if isinstance(v, torch.Tensor)}


def _drop_heads(sd: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Classifier / projector heads are not part of the backbone (ours is built with num_classes=0)."""
    return {k: v for k, v in sd.items() if not (k.startswith("head.") or k.startswith("head_dist."))}


def detect(obj: Dict) -> Optional[Tuple[str, Dict[str, torch.Tensor], Dict]]:
    """A loaded foreign checkpoint -> (format, backbone state dict with timm keys, info) or None."""
    info: Dict = {}
    sd = obj.get("state_dict")
    if isinstance(sd, dict) and any(str(k).startswith(MOCO_PREFIX) for k in sd):
        arch = obj.get("arch")
        info["arch"] = arch if isinstance(arch, str) else None
        if "epoch" in obj and isinstance(obj["epoch"], (int, float)):
            info["epoch"] = int(obj["epoch"])
        enc = {k[len(MOCO_PREFIX) :]: v for k, v in _tensors(sd).items() if k.startswith(MOCO_PREFIX)}
        return MOCOV3_FORMAT, _drop_heads(enc), info
    for wrapper in ("model", "state_dict", "module"):
        inner = obj.get(wrapper)
        if isinstance(inner, dict):
            inner = _strip_module(inner)
            if looks_like_timm_vit(inner):
                return (DEIT_FORMAT if wrapper == "model" else TIMM_FORMAT), _drop_heads(_tensors(inner)), info
    flat = _strip_module(obj)
    if looks_like_timm_vit(flat):
        return TIMM_FORMAT, _drop_heads(_tensors(flat)), info
    return None


def _strip_module(sd: Dict) -> Dict:
    """DistributedDataParallel saves keys as 'module.<key>'."""
    if sd and all(isinstance(k, str) and k.startswith("module.") for k in sd):
        return {k[len("module.") :]: v for k, v in sd.items()}
    return sd


def _square(n: int, what: str, source: str) -> int:
    s = int(round(math.sqrt(n)))
    if s * s != n:
        raise SslvitError(
            f"'{source}': {what} has {n} positions, not a square grid; only square ViT inputs are supported"
        )
    return s


def infer_vit_config(
    sd: Dict[str, torch.Tensor], source: str, fmt: str, arch: Optional[str] = None
) -> Tuple[ModelConfig, Dict, List[str]]:
    """Shapes (+ the official ``arch``) -> (model config, data config, notes for the user)."""

    notes: List[str] = []
    stem = None
    if any(k.startswith("patch_embed.proj.0.") for k in sd):  # a conv stem: proj is a Sequential
        dim = sd["pos_embed"].shape[-1] if "pos_embed" in sd else 0
        stem = infer_stem(sd, int(dim), source)
        if stem is None:
            raise SslvitError(
                f"'{source}' is a conv-stem ViT ({arch or 'patch_embed.proj is a Sequential'}) whose "
                f"stem matches none of sslvit's stems (conv = MoCo v3 vit_conv_*, scaled_relu*); "
                f"load it with its own code"
            )
    if arch is not None and not arch.startswith("vit"):
        raise SslvitError(f"'{source}' is a MoCo v3 '{arch}' checkpoint; sslvit loads ViT backbones only")
    if "cls_token" not in sd:
        raise SslvitError(
            f"'{source}' has no cls_token; sslvit backbones use the CLS token (global-pool-only ViTs are not supported)"
        )
    if "dist_token" in sd:
        raise SslvitError(f"'{source}' is a distilled DeiT (dist_token); use a non-distilled checkpoint")
    if stem is not None:
        embed_dim, in_chans = int(sd["pos_embed"].shape[-1]), int(sd["patch_embed.proj.0.weight"].shape[1])
        patch = stem["patch_size"]
        notes.append(f"stem '{stem['stem']}' with patch {patch} inferred from the patch_embed.proj.* shapes")
    else:
        proj = sd["patch_embed.proj.weight"]
        if proj.ndim != 4 or proj.shape[-1] != proj.shape[-2]:
            raise SslvitError(
                f"'{source}' key 'patch_embed.proj.weight' has shape {tuple(proj.shape)}; expected a "
                f"square conv kernel (D, C, p, p)"
            )
        embed_dim, in_chans, patch = int(proj.shape[0]), int(proj.shape[1]), int(proj.shape[-1])
    depth = 1 + max(int(m.group(1)) for m in (_BLOCK.match(k) for k in sd) if m)
    fc1 = sd.get("blocks.0.mlp.fc1.weight")
    mlp_ratio = float(fc1.shape[0]) / embed_dim if fc1 is not None else 4.0
    pe = sd["pos_embed"]
    grid = _square(int(pe.shape[1]) - 1, "pos_embed", source)
    img_size = grid * patch
    if arch in MOCO_ARCHS:
        heads = MOCO_ARCHS[arch][2]
        notes.append(f"num_heads={heads} from the checkpoint's arch '{arch}'")
    else:
        heads = max(1, embed_dim // 64)
        notes.append(
            f"num_heads={heads} assumed (64-d heads, timm's convention); the file cannot say, so if the "
            f"network had another count pass --set model.num_heads=N"
        )
    # A fixed 2-D sin-cos table (ours) is regenerated exactly at a new size; anything else is resampled.
    ours = sincos_pos_embed((grid, grid), embed_dim) if embed_dim % 4 == 0 else None
    pos = "sincos" if ours is not None and torch.allclose(pe.float(), ours, atol=1e-5) else "learned"
    name = next((n for n, s in SIZES.items() if s["embed_dim"] == embed_dim and s["depth"] == depth), None) or next(
        (n for n, s in SIZES.items() if s["embed_dim"] == embed_dim), "vit_tiny"
    )
    cfg = ModelConfig(
        name=name,
        img_size=img_size,
        patch_size=patch,
        in_chans=in_chans,
        embed_dim=embed_dim,
        depth=depth,
        num_heads=heads,
        mlp_ratio=mlp_ratio,
        pos_embed=pos,
    )
    if stem is not None:  # depth is explicit (the file's block count): no block is removed
        cfg.stem = stem["stem"]
        cfg.patch_embed = PatchEmbedConfig(stem_channels=stem["stem_channels"], stem_stride=stem["stem_stride"])
    mean = list(IMAGENET_MEAN) if in_chans == 3 else [sum(IMAGENET_MEAN) / 3] * in_chans
    std = list(IMAGENET_STD) if in_chans == 3 else [sum(IMAGENET_STD) / 3] * in_chans
    notes.append(
        f"{fmt} checkpoint: {embed_dim}-d, depth {depth}, patch {patch}, {in_chans} channel(s), "
        f"{img_size} px, ImageNet mean/std assumed"
    )
    return cfg, InputSpec(img_size, in_chans, tuple(mean), tuple(std)), notes
