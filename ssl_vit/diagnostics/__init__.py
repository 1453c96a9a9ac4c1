"""Stability diagnostics: hooks the pretraining loop calls, and the offline report (``sslvit diagnose``).

One concept per module:

    grad_norms.py       per-group gradient norms (patch_embed, block_<i>, heads), update/weight ratios
    spikes.py           robust z-score spike detector; reaction train.on_spike = log | skip | rollback
    knn_monitor.py      online kNN top-1 on a fixed held-out subset, dips
    representation.py   RankMe, feature std, patch-token diversity, attention entropy, max attention logit
    alarms.py           live alarms: loss at chance, collapse (RankMe, feature std, attention entropy),
                        over-smoothing, early spikes; reaction train.on_alarm = log | stop
    tb_layout.py        TensorBoard custom-scalars layout (first layer vs other layers)
    report.py           metrics.jsonl -> report.md + PNG plots (single run or comparison)

Cost: everything except the spike detector on the loss and the total gradient norm (host floats the
loop has anyway) runs every ``log.diag_every`` steps; the kNN monitor every ``log.knn_every`` steps.
``diag.enabled=false`` turns all of it off.

Example::

    from ssl_vit.diagnostics import default_hooks
    hooks = default_hooks(cfg)        # what the loop installs for every run
"""

from __future__ import annotations

import importlib
from typing import List

from ssl_vit.diagnostics.alarms import AlarmHook
from ssl_vit.diagnostics.grad_norms import GradNormHook
from ssl_vit.diagnostics.knn_monitor import KnnMonitorHook
from ssl_vit.diagnostics.representation import RepresentationHook
from ssl_vit.diagnostics.spikes import SpikeHook
from ssl_vit.diagnostics.tb_layout import LayoutHook

# public name -> module; imported on first use, so `sslvit diagnose` (report.py) does not pay for the hooks'
# imports (lightly -> torchvision)
_EXPORTS = {
    "GradNormHook": "grad_norms",
    "group_grad_norms": "grad_norms",
    "param_groups": "grad_norms",
    "KnnMonitorHook": "knn_monitor",
    "find_dips": "knn_monitor",
    "RepresentationHook": "representation",
    "attention_entropy": "representation",
    "feature_std": "representation",
    "rankme": "representation",
    "token_diversity": "representation",
    "RobustSpikeDetector": "spikes",
    "SpikeHook": "spikes",
    "find_spikes": "spikes",
    "LayoutHook": "tb_layout",
    "stability_layout": "tb_layout",
    "AlarmHook": "alarms",
    "ChanceLoss": "alarms",
    "Collapse": "alarms",
    "Ceiling": "alarms",
    "EarlySpike": "alarms",
    "attention_logits": "representation",
    "max_attention_logit": "representation",
}


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def default_hooks(cfg) -> List:
    """The diagnostic hooks, in the order they must run.

    GradNorm before Spike (the detector reads the per-group norms of the same step); kNN before
    Representation (the latter arms forward hooks for the next training forward in ``after_step``,
    and the kNN monitor's own forwards must not be captured); Alarms last (they read the step's
    representation values from ``run.record``).
    """
    if not cfg.diag.enabled:
        return []
    return [
        LayoutHook(),
        GradNormHook(cfg),
        SpikeHook(cfg),
        KnnMonitorHook(cfg),
        RepresentationHook(cfg),
        AlarmHook(cfg),
    ]


__all__ = sorted(_EXPORTS) + ["default_hooks"]
