"""The bootstrapping objective: cross-entropy for both networks, mutual distillation, decaying hints.

Paper: Zhang et al., "Bootstrapping ViTs", CVPR 2022, sec. 3.3; weights as in the authors' configs
(``config/cifar100/{shared,joint}/*.yaml``, ``vit_mutual/loss/{mutual_loss,hint_loss,base_loss}.py``,
``vit_mutual/utils/decay_strategy.py``)::

    L = c * (CE(z_vit, y) + CE(z_agent, y))
      + d * (KD_T(z_vit | sg z_agent) + KD_T(z_agent | sg z_vit))       # T = 4, scaled by T^2
      + w(t) * sum_blocks MSE(LN(tokens_vit^l), LN(sg map_agent^l))      # patch tokens, CLS dropped
    shared: c = 0.5, d = 0.5, w0 = 5;   joint: c = 1, d = 1, w0 = 10;   w(t) = w0 * (1 - t / T_total)

``sg`` is stop-gradient: the hint teaches the ViT only (the authors' ``hint_cnn`` weight is 0). ``LN`` is
layer normalisation over channels without affine parameters (the authors' hint LayerNorms are never given
to the optimizer, so they stay the identity affine). The authors decay the hint weight per epoch; here
per step (the same line, without the staircase).

Example::

    w = default_weights("shared")                        # BootstrapWeights(ce=0.5, kd=0.5, hint=5.0)
    loss, terms = supervised_bootstrap_loss(z_vit, z_agent, y, tokens, maps, w, hint_w=hint_weight(10, 100, 5.0))
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Sequence, Tuple

import torch
import torch.nn.functional as F

_DEFAULTS = {"shared": (0.5, 0.5, 5.0), "joint": (1.0, 1.0, 10.0)}


@dataclass(frozen=True)
class BootstrapWeights:
    ce: float  # per network
    kd: float  # per direction
    hint: float  # at step 0, before decay


def default_weights(mode: str, ce=None, kd=None, hint=None) -> BootstrapWeights:
    """The authors' weights for ``mode``; explicit values win."""
    c, d, h = _DEFAULTS[mode]
    return BootstrapWeights(
        c if ce is None else float(ce), d if kd is None else float(kd), h if hint is None else float(hint)
    )


def weights_from_config(bcfg) -> BootstrapWeights:
    return default_weights(bcfg.mode, bcfg.ce_weight, bcfg.kd_weight, bcfg.hint_weight)


def hint_weight(step: int, total_steps: int, w0: float, decay: str = "linear") -> float:
    """Hint weight at ``step`` (0-based): ``w0 * max(0, 1 - step / total_steps)`` (``decay='none'``: ``w0``)."""
    if decay == "none" or total_steps <= 0:
        return float(w0)
    return float(w0) * max(0.0, 1.0 - step / total_steps)


def kd_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float = 4.0) -> torch.Tensor:
    """Hinton KD: ``KL(softmax(teacher/T) || softmax(student/T)) * T^2``, batch mean; teacher detached.
    student, teacher: ``(B, K)`` logits."""
    t = temperature
    log_p = F.log_softmax(student / t, dim=1)
    q = F.softmax(teacher.detach() / t, dim=1)
    return F.kl_div(log_p, q, reduction="batchmean") * t * t


def hint_loss(vit_tokens: Sequence[torch.Tensor], agent_maps: Sequence[torch.Tensor]) -> torch.Tensor:
    """Sum over blocks of ``MSE(LN(tokens), LN(sg map))``.

    vit_tokens: per block ``(B, N, D)`` patch tokens (no CLS); agent_maps: per block ``(B, D, gh, gw)``
    with ``gh * gw = N`` (the same raster order as the ViT's tokens)."""
    if len(vit_tokens) != len(agent_maps):
        raise ValueError(f"{len(vit_tokens)} ViT blocks vs {len(agent_maps)} agent blocks")
    total = vit_tokens[0].new_zeros(())
    for tok, fmap in zip(vit_tokens, agent_maps):
        target = fmap.detach().flatten(2).transpose(1, 2)  # (B, D, gh, gw) -> (B, N, D)
        D = tok.shape[-1]
        total = total + F.mse_loss(F.layer_norm(tok, (D,)), F.layer_norm(target, (D,)))
    return total


def supervised_bootstrap_loss(
    z_vit: torch.Tensor,
    z_agent: torch.Tensor,
    y: torch.Tensor,
    vit_tokens: List[torch.Tensor],
    agent_maps: List[torch.Tensor],
    w: BootstrapWeights,
    hint_w: float,
    temperature: float = 4.0,
) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
    """-> (scalar loss, detached terms for logging). Logits ``(B, K)``, labels ``(B,)``."""
    ce_vit, ce_agent = F.cross_entropy(z_vit, y), F.cross_entropy(z_agent, y)
    kd_vit, kd_agent = kd_loss(z_vit, z_agent, temperature), kd_loss(z_agent, z_vit, temperature)
    hint = hint_loss(vit_tokens, agent_maps)
    loss = w.ce * (ce_vit + ce_agent) + w.kd * (kd_vit + kd_agent) + hint_w * hint
    terms = {
        "ce_vit": ce_vit,
        "ce_agent": ce_agent,
        "kd_vit": kd_vit,
        "kd_agent": kd_agent,
        "kd_loss": kd_vit + kd_agent,
        "hint_loss": hint,
    }
    return loss, {k: v.detach() for k, v in terms.items()}
