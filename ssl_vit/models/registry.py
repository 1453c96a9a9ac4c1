"""Backbone registry: ``model.name`` -> builder(model config, device type). Every backbone is also a timm
model, ``sslvit_<name>`` (``ssl_vit/models/timm_entries.py``: pretrained cfg, timm's builder, every
``create_model`` keyword), so ``timm.create_model('sslvit_vit_pico', img_size=28, patch_size=7, in_chans=1)``
and ``--set model.name=vit_pico`` build the same network (a feature extractor: sslvit's own backbones are built
with ``num_classes=0``; timm's ``num_classes=10`` adds timm's classifier head).
"""

from __future__ import annotations

from typing import Callable, Dict, Optional

import torch.nn as nn

from ssl_vit.config.schema import ModelConfig
from ssl_vit.core.suggest import did_you_mean
from ssl_vit.errors import SslvitError
from ssl_vit.models import vit as vit_mod

_BUILDERS: Dict[str, Callable[[ModelConfig, str], nn.Module]] = {}
_RESOLVERS: Dict[str, Callable[[ModelConfig], ModelConfig]] = {}


def register_backbone(
    name: str,
    builder: Callable[[ModelConfig, str], nn.Module],
    resolver: Optional[Callable[[ModelConfig], ModelConfig]] = None,
) -> None:
    """Register ``builder(model_cfg, device_type) -> nn.Module`` under ``name``. ``resolver(model_cfg)`` fills
    the sizes left unset (default: the ``vit_*`` size table). Its timm entry ``sslvit_<name>`` is declared with
    ``@register_model`` next to the others (``timm_entries.py``; the backbone contract test checks it is there)."""
    _BUILDERS[name] = builder
    if resolver is not None:
        _RESOLVERS[name] = resolver


def backbone_names():
    return sorted(_BUILDERS)


def check_backbone_name(name: str) -> None:
    if name not in _BUILDERS:
        raise SslvitError(
            f"unknown backbone '{name}'"
            + did_you_mean(name, backbone_names())
            + f"; valid: {', '.join(backbone_names())}"
        )


def resolve_model_config(cfg: ModelConfig) -> ModelConfig:
    """Fill embed_dim / depth / num_heads / mlp_ratio that the config leaves unset (explicit values win)."""
    return _RESOLVERS.get(cfg.name, vit_mod.resolve)(cfg)


def create_backbone(cfg: ModelConfig, device_type: str = "cpu") -> nn.Module:
    """Model config -> backbone whose ``forward(x)`` returns ``(B, D)`` features."""
    check_backbone_name(cfg.name)
    return _BUILDERS[cfg.name](cfg, device_type)


for _name in vit_mod.SIZES:
    register_backbone(_name, vit_mod.build_vit)
