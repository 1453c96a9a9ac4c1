"""The ``sslvit_*`` timm models: every registered backbone as a timm model in full.

Each entry is built the way timm builds its own ViTs (``vision_transformer._create_vision_transformer``):
timm's ``build_model_with_cfg`` with the entry's pretrained cfg, so ``timm.create_model('sslvit_<name>')`` has

* ``pretrained_cfg`` (= ``default_cfg``), no weights: ``input_size`` / ``mean`` / ``std`` of the data the entry
  is sized for -- 1x28x28 grey with Fashion-MNIST's statistics (``vit_micro``, ``vit_pico``, ``vit_nano``,
  ``vitas_*``; 7x7 patches), 3x224x224 with ImageNet's (``vit_tiny`` .. ``vit_large``; 16x16 patches) --,
  ``num_classes=0`` (self-supervised backbones: features unless asked for classes), ``first_conv``,
  ``classifier='head'``. A network built for another size or channel count gets a cfg that says so
  (``input_size`` follows ``img_size`` / ``in_chans``, mean / std the channel count: :func:`channel_stats`), so
  ``timm.data.resolve_data_config({}, model=m)`` always describes ``m``'s input.
* timm's keywords: ``num_classes`` (timm's ``head``), ``global_pool``, ``drop_rate`` and the other drop rates,
  ``drop_path_rate``, ``img_size`` / ``patch_size`` / ``in_chans``, ``device`` / ``dtype``, ``features_only``
  (+ ``out_indices``, ``feature_cls``, ``feature_cfg``; timm's ``forward_intermediates`` getter, as for its
  ViTs), ``pretrained=True`` with a weight source (``pretrained_cfg_overlay=dict(file=...)``: an sslvit
  backbone ``.safetensors`` or a timm state dict); and the backbone's constructor arguments
  (:func:`ssl_vit.models.vit.vision_transformer` -- ``stem``, ``pos_embed``, ``patch_embed_frozen``, ... --,
  :func:`~ssl_vit.models.vitas.vitas_subnet` + ``blocks``, :func:`~ssl_vit.models.vitas.vitas_superformer`).
  Any other keyword is a ``TypeError`` naming it, one an entry cannot honour a ``ValueError``: none is dropped.
* ``vitas_super`` is a weight-sharing superformer, not a ``VisionTransformer``: no ``features_only`` and no FX
  trace (:data:`NO_FEATURES`, :data:`NO_FX` say why).

Sizes default to sslvit's (``ssl_vit/models/vit.py: SIZES``; a ``conv`` stem replaces one block unless
``reduce_depth=False``), so with the same seed ``timm.create_model('sslvit_vit_micro')`` and
``create_backbone(ModelConfig(name='vit_micro', img_size=28, patch_size=7, in_chans=1))`` hold the same weights.

Example::

    m = timm.create_model('sslvit_vit_micro', num_classes=10)         # 1x28x28 -> 10 logits
    timm.data.resolve_data_config({}, model=m)                       # input_size (1, 28, 28), mean (0.286,) ...
    f = timm.create_model('sslvit_vit_micro', features_only=True)    # last 3 blocks, 3 x (B, 64, 4, 4)
"""

from __future__ import annotations

import inspect
from typing import Callable, Dict, Optional, Tuple, Union

from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import to_2tuple
from timm.models import (
    build_model_with_cfg,
    generate_default_cfgs,
    get_pretrained_cfg,
    register_model,
    resolve_pretrained_cfg,
)
from timm.models.vision_transformer import checkpoint_filter_fn

from ssl_vit.config.schema import ModelConfig, PatchEmbedConfig, ViTASConfig
from ssl_vit.data import fmnist
from ssl_vit.models import stems, vitas
from ssl_vit.models import vit as vit_mod
from ssl_vit.models.vitas_space import parse_list

PREFIX = "sslvit_"

# Entries that refuse features_only / cannot be FX-traced, and why (the error message; the contract test reads these).
NO_FEATURES = {
    "sslvit_vitas_super": "the superformer runs a different sub-network each step and has no "
    "forward_intermediates; export a sub-network (sslvit_vitas_subnet has "
    "features_only)"
}
NO_FX = {
    "sslvit_vitas_super": "the superformer slices its weights with index tensors chosen in Python from the "
    "active sub-network and the input's width and device, which torch.fx cannot trace; "
    "an exported sub-network (sslvit_vitas_subnet) traces"
}


def channel_stats(in_chans: int) -> Tuple[Tuple[float, ...], Tuple[float, ...]]:
    """(mean, std) for ``in_chans``-channel input: Fashion-MNIST's for grey (``ssl_vit/data/fmnist.py``), ImageNet's
    for RGB (timm's, also sslvit's for image folders), else 0.5."""
    if in_chans == 1:
        return tuple(fmnist.MEAN), tuple(fmnist.STD)
    if in_chans == 3:
        return tuple(IMAGENET_DEFAULT_MEAN), tuple(IMAGENET_DEFAULT_STD)
    return (0.5,) * in_chans, (0.5,) * in_chans


def crop_pct(img_size) -> float:
    """Eval crop: whole image below 64 px, else 0.875 (as ``sslvit export --to timm`` writes it)."""
    return 1.0 if max(to_2tuple(img_size)) < 64 else 0.875


def _cfg(in_chans: int, img_size: int, fixed: bool = False, **kwargs) -> Dict:
    """``fixed_input_size`` False: the ViTs are built with ``dynamic_img_size`` (other sizes resample the position
    embedding); the superformer takes its trained size only."""
    mean, std = channel_stats(in_chans)
    return {
        "url": "",
        "num_classes": 0,
        "input_size": (in_chans, img_size, img_size),
        "pool_size": None,
        "crop_pct": crop_pct(img_size),
        "interpolation": "bilinear",
        "fixed_input_size": fixed,
        "mean": mean,
        "std": std,
        "first_conv": "patch_embed.proj",
        "classifier": "head",
        **kwargs,
    }


default_cfgs = generate_default_cfgs(
    {
        "sslvit_vit_micro": _cfg(1, 28),
        "sslvit_vit_pico": _cfg(1, 28),
        "sslvit_vit_nano": _cfg(1, 28),
        "sslvit_vit_tiny": _cfg(3, 224),
        "sslvit_vit_small": _cfg(3, 224),
        "sslvit_vit_base": _cfg(3, 224),
        "sslvit_vit_large": _cfg(3, 224),
        "sslvit_vitas_super": _cfg(1, 28, fixed=True, first_conv="patch_embeds.p7.proj"),
        "sslvit_vitas_subnet": _cfg(1, 28),
    }
)


# ---- keywords ------------------------------------------------------------------------------------------------
def _params(fn: Callable) -> set:
    return {n for n, p in inspect.signature(fn).parameters.items() if p.kind is not p.VAR_KEYWORD}


_BUILD_ARGS = {"pretrained_cfg", "pretrained_cfg_overlay", "cache_dir", "pretrained_strict", "features_only"}
_FEATURE_ARGS = ("out_indices", "feature_cls", "feature_cfg")
_VIT_ARGS = _params(vit_mod.vision_transformer) | {"reduce_depth"}
_SUBNET_ARGS = _params(vitas.vitas_subnet) | _params(vit_mod.vision_transformer) | {"blocks"}
_SUPER_ARGS = _params(vitas.vitas_superformer)


def _check(variant: str, kwargs: Dict, takes: set) -> None:
    """Unknown keywords -> TypeError naming them (timm would pass them on, or drop them)."""
    takes = takes | _BUILD_ARGS | set(_FEATURE_ARGS)
    unknown = sorted(set(kwargs) - takes)
    if unknown:
        raise TypeError(
            f"{variant}: unexpected keyword argument{'s' * (len(unknown) > 1)} "
            f"{', '.join(repr(k) for k in unknown)}; it takes {', '.join(sorted(takes))}"
        )


def _as_built(variant: str, kwargs: Dict, first_conv: Union[str, Tuple[str, ...]]) -> Dict:
    """pretrained cfg entries that follow the network as built (size, channels, stem) where they differ."""
    home = get_pretrained_cfg(variant)
    chans = kwargs.get("in_chans", home.input_size[0])
    size = tuple(to_2tuple(kwargs.get("img_size", home.input_size[1:])))
    out: Dict = {"first_conv": first_conv}
    if (chans, *size) != tuple(home.input_size):
        out.update(input_size=(chans, *size), crop_pct=crop_pct(size))
    if chans != home.input_size[0]:
        out["mean"], out["std"] = channel_stats(chans)
    return out


def _create(
    variant: str,
    model_fn: Callable,
    pretrained: bool,
    first_conv: Union[str, Tuple[str, ...]],
    filter_fn: Optional[Callable] = None,
    **kwargs,
):
    """timm's builder with the entry's pretrained cfg (as ``_create_vision_transformer``), refusing the keywords
    it cannot honour instead of dropping them."""
    features_only = bool(kwargs.get("features_only", False))
    stray = [k for k in _FEATURE_ARGS if k in kwargs]
    if stray and not features_only:
        raise ValueError(f"{variant}: {', '.join(stray)} only apply with features_only=True")
    if features_only and variant in NO_FEATURES:
        raise ValueError(f"{variant} has no features_only: {NO_FEATURES[variant]}")
    feature_cfg = dict(out_indices=3, feature_cls="getter", **(kwargs.pop("feature_cfg", None) or {}))
    kwargs.setdefault("img_size", get_pretrained_cfg(variant).input_size[-1])  # timm does so only for fixed sizes
    user_cfg = kwargs.pop("pretrained_cfg", None)
    overlay = dict(kwargs.pop("pretrained_cfg_overlay", None) or {})
    if not user_cfg:
        overlay = {**_as_built(variant, kwargs, first_conv), **overlay}
    if pretrained:
        source = resolve_pretrained_cfg(variant, user_cfg, overlay)
        if not (source.has_weights or source.state_dict is not None):
            raise ValueError(
                f"{variant} has no hub weights: pass pretrained_cfg_overlay=dict(file=...) (an sslvit "
                f"backbone .safetensors or a timm state dict), or load a checkpoint with "
                f"ssl_vit.checkpoints.load_backbone"
            )
    return build_model_with_cfg(
        model_fn,
        variant,
        pretrained,
        pretrained_cfg=user_cfg,
        pretrained_cfg_overlay=overlay,
        feature_cfg=feature_cfg,
        pretrained_filter_fn=filter_fn,
        **kwargs,
    )


# ---- families ------------------------------------------------------------------------------------------------
def _create_vit(variant: str, pretrained: bool = False, **kwargs):
    """``vit_*``: :func:`~ssl_vit.models.vit.vision_transformer` at the named size (explicit sizes win)."""
    _check(variant, kwargs, _VIT_ARGS)
    stem = kwargs.get("stem", "patchify")
    named = ModelConfig(
        name=variant[len(PREFIX) :],
        stem=stem,
        embed_dim=kwargs.get("embed_dim"),
        depth=kwargs.get("depth"),
        num_heads=kwargs.get("num_heads"),
        mlp_ratio=kwargs.get("mlp_ratio"),
        patch_embed=PatchEmbedConfig(reduce_depth=kwargs.pop("reduce_depth", True)),
    )
    r = vit_mod.resolve(named)
    kwargs.update(embed_dim=r.embed_dim, depth=r.depth, num_heads=r.num_heads, mlp_ratio=r.mlp_ratio)
    return _create(
        variant, vit_mod.vision_transformer, pretrained, stems.first_conv(stem), checkpoint_filter_fn, **kwargs
    )


def _create_vitas_subnet(variant: str, pretrained: bool = False, **kwargs):
    """``vitas_subnet``: per-block sizes from ``blocks`` ('heads:mlp_ratio,...' or pairs), else ``depth`` x
    (``num_heads``, ``mlp_ratio``) at ``vit_micro``'s sizes."""
    _check(variant, kwargs, _SUBNET_ARGS)
    sizes = {k: kwargs.pop(k) for k in ("embed_dim", "depth", "num_heads", "mlp_ratio") if k in kwargs}
    blocks = kwargs.pop("blocks", "")
    spec = blocks if isinstance(blocks, str) else ",".join(f"{h}:{r}" for h, r in blocks)
    cfg, per_block = vitas.subnet_blocks(ModelConfig(name="vitas_subnet", vitas=ViTASConfig(blocks=spec), **sizes))
    return _create(
        variant,
        vitas.vitas_subnet,
        pretrained,
        stems.first_conv(kwargs.get("stem", "patchify")),
        checkpoint_filter_fn,
        blocks=per_block,
        embed_dim=cfg.embed_dim,
        **kwargs,
    )


def _create_vitas_super(variant: str, pretrained: bool = False, **kwargs):
    """``vitas_super``: :func:`~ssl_vit.models.vitas.vitas_superformer`; one input conv per candidate patch size."""
    _check(variant, kwargs, _SUPER_ARGS)
    patch_sizes = vitas.csv_list(kwargs.get("patch_sizes", "")) or str(kwargs["patch_size"])
    sizes = sorted(set(parse_list(patch_sizes, "patch_sizes")))
    convs = tuple(f"patch_embeds.p{p}.proj" for p in sizes)
    return _create(variant, vitas.vitas_superformer, pretrained, convs[0] if len(convs) == 1 else convs, **kwargs)


# ---- entries -------------------------------------------------------------------------------------------------
@register_model
def sslvit_vit_micro(pretrained: bool = False, **kwargs):
    """64-d, 4 blocks, 2 heads; 1x28x28, 7x7 patches (tests, smoke and Fashion-MNIST recipes)."""
    return _create_vit("sslvit_vit_micro", pretrained, **{"patch_size": 7, **kwargs})


@register_model
def sslvit_vit_pico(pretrained: bool = False, **kwargs):
    """128-d, 6 blocks, 4 heads; 1x28x28, 7x7 patches (the CPU demo size)."""
    return _create_vit("sslvit_vit_pico", pretrained, **{"patch_size": 7, **kwargs})


@register_model
def sslvit_vit_nano(pretrained: bool = False, **kwargs):
    """192-d, 6 blocks, 3 heads; 1x28x28, 7x7 patches."""
    return _create_vit("sslvit_vit_nano", pretrained, **{"patch_size": 7, **kwargs})


@register_model
def sslvit_vit_tiny(pretrained: bool = False, **kwargs):
    """192-d, 12 blocks, 3 heads; 3x224x224, 16x16 patches."""
    return _create_vit("sslvit_vit_tiny", pretrained, **{"patch_size": 16, **kwargs})


@register_model
def sslvit_vit_small(pretrained: bool = False, **kwargs):
    """384-d, 12 blocks, 12 heads (MoCo v3's ViT-S); 3x224x224, 16x16 patches."""
    return _create_vit("sslvit_vit_small", pretrained, **{"patch_size": 16, **kwargs})


@register_model
def sslvit_vit_base(pretrained: bool = False, **kwargs):
    """768-d, 12 blocks, 12 heads; 3x224x224, 16x16 patches."""
    return _create_vit("sslvit_vit_base", pretrained, **{"patch_size": 16, **kwargs})


@register_model
def sslvit_vit_large(pretrained: bool = False, **kwargs):
    """1024-d, 24 blocks, 16 heads; 3x224x224, 16x16 patches."""
    return _create_vit("sslvit_vit_large", pretrained, **{"patch_size": 16, **kwargs})


@register_model
def sslvit_vitas_super(pretrained: bool = False, **kwargs):
    """ViTAS superformer (``model.vitas.*`` defaults: widths 48..96, 6 blocks); 1x28x28, 7x7 patches."""
    return _create_vitas_super("sslvit_vitas_super", pretrained, **{"patch_size": 7, **kwargs})


@register_model
def sslvit_vitas_subnet(pretrained: bool = False, **kwargs):
    """A ViTAS sub-network as a timm VisionTransformer (``blocks='heads:mlp_ratio,...'``); 1x28x28, 7x7 patches."""
    return _create_vitas_subnet("sslvit_vitas_subnet", pretrained, **{"patch_size": 7, **kwargs})
