"""The optimizer and its parameter groups.

AdamW (MoCo v3) over the method's trainable parameters. ``optim.patch_embed_lr_mult`` (DINOv2, Oquab et
al. 2023, sec. 4 / its ``patch_embed_lr_mult: 0.2``) gives the patch embedding its own group whose lr is the
scheduled lr times the multiplier; it only matters when the projection is trained
(``model.patch_embed.frozen=false``). At 1.0 (the default) there is a single group, as before, so results and
checkpoints are unchanged. Each group carries its multiplier as ``group["lr_mult"]``; the loop sets
``group["lr"] = lr * group["lr_mult"]`` every step (:func:`set_lr`).

Example::

    groups = param_groups(model, patch_embed_lr_mult=0.2)   # [{'params': [...], 'lr_mult': 1.0, 'name': 'default'},
                                                            #  {'params': [...], 'lr_mult': 0.2, 'name': 'patch_embed'}]
    opt = make_optimizer(groups, cfg.optim, lr=1e-3, device=torch.device("cpu"))
    set_lr(opt, 5e-4)                                       # patch embedding: 1e-4
"""

from __future__ import annotations

from typing import Any, Dict, List, Sequence

import torch

# parameter-name prefixes of the patch embedding inside a method (timm ViT / conv stems; ViTAS: one per size)
PATCH_EMBED_PREFIXES = ("backbone.patch_embed.", "backbone.patch_embeds.")


def param_groups(model: torch.nn.Module, patch_embed_lr_mult: float = 1.0) -> List[Dict[str, Any]]:
    """The trainable parameters of ``model`` as optimizer groups: one group, or (multiplier != 1 and a
    trainable patch embedding) the rest first, then the patch embedding with ``lr_mult`` = the multiplier."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    patch = [p for n, p in named if n.startswith(PATCH_EMBED_PREFIXES)]
    if patch_embed_lr_mult == 1.0 or not patch:
        return [{"params": [p for _, p in named], "lr_mult": 1.0, "name": "default"}]
    rest = [p for n, p in named if not n.startswith(PATCH_EMBED_PREFIXES)]
    return [
        {"params": rest, "lr_mult": 1.0, "name": "default"},
        {"params": patch, "lr_mult": float(patch_embed_lr_mult), "name": "patch_embed"},
    ]


def make_optimizer(params: Sequence, optim_cfg, lr: float, device: torch.device) -> torch.optim.Optimizer:
    """AdamW over ``params`` (tensors or :func:`param_groups` dicts); the fused kernel where this PyTorch has it
    for the device (CPU and CUDA): one pass over each tensor instead of ~7 elementwise ops per parameter (the
    unfused CPU path runs a Python loop over parameters), the same update rule
    (tests/engine/test_step_equivalence.py)."""
    kw = dict(lr=lr, betas=tuple(optim_cfg.betas), weight_decay=optim_cfg.weight_decay)
    try:
        return torch.optim.AdamW(params, fused=True, **kw)
    except (RuntimeError, ValueError, TypeError):
        return torch.optim.AdamW(params, **kw)


def lr_mults(optimizer: torch.optim.Optimizer) -> List[float]:
    """Each group's multiplier (1.0 where a group has none), read once: a resumed optimizer state replaces the
    group dicts with the checkpoint's."""
    return [float(g.get("lr_mult", 1.0)) for g in optimizer.param_groups]


def set_lr(optimizer: torch.optim.Optimizer, lr: float, mults: Sequence[float] | None = None) -> None:
    """``group["lr"] = lr * multiplier`` for every group (``mults`` from :func:`lr_mults`; default: the groups')."""
    mults = lr_mults(optimizer) if mults is None else mults
    for g, m in zip(optimizer.param_groups, mults):
        g["lr"] = lr * m
