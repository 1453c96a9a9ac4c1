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

Strides for small images (``model.patch_embed.stem_stride``, 0 = auto; it must divide p):

* ``conv``: the convs downsample by ``s`` = the largest power of two dividing p, one 3x3 stride-2
  layer per factor 2 (p=16: four, exactly MoCo v3's ViT-S/B stem; p=4: two); the projection then has
  kernel = stride = p/s (1x1 when s = p). An odd p (7 at 28 px) has s = 1: one 3x3 stride-1
  conv-BN-ReLU layer, then a 7x7 stride-7 projection.
* ``scaled_relu*``: s = 2 when p is even (the paper: 7x7 stride-2 conv, projection p/2), else 1; with
  s = 1 (p = 7 at 28 px) the first conv is 3x3 stride 1 (a 7x7 kernel only made sense for the
  downsampling conv at 224 px) and the projection is 7x7 stride 7.

Widths (``model.patch_embed.stem_channels``, 0 = auto): ``conv`` starts at D/8 (MoCo v3) and doubles per
layer; ``scaled_relu*`` use ``clamp(D/4, 8, 64)`` channels in every conv (64 as in the paper for
ViT-S and wider; narrower for the 64-128-d CPU models, whose token count is tiny).

Depth: ``conv`` replaces one transformer block (MoCo v3's ``vit_conv_small`` has 11 blocks), so a named
size loses one block unless ``model.patch_embed.reduce_depth=false`` or ``model.depth`` is set
explicitly (an explicit depth is used as given). The other stems keep the depth (the paper adds its
stem to the unchanged ViT).

"Frozen" (MoCo v3 sec. 4.2, the random patch projection), per stem:

* ``model.patch_embed.frozen`` (default true) -- the **patch projection** keeps its random init
  (MoCo v3's xavier-uniform with ``fan_in = C_in k k``): patchify's only conv; for conv stems the last
  conv of ``proj`` (``conv``: the 1x1 / p/s projection; ``scaled_relu*``: the patchify projection).
  The conv layers before it still train.
* ``model.patch_embed.stem_frozen`` (default false) -- the **conv layers** (conv weights, biases and
  BatchNorm's affine scale/shift) keep their init too; BatchNorm still normalises with batch
  statistics and updates its running statistics (buffers, not parameters). No effect on patchify.

Init: conv layers He-normal (``fan_in``, ReLU gain), so the no-BN ablation does not differ from the
others by a shrinking activation scale; BN weight 1, bias 0. (Official MoCo v3 leaves its conv stem
at PyTorch's default init; with BN after each conv the forward pass is scale-invariant anyway.)

BatchNorm in a stem: the running statistics are buffers, so they are in ``state_dict()``, in every
checkpoint and restored with it; the feature extractor runs the backbone in ``eval()`` mode (running
statistics). sslvit's MoCo v3 forward runs the backbone once on both views, so training BN statistics
are over 2B images (the official code runs each view separately: B). Under data-parallel training on
GPU the stem's BN is torch's SyncBatchNorm (all BN layers are converted); on CPU (gloo) only the
heads' BatchNorm1d is synchronised, a stem's BatchNorm2d uses per-rank statistics.

Export to timm works for ``patchify`` only (timm's ``VisionTransformer`` has no conv stem); the others
are refused with a one-line error (``ssl_vit.checkpoints.export``).

Cost per image (``torch.utils.flop_counter.FlopCounterMode``: conv/matmul FLOPs = 2 x MACs; BN, ReLU,
softmax, LayerNorm are not counted), from ``.venv/bin/python eval/bench/stem_flops.py``, checked by
``tests/models/test_stems.py``. ``backbone`` = the whole ViT (``conv``: one block fewer):

<!-- stem-flops-table -->
| setting | stem | stem params | stem MFLOPs | backbone params | backbone MFLOPs | vs patchify |
|---|---|---:|---:|---:|---:|---:|
| vit_micro 28px p7 1ch | patchify | 3,200 | 0.10 | 204,416 | 7.08 | +0.0% |
| vit_micro 28px p7 1ch | conv | 25,240 | 0.92 | 176,472 | 6.15 | -13.1% |
| vit_micro 28px p7 1ch | scaled_relu | 55,088 | 9.06 | 256,304 | 16.04 | +126.5% |
| vit_micro 28px p7 1ch | scaled_relu_no_bn | 55,040 | 9.06 | 256,256 | 16.04 | +126.5% |
| vit_micro 28px p7 1ch | scaled_relu_no_relu | 55,088 | 9.06 | 256,304 | 16.04 | +126.5% |
| vit_pico 32px p4 3ch | patchify | 6,272 | 0.79 | 1,204,608 | 167.12 | +0.0% |
| vit_pico 32px p4 3ch | conv | 9,360 | 1.34 | 1,009,424 | 139.95 | -16.3% |
| vit_pico 32px p4 3ch | scaled_relu | 39,840 | 13.94 | 1,238,176 | 180.28 | +7.9% |
| vit_pico 32px p4 3ch | scaled_relu_no_bn | 39,744 | 13.94 | 1,238,080 | 180.28 | +7.9% |
| vit_pico 32px p4 3ch | scaled_relu_no_relu | 39,840 | 13.94 | 1,238,176 | 180.28 | +7.9% |
| vit_small 224px p16 3ch | patchify | 295,296 | 115.61 | 21,665,664 | 9,197.00 | +0.0% |
| vit_small 224px p16 3ch | conv | 1,021,488 | 870.65 | 20,617,392 | 9,195.26 | -0.0% |
| vit_small 224px p16 3ch | scaled_relu | 1,656,768 | 2,702.28 | 23,027,136 | 11,783.67 | +28.1% |
| vit_small 224px p16 3ch | scaled_relu_no_bn | 1,656,576 | 2,702.28 | 23,026,944 | 11,783.67 | +28.1% |
| vit_small 224px p16 3ch | scaled_relu_no_relu | 1,656,768 | 2,702.28 | 23,027,136 | 11,783.67 | +28.1% |
<!-- /stem-flops-table -->

Example::

    from ssl_vit.models import create_backbone
    from ssl_vit.config import ModelConfig
    vit = create_backbone(ModelConfig(name="vit_micro", img_size=28, patch_size=7, in_chans=1, stem="scaled_relu"))
    vit.patch_embed(torch.randn(8, 1, 28, 28)).shape        # (8, 16, 64): the patchify grid, 4x4 tokens
"""
from __future__ import annotations

import math
from functools import partial
from typing import Callable, Dict, Iterator, List, Optional

import torch.nn as nn
from timm.layers import PatchEmbed

from ssl_vit.errors import SslvitError

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

    replaces_block = False          # True: the named size loses one transformer block (MoCo v3 vit_conv_*)

    def __init__(self, img_size=224, patch_size=16, in_chans=3, embed_dim=768, *, norm_layer=None, flatten=True,
                 output_fmt=None, bias=True, strict_img_size=True, dynamic_img_pad=False, device=None, dtype=None,
                 channels: int = 0, stem_stride: int = 0):
        super().__init__(img_size=img_size, patch_size=patch_size, in_chans=in_chans, embed_dim=embed_dim,
                         norm_layer=norm_layer, flatten=flatten, output_fmt=output_fmt, bias=bias,
                         strict_img_size=strict_img_size, dynamic_img_pad=dynamic_img_pad, device=device, dtype=dtype)
        p = self.patch_size[0]
        if self.patch_size[0] != self.patch_size[1]:
            raise SslvitError(f"conv stems need square patches, got {self.patch_size}")
        self.stem_stride = self.resolve_stride(p, stem_stride)
        dd = {"device": device, "dtype": dtype}
        layers, c_out = self.conv_layers(in_chans, embed_dim, channels, self.stem_stride, dd)
        k = p // self.stem_stride
        projection = nn.Conv2d(c_out, embed_dim, kernel_size=k, stride=k, bias=bias, **dd)
        self.proj = nn.Sequential(*layers, projection)        # replaces PatchEmbed's single conv
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

    def set_input_size(self, *args, **kwargs):                 # timm's would resample a single-conv kernel
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
            return p & -p                                        # largest power of two dividing p
        if p % stride or stride & (stride - 1):
            raise SslvitError(f"model.patch_embed.stem_stride={stride} must be a power of two dividing "
                              f"model.patch_size={p} for stem 'conv'; use 0 (auto) or one of: "
                              f"{', '.join(str(2 ** i) for i in range(8) if p % 2 ** i == 0)}")
        return stride

    def conv_layers(self, in_chans, embed_dim, channels, stride, dd):
        c = channels or max(1, embed_dim // 8)
        n_down = int(math.log2(stride))
        layers: List[nn.Module] = []
        c_in = in_chans
        for i in range(max(n_down, 1)):                          # odd p: one stride-1 layer
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
            raise SslvitError(f"model.patch_embed.stem_stride={stride} does not divide model.patch_size={p}; use 0 "
                              f"(auto) or one of: {_divisors(p)}")
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
        raise ValueError(f"stem '{name}' has no conv layers, so no stem_channels / stem_stride (got "
                         f"stem_channels={stem_channels}, stem_stride={stem_stride}); leave them 0 or pick one of: "
                         f"{', '.join(n for n in stem_names() if is_conv_stem(n))}")
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
    get_stem(model_cfg.stem)(img_size=model_cfg.img_size, patch_size=model_cfg.patch_size,
                             in_chans=model_cfg.in_chans, embed_dim=_embed_dim(model_cfg), device="meta",
                             **stem_kwargs(model_cfg))


def _embed_dim(model_cfg) -> int:
    from ssl_vit.models.vit import SIZES
    return model_cfg.embed_dim or SIZES.get(model_cfg.name, {}).get("embed_dim", 64)


def infer_stem(sd, embed_dim: int, source: str) -> Optional[Dict]:
    """A foreign conv-stem state dict -> ``{"stem", "patch_size", "stem_channels", "stem_stride"}`` or None.

    Tries every registered conv stem at patch sizes 1..32 (and the first conv's width) on the meta device
    and keeps the first whose ``patch_embed.*`` keys and shapes equal the file's (MoCo v3's ``vit_conv_small``
    / ``vit_conv_base`` match ``conv`` at p=16). Strides are not in the weights: the auto stride is assumed.
    """
    want = {k[len("patch_embed."):]: tuple(v.shape) for k, v in sd.items() if k.startswith("patch_embed.")}
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
                    m = cls(img_size=None, patch_size=p, in_chans=in_chans, embed_dim=embed_dim, device="meta",
                            channels=channels)
                except SslvitError:
                    continue
                got = {k: tuple(v.shape) for k, v in m.state_dict().items()}
                if got == want:
                    return {"stem": name, "patch_size": p, "stem_channels": channels, "stem_stride": 0}
    return None
