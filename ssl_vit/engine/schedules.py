"""Learning-rate and momentum schedules of MoCo v3, as pure functions of the step.

Official ``main_moco.py`` adjusts both per iteration from the fractional epoch; the same curves per
step are (T total steps, W warm-up steps):

* lr: ``peak * s / W`` for ``s < W``, then half-cycle cosine ``min + (peak - min) * (1 + cos(pi (s-W)/(T-W))) / 2``
* momentum: ``m1 - (m1 - m0) * (1 + cos(pi s / T)) / 2`` (0.99 -> 1 by default)

lightly's ``cosine_schedule`` uses ``s / (T - 1)`` and reaches the end value one step early; these
follow the paper's code exactly and are tested at known steps.
"""

from __future__ import annotations

import math


def lr_at(step: int, total_steps: int, peak_lr: float, warmup_steps: int, min_lr: float = 0.0) -> float:
    if warmup_steps > 0 and step < warmup_steps:
        return peak_lr * step / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return min_lr + (peak_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


def momentum_at(step: int, total_steps: int, base: float = 0.99, final: float = 1.0) -> float:
    progress = min(1.0, step / max(1, total_steps))
    return final - (final - base) * 0.5 * (1.0 + math.cos(math.pi * progress))


def scaled_lr(base_lr: float, batch_size: int, rule: str = "linear") -> float:
    """MoCo v3: lr = base_lr * batch / 256."""
    return base_lr * batch_size / 256 if rule == "linear" else base_lr
