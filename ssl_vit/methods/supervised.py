"""Supervised training from scratch (``sslvit train``), optionally bootstrapped with an agent CNN.

``forward(x, y) -> loss`` like every method; the loop knows nothing else. Plain: ``CE(head(vit(x)), y)``.
With ``model.bootstrap.enabled`` (Zhang et al., CVPR 2022): the agent (``ssl_vit/models/bootstrap.py``)
runs on the same batch and the loss is :func:`~ssl_vit.methods.bootstrap_losses.supervised_bootstrap_loss`
(CE for both, mutual distillation at T = 4, hints from the agent's block outputs to the ViT's tokens with a
weight decaying linearly over the run). The loop calls :meth:`set_progress` before every step (for the
hint weight) and logs :attr:`terms` (``train/ce_vit``, ``train/ce_agent``, ``train/kd_loss``,
``train/hint_loss``, ``train/hint_weight``, ...).

Shapes: x ``(B, C, S, S)`` float, y ``(B,)`` int64; ``classify(x)`` -> ``(B, num_classes)`` ViT logits.

Example::

    model = SupervisedClassifier(vit, embed_dim=64, num_classes=10, bootstrap=BootstrapConfig(enabled=True))
    loss = model(x, y); loss.backward()
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from ssl_vit.methods.base import Method
from ssl_vit.methods.bootstrap_losses import hint_weight, supervised_bootstrap_loss, weights_from_config
from ssl_vit.models.bootstrap import BootstrapAgent, vit_features_and_tokens


class SupervisedClassifier(Method):
    def __init__(self, backbone: nn.Module, embed_dim: int, num_classes: int, bootstrap=None):
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(embed_dim, num_classes)
        self.bootstrap = bootstrap if bootstrap is not None and bootstrap.enabled else None
        if self.bootstrap is not None:
            self.agent = BootstrapAgent(backbone, self.bootstrap.mode)
            self.agent_head = nn.Linear(embed_dim, num_classes)
            self.weights = weights_from_config(self.bootstrap)
        self.step, self.total_steps = 0, 1
        self.num_classes = num_classes
        # Method.begin_step: a per-step backbone (a ViTAS superformer) picks this step's sub-network, the same
        # sampling as under MoCo v3

    def chance_loss(self, global_batch: int) -> Optional[float]:
        """Cross-entropy of uniform logits, ``ln(num_classes)`` (plain training; None when bootstrapped)."""
        return math.log(self.num_classes) if self.bootstrap is None else None

    def set_progress(self, step: int, total_steps: int) -> None:
        """Called by the loop before each step (0-based ``step``): drives the hint-weight schedule."""
        self.step, self.total_steps = step, total_steps

    def current_hint_weight(self) -> float:
        b = self.bootstrap
        return hint_weight(self.step, self.total_steps, self.weights.hint, b.hint_decay) if b is not None else 0.0

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))

    def classify_agent(self, x: torch.Tensor) -> torch.Tensor:
        return self.agent_head(self.agent(x)[0])

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.bootstrap is None:
            f = self.backbone(x)  # (B, D)
            loss = F.cross_entropy(self.head(f), y)
            self.terms = {"ce_vit": loss.detach()}
        else:
            f, tokens = vit_features_and_tokens(self.backbone, x)  # (B, D), [(B, N, D)] * depth
            fa, maps = self.agent(x)  # (B, D), [(B, D, gh, gw)] * depth
            hw = self.current_hint_weight()
            loss, self.terms = supervised_bootstrap_loss(
                self.head(f), self.agent_head(fa), y, tokens, maps, self.weights, hw, self.bootstrap.kd_temperature
            )
            self.terms["hint_weight"] = torch.tensor(hw)
        self.last_features = f.detach()
        return loss


class _Logits(nn.Module):
    """``x -> logits`` of one network of a :class:`SupervisedClassifier` (for evaluation loops)."""

    def __init__(self, model: SupervisedClassifier, agent: bool = False):
        super().__init__()
        self.model, self.agent = model, agent

    def forward(self, x):
        return self.model.classify_agent(x) if self.agent else self.model.classify(x)


def logits_module(model: SupervisedClassifier, agent: bool = False) -> nn.Module:
    return _Logits(model, agent)
