"""Backbone registry. Every backbone is also a timm model (``@register_model``), so
``timm.create_model('sslvit_vit_pico', img_size=28, patch_size=7, in_chans=1)`` and
``--set model.name=vit_pico`` build the same network.
"""
from __future__ import annotations

import dataclasses
import difflib
from typing import Callable, Dict, Optional

import torch.nn as nn
from timm.models import register_model

from ssl_vit.config.schema import ModelConfig, PatchEmbedConfig
from ssl_vit.errors import SslvitError
from ssl_vit.models import vit as vit_mod

_BUILDERS: Dict[str, Callable[[ModelConfig, str], nn.Module]] = {}
_RESOLVERS: Dict[str, Callable[[ModelConfig], ModelConfig]] = {}


def register_backbone(name: str, builder: Callable[[ModelConfig, str], nn.Module],
                      resolver: Optional[Callable[[ModelConfig], ModelConfig]] = None) -> None:
    """Register ``builder(model_cfg, device_type) -> nn.Module`` under ``name`` (and ``sslvit_<name>`` in timm).
    ``resolver(model_cfg)`` fills the sizes left unset (default: the ``vit_*`` size table)."""
    _BUILDERS[name] = builder
    if resolver is not None:
        _RESOLVERS[name] = resolver

    def timm_entry(pretrained: bool = False, **kwargs):
        if pretrained:
            raise ValueError("sslvit backbones have no hub weights; load a checkpoint with ssl_vit.checkpoints")
        frozen = kwargs.pop("patch_embed_frozen", True)
        known = {f.name for f in dataclasses.fields(ModelConfig)}
        cfg = ModelConfig(name=name, patch_embed=PatchEmbedConfig(frozen=frozen),
                          **{k: v for k, v in kwargs.items() if k in known})
        return builder(cfg, "cpu")

    timm_entry.__name__ = f"sslvit_{name}"
    timm_entry.__module__ = __name__
    register_model(timm_entry)


def backbone_names():
    return sorted(_BUILDERS)


def check_backbone_name(name: str) -> None:
    if name not in _BUILDERS:
        hint = difflib.get_close_matches(name, backbone_names(), n=1)
        raise SslvitError(f"unknown backbone '{name}'" + (f" (did you mean '{hint[0]}'?)" if hint else "")
                          + f"; valid: {', '.join(backbone_names())}")


def resolve_model_config(cfg: ModelConfig) -> ModelConfig:
    """Fill embed_dim / depth / num_heads / mlp_ratio that the config leaves unset (explicit values win)."""
    return _RESOLVERS.get(cfg.name, vit_mod.resolve)(cfg)


def create_backbone(cfg: ModelConfig, device_type: str = "cpu") -> nn.Module:
    """Model config -> backbone whose ``forward(x)`` returns ``(B, D)`` features."""
    check_backbone_name(cfg.name)
    return _BUILDERS[cfg.name](cfg, device_type)


for _name in vit_mod.SIZES:
    register_backbone(_name, vit_mod.build_vit)
