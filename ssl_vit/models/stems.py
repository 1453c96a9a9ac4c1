"""Patch-embedding stems, each a timm-compatible ``embed_layer`` for ``VisionTransformer``.

A stem maps ``(B, C, H, W)`` to ``(B, N, D)`` tokens on the same ``(H/p) x (W/p)`` grid as patchify,
so everything downstream is unchanged. ``patchify`` is timm's ``PatchEmbed`` (one conv, kernel =
stride = patch). Further stems register here with :func:`register_stem`.
"""
from __future__ import annotations

from typing import Callable, Dict

from timm.layers import PatchEmbed

_STEMS: Dict[str, Callable] = {"patchify": PatchEmbed}


def register_stem(name: str):
    def deco(cls):
        _STEMS[name] = cls
        return cls
    return deco


def get_stem(name: str) -> Callable:
    from ssl_vit.errors import SslvitError
    if name not in _STEMS:
        raise SslvitError(f"unknown stem '{name}'; valid stems: {', '.join(sorted(_STEMS))}")
    return _STEMS[name]


def stem_names():
    return sorted(_STEMS)
