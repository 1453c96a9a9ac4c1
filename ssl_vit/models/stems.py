"""Patch-embedding stems, each a timm-compatible ``embed_layer`` for ``VisionTransformer``.

A stem maps images ``(B, C, H, W)`` to tokens ``(B, N, D)`` on the same ``(H/p) x (W/p)`` grid as
patchify, so everything downstream (position embedding, blocks, checkpoints' other keys) is
unchanged. Every stem keeps timm's ``PatchEmbed`` interface (``grid_size``, ``num_patches``,
``patch_size``, ``proj``, ``norm``, ``flatten``) and its ``forward``; conv stems subclass it and make
``proj`` an ``nn.Sequential`` whose **last** module is the *patch projection* (the layer that
produces the D-dim tokens) and whose earlier modules are the *conv layers*. ``model.stem`` picks one::

    patchify             timm PatchEmbed: one conv, kernel = stride = p                  (ViT)
    conv                 [3x3 conv(s2)-BN-ReLU] x k, channels D/8 doubling, then the
                         projection (1x1 when the convs downsample by p)       (MoCo v3 vit_conv_*,
                         Xiao et al. 2021 "Early Convolutions Help Transformers See Better", sec. 3)
    scaled_relu          [conv-BN-ReLU] x 3 (7x7 stride s, 3x3, 3x3; c channels), then a patchify
                         projection with kernel = stride = p / s                (Wang et al. 2022,
                         "Scaled ReLU Matters for Training Vision Transformers", sec. 3-4; the
                         LV-ViT/VOLO-style stem the paper uses)
    scaled_relu_no_bn    the same, conv(+bias)-ReLU: ReLU without BN's affine scaling   (ablation)
    scaled_relu_no_relu  the same, conv-BN: the scaling without the ReLU               (ablation)

Strides and widths for small images, depth, what "frozen" means per stem, init, BatchNorm, export, and
the measured cost per image (parameters / FLOPs per stem and setting): ``docs/stems.md``.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Callable, Dict, Iterator, List, Optional

import torch.nn as nn
from timm.layers import PatchEmbed

from ssl_vit.errors import SslvitError
from ssl_vit.models.vit import SIZES

_STEMS: Dict[str, Callable] = {"patchify": PatchEmbed}


def register_stem(name: str):
    def deco(cls):
        _STEMS[name] = cls
        return cls

    return deco


def get_stem(name: str) -> Callable:
    if name not in _STEMS:
        raise SslvitError(f"unknown stem '{name}'; valid stems: {', '.join(sorted(_STEMS))}")
    return _STEMS[name]


def stem_names():
    return sorted(_STEMS)


def _divisors(p: int) -> str:
    return ", ".join(str(d) for d in range(1, p + 1) if p % d == 0)


class ConvStemBase(PatchEmbed):
    """timm ``PatchEmbed`` whose ``proj`` is ``nn.Sequential(*conv_layers, projection)``.

    Input ``(B, C, H, W)`` -> conv layers ``(B, c, H/s, W/s)`` -> projection (kernel = stride = p/s)
    ``(B, D, H/p, W/p)`` -> flattened ``(B, N, D)``, N = (H/p)(W/p) (timm's ``PatchEmbed.forward``).
    Subclasses implement :meth:`conv_layers`; ``channels`` / ``stem_stride`` (0 = auto) come from
    ``model.patch_embed.stem_channels`` / ``stem_stride``.
    """

    replaces_block = False  # True: the named size loses one transformer block (MoCo v3 vit_conv_*)

    def __init__(
        self,
        img_size=224,
        patch_size=16,
        in_chans=3,
        embed_dim=768,
        *,
        norm_layer=None,
        flatten=True,
        output_fmt=None,
        bias=True,
        strict_img_size=True,
        dynamic_img_pad=False,
        device=None,
        dtype=None,
        channels: int = 0,
        stem_stride: int = 0,
    ):
        super().__init__(
            img_size=img_size,
            patch_size=patch_size,
            in_chans=in_chans,
            embed_dim=embed_dim,
            norm_layer=norm_layer,
            flatten=flatten,
            output_fmt=output_fmt,
            bias=bias,
            strict_img_size=strict_img_size,
            dynamic_img_pad=dynamic_img_pad,
            device=device,
            dtype=dtype,
        )
        p = self.patch_size[0]
        if self.patch_size[0] != self.patch_size[1]:
            raise SslvitError(f"conv stems need square patches, got {self.patch_size}")
        self.stem_stride = self.resolve_stride(p, stem_stride)
        dd = {"device": device, "dtype": dtype}
        layers, c_out = self.conv_layers(in_chans, embed_dim, channels, self.stem_stride, dd)
        k = p // self.stem_stride
        projection = nn.Conv2d(c_out, embed_dim, kernel_size=k, stride=k, bias=bias, **dd)
        self.proj = nn.Sequential(*layers, projection)  # replaces PatchEmbed's single conv
        for m in layers:
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    # -- to implement --------------------------------------------------------------------------------
    def resolve_stride(self, p: int, stride: int) -> int:
        raise NotImplementedError

    def conv_layers(self, in_chans: int, embed_dim: int, channels: int, stride: int, dd) -> tuple:
        """-> (list of modules, output channels)."""
        raise NotImplementedError

    def set_input_size(self, *args, **kwargs):  # timm's would resample a single-conv kernel
        raise SslvitError("conv stems cannot change patch size after construction; build a new backbone")


def conv_bn_act(c_in: int, c_out: int, k: int, stride: int, bn: bool, relu: bool, dd) -> List[nn.Module]:
    """``k x k`` conv (padding k//2, bias only without BN) [+ BatchNorm2d] [+ ReLU]: ``(B, c_in, H, W) ->
    (B, c_out, H/stride, W/stride)`` for H divisible by stride."""
    out: List[nn.Module] = [nn.Conv2d(c_in, c_out, k, stride, padding=k // 2, bias=not bn, **dd)]
    if bn:
        out.append(nn.BatchNorm2d(c_out, **dd))
    if relu:
        out.append(nn.ReLU(inplace=True))
    return out


@register_stem("conv")
class MocoConvStem(ConvStemBase):
    """MoCo v3 / Xiao et al. conv stem: ``[3x3 conv stride 2 - BN - ReLU] x log2(s)``, channels D/8, D/4, ...
    then the projection (1x1 for s = p). p=16, D=384 reproduces MoCo v3's ``vit_conv_small`` stem (same
    ``patch_embed.proj.<i>`` keys and shapes). Odd p: one 3x3 stride-1 layer, projection p x p.

    frozen: ``model.patch_embed.frozen`` fixes the projection (``proj[-1]``); ``stem_frozen`` fixes the
    conv layers and BN affine parameters. The named size loses one transformer block (``reduce_depth``).
    """

    replaces_block = True

    def resolve_stride(self, p: int, stride: int) -> int:
        if stride == 0:
            return p & -p  # largest power of two dividing p
        if p % stride or stride & (stride - 1):
            raise SslvitError(
                f"model.patch_embed.stem_stride={stride} must be a power of two dividing "
                f"model.patch_size={p} for stem 'conv'; use 0 (auto) or one of: "
                f"{', '.join(str(2**i) for i in range(8) if p % 2**i == 0)}"
            )
        return stride

    def conv_layers(self, in_chans, embed_dim, channels, stride, dd):
        c = channels or max(1, embed_dim // 8)
        n_down = int(math.log2(stride))
        layers: List[nn.Module] = []
        c_in = in_chans
        for i in range(max(n_down, 1)):  # odd p: one stride-1 layer
            layers += conv_bn_act(c_in, c, 3, 2 if i < n_down else 1, bn=True, relu=True, dd=dd)
            c_in, c = c, c * 2
        return layers, c_in


@register_stem("scaled_relu")
class ScaledReluStem(ConvStemBase):
    """Wang et al. 2022 conv stem: conv(7x7, stride s) - BN - ReLU, [conv 3x3 - BN - ReLU] x 2 (c channels),
    then a patchify projection with kernel = stride = p/s. "Scaled ReLU" = BN's affine scaling + ReLU.

    frozen: ``model.patch_embed.frozen`` fixes the patchify projection (``proj[-1]``), ``stem_frozen`` the
    three conv layers (and BN's affine parameters).
    """

    use_bn = True
    use_relu = True

    def resolve_stride(self, p: int, stride: int) -> int:
        if stride == 0:
            return 2 if p % 2 == 0 else 1
        if p % stride:
            raise SslvitError(
                f"model.patch_embed.stem_stride={stride} does not divide model.patch_size={p}; use 0 "
                f"(auto) or one of: {_divisors(p)}"
            )
        return stride

    def conv_layers(self, in_chans, embed_dim, channels, stride, dd):
        c = channels or min(64, max(8, embed_dim // 4))
        k0 = 7 if stride > 1 else 3
        layers = conv_bn_act(in_chans, c, k0, stride, self.use_bn, self.use_relu, dd)
        for _ in range(2):
            layers += conv_bn_act(c, c, 3, 1, self.use_bn, self.use_relu, dd)
        return layers, c


@register_stem("scaled_relu_no_bn")
class ScaledReluNoBnStem(ScaledReluStem):
    """Ablation of :class:`ScaledReluStem`: conv (with bias) - ReLU, no BatchNorm scaling. Frozen: as there."""

    use_bn = False


@register_stem("scaled_relu_no_relu")
class ScaledReluNoReluStem(ScaledReluStem):
    """Ablation of :class:`ScaledReluStem`: conv - BN, no ReLU (a linear conv stack). Frozen: as there."""

    use_relu = False


# -- what the rest of sslvit asks of a stem ---------------------------------------------------------------


def is_conv_stem(name: str) -> bool:
    """True for the stems with conv layers before the projection (``stem_channels`` / ``stem_stride`` options)."""
    cls = get_stem(name)
    return isinstance(cls, type) and issubclass(cls, ConvStemBase)


def stem_layer(name: str, stem_channels: int = 0, stem_stride: int = 0) -> Callable:
    """timm ``VisionTransformer(embed_layer=...)`` for stem ``name`` with its options bound. A stem without
    conv layers (patchify) has neither option: non-zero values are refused, not ignored."""
    if is_conv_stem(name):
        return partial(get_stem(name), channels=stem_channels, stem_stride=stem_stride)
    if stem_channels or stem_stride:
        raise ValueError(
            f"stem '{name}' has no conv layers, so no stem_channels / stem_stride (got "
            f"stem_channels={stem_channels}, stem_stride={stem_stride}); leave them 0 or pick one of: "
            f"{', '.join(n for n in stem_names() if is_conv_stem(n))}"
        )
    return partial(get_stem(name))


def first_conv(name: str) -> str:
    """The input conv of a ViT with stem ``name`` (timm ``pretrained_cfg['first_conv']``)."""
    return "patch_embed.proj.0" if is_conv_stem(name) else "patch_embed.proj"


def stem_kwargs(model_cfg) -> Dict:
    """Constructor options of ``model_cfg.stem`` beyond timm's (none for patchify)."""
    if is_conv_stem(model_cfg.stem):
        pe = model_cfg.patch_embed
        return {"channels": pe.stem_channels, "stem_stride": pe.stem_stride}
    return {}


def replaces_block(model_cfg) -> bool:
    """True when the stem takes one transformer block's place (``conv``) and ``reduce_depth`` allows it."""
    cls = get_stem(model_cfg.stem)
    return bool(getattr(cls, "replaces_block", False)) and model_cfg.patch_embed.reduce_depth


def projection(patch_embed: nn.Module) -> nn.Module:
    """The patch projection: patchify's conv, or the last module of a conv stem's ``proj``."""
    proj = patch_embed.proj
    return proj[-1] if isinstance(proj, nn.Sequential) else proj


def conv_layer_params(patch_embed: nn.Module) -> Iterator[nn.Parameter]:
    """Parameters of the conv layers before the projection (empty for patchify)."""
    proj = patch_embed.proj
    if isinstance(proj, nn.Sequential):
        for m in list(proj)[:-1]:
            yield from m.parameters()


def check_stem(model_cfg) -> None:
    """Build the stem alone on the meta device: bad stem options raise their one-line SslvitError early."""
    get_stem(model_cfg.stem)(
        img_size=model_cfg.img_size,
        patch_size=model_cfg.patch_size,
        in_chans=model_cfg.in_chans,
        embed_dim=_embed_dim(model_cfg),
        device="meta",
        **stem_kwargs(model_cfg),
    )


def _embed_dim(model_cfg) -> int:
    return model_cfg.embed_dim or SIZES.get(model_cfg.name, {}).get("embed_dim", 64)


def infer_stem(sd, embed_dim: int, source: str) -> Optional[Dict]:
    """A foreign conv-stem state dict -> ``{"stem", "patch_size", "stem_channels", "stem_stride"}`` or None.

    Tries every registered conv stem at patch sizes 1..32 (and the first conv's width) on the meta device
    and keeps the first whose ``patch_embed.*`` keys and shapes equal the file's (MoCo v3's ``vit_conv_small``
    / ``vit_conv_base`` match ``conv`` at p=16). Strides are not in the weights: the auto stride is assumed.
    """
    want = {k[len("patch_embed.") :]: tuple(v.shape) for k, v in sd.items() if k.startswith("patch_embed.")}
    first = sd.get("patch_embed.proj.0.weight")
    if first is None or first.ndim != 4:
        return None
    in_chans, width = int(first.shape[1]), int(first.shape[0])
    for name, cls in _STEMS.items():
        if not (isinstance(cls, type) and issubclass(cls, ConvStemBase)):
            continue
        for p in range(1, 33):
            for channels in (0, width):
                try:
                    m = cls(
                        img_size=None,
                        patch_size=p,
                        in_chans=in_chans,
                        embed_dim=embed_dim,
                        device="meta",
                        channels=channels,
                    )
                except SslvitError:
                    continue
                got = {k: tuple(v.shape) for k, v in m.state_dict().items()}
                if got == want:
                    return {"stem": name, "patch_size": p, "stem_channels": channels, "stem_stride": 0}
    return None
