"""Adaptation methods by name, and the classifier they all train: backbone (+ injected modules) -> head.

Every method is one entry of :data:`METHODS`: an ``inject(backbone, cfg, scale, conv_init)`` that adds
its modules through :mod:`ssl_vit.adapt.inject` and returns them. What trains is decided here, the same
way for all: the added modules and the head (``full``: every parameter). The training loop
(:mod:`ssl_vit.adapt.train`) knows nothing of the method.

=================  ==========================================================  =====================
method             what is added / trained                                     paper
=================  ==========================================================  =====================
``linear``         head only                                                   linear probe
``full``           everything                                                  fine-tuning
``convpass``       conv bypasses on attention and MLP (scale s)                Jie & Deng 2022
``convpass_attn``  conv bypass on attention only (scale s)                     Jie & Deng 2022 sec. 4.4
``adapter``        bottleneck h=8 after the MLP                                Houlsby et al. 2019
``lora``           rank-8 updates of q and v (scale s)                         Hu et al. 2021
``vpt_shallow``    prompt tokens at the first block                            Jia et al. 2022
``vpt_deep``       prompt tokens at every block                                Jia et al. 2022
=================  ==========================================================  =====================

Example::

    model = build_adapted_model(backbone, "convpass", num_classes=10, cfg=AdaptConfig(), scale=0.1)
    logits = model(x)                                         # (B, 10)
    trainable_summary(model)                                  # {"trainable_params": ..., "trainable_share": ...}
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable, Dict, List

import torch
import torch.nn as nn

from ssl_vit.adapt.adapter import inject_adapter
from ssl_vit.adapt.convpass import inject_convpass
from ssl_vit.adapt.inject import vit_layout
from ssl_vit.adapt.lora import inject_lora
from ssl_vit.adapt.vpt import inject_vpt
from ssl_vit.core.suggest import did_you_mean
from ssl_vit.errors import SslvitError


@dataclass(frozen=True)
class AdaptMethod:
    name: str
    inject: Callable[..., List[nn.Module]]  # (backbone, AdaptConfig, scale, conv_init) -> added modules
    uses_scale: bool = False  # s is searched on val (adapt.scales)
    uses_conv_init: bool = False  # adapt.conv_init is searched on val
    trains_backbone: bool = False


METHODS: Dict[str, AdaptMethod] = {
    m.name: m
    for m in (
        AdaptMethod("linear", lambda b, c, s, i: []),
        AdaptMethod("full", lambda b, c, s, i: [], trains_backbone=True),
        AdaptMethod(
            "convpass",
            lambda b, c, s, i: inject_convpass(b, s, i, c.dim, c.dropout),
            uses_scale=True,
            uses_conv_init=True,
        ),
        AdaptMethod(
            "convpass_attn",
            lambda b, c, s, i: inject_convpass(b, s, i, c.dim, c.dropout, attn_only=True),
            uses_scale=True,
            uses_conv_init=True,
        ),
        AdaptMethod("adapter", lambda b, c, s, i: inject_adapter(b, c.dim, c.dropout)),
        AdaptMethod("lora", lambda b, c, s, i: inject_lora(b, c.lora_rank, s, c.dropout), uses_scale=True),
        AdaptMethod("vpt_shallow", lambda b, c, s, i: inject_vpt(b, c.vpt_tokens, deep=False, dropout=c.dropout)),
        AdaptMethod("vpt_deep", lambda b, c, s, i: inject_vpt(b, c.vpt_tokens, deep=True, dropout=c.dropout)),
    )
}


def get_method(name: str) -> AdaptMethod:
    if name not in METHODS:
        raise SslvitError(
            f"unknown adaptation method '{name}'" + did_you_mean(name, METHODS) + f"; valid: {', '.join(METHODS)}"
        )
    return METHODS[name]


class AdaptedModel(nn.Module):
    """``backbone`` (with injected modules) -> ``(B, D)`` features -> ``head`` -> ``(B, num_classes)`` logits."""

    def __init__(self, backbone: nn.Module, head: nn.Linear, method: str):
        super().__init__()
        self.backbone, self.head, self.method = backbone, head, method

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


def build_adapted_model(
    backbone: nn.Module,
    method: str,
    num_classes: int,
    cfg,
    scale: float = 1.0,
    conv_init: str = "xavier",
    seed: int = 0,
) -> AdaptedModel:
    """A fresh copy of ``backbone`` with ``method`` injected, a new ``Linear(D, num_classes)`` head (PyTorch's
    default init, as timm's ``reset_classifier``), and ``requires_grad`` set: only the method's tensors train."""
    m = get_method(method)
    backbone = copy.deepcopy(backbone)
    dim = vit_layout(backbone).dim
    for p in backbone.parameters():
        p.requires_grad_(False)
    torch.manual_seed(seed)
    added = m.inject(backbone, cfg, scale, conv_init)
    head = nn.Linear(dim, num_classes)
    model = AdaptedModel(backbone, head, method).to(next(backbone.parameters()).device)
    train = (
        list(model.parameters())
        if m.trains_backbone
        else [p for mod in added for p in mod.parameters()] + list(head.parameters())
    )
    for p in train:
        p.requires_grad_(True)
    return model


def trainable_summary(model: nn.Module) -> Dict[str, object]:
    """Trainable parameter count (incl. the head), without the head, total, and the share of the total."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    head = sum(p.numel() for p in model.head.parameters()) if hasattr(model, "head") else 0
    return {
        "trainable_params": int(trainable),
        "trainable_params_no_head": int(trainable - head),
        "total_params": int(total),
        "trainable_share": trainable / total,
    }
