"""The base of every training method: what the loop may call on it, with no-op defaults.

A method is an ``nn.Module`` whose ``forward`` returns the scalar loss of one step (MoCo v3:
``forward(x1, x2, m)``, supervised: ``forward(x, y)``). Around the forward the loop calls, on every
method and without probing (``ssl_vit/engine/trainer.py``)::

    model.set_gather(fn, rank)             # once, under DDP: fn gathers keys across ranks (no grad)
    model.begin_step(step, seed)           # before each forward: per-step backbones pick their variant
    model.set_progress(step, total_steps)  # before each forward: schedules inside the loss (hint weight)
    loss = model(*batch)                   # scalar
    model.terms                            # {name: detached 0-d tensor}: logged as train/<name>
    model.last_features                    # (N, D) detached CLS features of that forward, or None
    model.chance_loss(global_batch)        # the loss of an uninformative model, or None (alarms)

``terms`` and ``last_features`` are plain typed attributes a method sets in ``forward`` (empty / None
by default), so ``model.terms["hint_weight"]`` works as before. ``begin_step`` forwards to every direct
child that is a :class:`~ssl_vit.models.stepwise.PerStepBackbone` (a ViTAS superformer, in the order
the children were registered: the query backbone, then MoCo's momentum copy), so the keys and the
queries of a step come from the same sub-network.

Example::

    class MyMethod(Method):
        def __init__(self, backbone):
            super().__init__()
            self.backbone = backbone
        def forward(self, x, y):
            f = self.backbone(x)                   # (B, D)
            self.last_features = f.detach()
            return f.pow(2).mean()
"""

from __future__ import annotations

from typing import Callable, Dict, Optional

import torch
import torch.nn as nn

from ssl_vit.models.stepwise import PerStepBackbone

GatherFn = Callable[[torch.Tensor], torch.Tensor]


class Method(nn.Module):
    """Base class of the methods (MoCo v3, supervised, bootstrapped variants; ViTAS runs under them)."""

    backbone: nn.Module  # every method trains one; diagnostics and evaluation read it

    def __init__(self):
        super().__init__()
        self.gather: Optional[GatherFn] = None  # set_gather: all-gather of keys under DDP
        self.rank: int = 0
        self.terms: Dict[str, torch.Tensor] = {}  # extra loss terms of the last forward (detached, 0-d)
        self.last_features: Optional[torch.Tensor] = None  # (N, D) CLS features of the last forward, detached

    def set_gather(self, fn: Optional[GatherFn], rank: int) -> None:
        """Distributed training: ``fn(k) -> (world * B, D)`` gathers keys (no grad); this process is ``rank``."""
        self.gather, self.rank = fn, rank

    def begin_step(self, step: int, seed: int) -> None:
        """Before the forward of 0-based ``step``: per-step backbones pick their variant from ``(seed, step)``."""
        for child in self.children():
            if isinstance(child, PerStepBackbone):
                child.begin_step(step, seed)

    def set_progress(self, step: int, total_steps: int) -> None:
        """Before the forward of 0-based ``step`` of ``total_steps``: schedules inside the loss (default: none)."""

    def chance_loss(self, global_batch: int) -> Optional[float]:
        """The loss of a model whose outputs carry no information, for a global batch of ``global_batch``
        (the loss-at-chance alarm); None when the method has no such level."""
        return None
