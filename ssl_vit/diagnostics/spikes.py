"""Spike detection: robust z-score of a signal against a rolling median / MAD window, and the loop's
reaction to a spike (``train.on_spike``: log | skip | rollback, returned to the loop as an
:class:`~ssl_vit.engine.hooks.Action`; the loop restores the checkpoint for a rollback).

Paper: Chen, Xie, He 2021, "An Empirical Study of Training Self-Supervised Vision Transformers",
sec. 4.1 / Fig. 4: instability shows as sudden spikes of the gradient norm, first in the first layer
(patch projection), followed by dips of the loss and of accuracy. Rollback with a lower lr follows
the large-model practice of restarting from a checkpoint before the spike (e.g. PaLM, sec. 5.1).

Per observed value ``x`` of a signal (a python float; grad norms and the loss are positive, so the
score is computed on ``log x``; relative jumps are what matter for norms spanning decades)::

    window = last ``diag.spike_window`` observations (before x)
    med, mad = median(window), median(|window - med|)
    z = (log x - med) / (1.4826 * mad)              # 1.4826 * MAD = std of a Gaussian
    spike  <=>  len(window) >= diag.spike_min_history  and  z > diag.spike_z
                and  x >= min_ratio * exp(med)       # a floor, so a flat series does not spike on noise

Only upward jumps count. Non-finite values are ignored (the loop handles those itself).

Signals: ``loss`` and ``grad_norm/total`` every step (the loop has them on the host already: no
extra sync), ``grad_norm/<group>`` (patch_embed, block_<i>, heads) every ``log.diag_every`` steps.

Example::

    det = RobustSpikeDetector(window=100, min_history=20, z=6.0, min_ratio=1.5)
    for step, g in enumerate(grad_norms):
        hit = det.update(g)          # None, or {'value', 'median', 'ratio', 'z'}
        if hit: print(step, hit)
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any, Deque, Dict, List, Optional

import numpy as np
import torch
import torch.distributed as dist

from ssl_vit.engine.hooks import Action, Hook, RunState

_MAD_TO_STD = 1.4826
_LOG_FLOOR = 1e-12


def is_diag_step(run: RunState, step: int) -> bool:
    """Step index ``step`` (0-based) is a diagnostics step: after it, ``step + 1`` steps are done."""
    return (step + 1) % run.cfg.log.diag_every == 0 or step + 1 == run.total_steps


class RobustSpikeDetector:
    """Rolling median / MAD of log values; ``update(x)`` scores x against the window, then adds it."""

    def __init__(self, window: int = 100, min_history: int = 20, z: float = 6.0, min_ratio: float = 1.5):
        self.window, self.min_history, self.z, self.min_ratio = window, min_history, z, min_ratio
        self.values: Deque[float] = deque(maxlen=window)  # log values

    def score(self, x: float) -> Optional[Dict[str, float]]:
        """Statistics of x against the current window (None while the window is too short)."""
        if len(self.values) < self.min_history or not math.isfinite(x):
            return None
        w = np.fromiter(self.values, dtype=np.float64)
        med = float(np.median(w))
        # MAD floored at 1e-3 in log units (0.1 %) so a constant series gives a finite z
        mad = max(float(np.median(np.abs(w - med))), 1e-3)
        lx = math.log(max(x, _LOG_FLOOR))
        return {"value": x, "median": math.exp(med), "ratio": x / math.exp(med), "z": (lx - med) / (_MAD_TO_STD * mad)}

    def update(self, x: float) -> Optional[Dict[str, float]]:
        """Score x, add it to the window, return the statistics when x is a spike (else None)."""
        if not math.isfinite(x):
            return None
        s = self.score(x)
        self.values.append(math.log(max(x, _LOG_FLOOR)))
        if s is not None and s["z"] > self.z and s["ratio"] >= self.min_ratio:
            return {k: round(v, 6) for k, v in s.items()}
        return None

    def state_dict(self) -> Dict[str, Any]:
        return {"values": list(self.values)}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.values = deque((float(v) for v in state.get("values", [])), maxlen=self.window)


def find_spikes(series, window: int = 100, min_history: int = 20, z: float = 6.0, min_ratio: float = 1.5) -> List[int]:
    """Indices of spikes in a 1-D series (offline use of the same detector: tests, reports)."""
    det = RobustSpikeDetector(window, min_history, z, min_ratio)
    return [i for i, x in enumerate(series) if det.update(float(x)) is not None]


class SpikeHook(Hook):
    """Feeds the detectors, logs ``diag/spike`` (+ which signal and how big in metrics.jsonl) and reacts by
    returning SKIP or ROLLBACK (``train.on_spike``), which the loop carries out.

    Reads ``run.group_grad_norms`` ({group: float}, set by the grad-norm hook on diag steps), so it must come
    after that hook in the hook list. The outcome of a rollback is the loop's ``run.rollback``.
    """

    name = "diag_spikes"

    def __init__(self, cfg):
        self.cfg = cfg
        self.d = cfg.diag
        self.action = cfg.train.on_spike
        self.detectors: Dict[str, RobustSpikeDetector] = {}
        self.rollbacks = 0
        self.n_spikes = 0
        self._pending: Dict[str, Any] = {}

    def _detector(self, signal: str) -> RobustSpikeDetector:
        if signal not in self.detectors:
            ratio = self.d.spike_loss_min_ratio if signal == "loss" else self.d.spike_min_ratio
            self.detectors[signal] = RobustSpikeDetector(
                self.d.spike_window, self.d.spike_min_history, self.d.spike_z, ratio
            )
        return self.detectors[signal]

    def after_backward(self, run: RunState, step: int) -> Action:
        self._pending = {}
        loss, total = run.loss, float(run.grad_norm)
        if not (math.isfinite(loss) and math.isfinite(total)):
            return Action.CONTINUE  # the loop skips non-finite steps itself
        signals = {"loss": loss, "grad_norm/total": total}
        for group, v in run.group_grad_norms.items():
            if group != "total":
                signals[f"grad_norm/{group}"] = v
        hits = {}
        for name, v in signals.items():
            hit = self._detector(name).update(v)
            if hit is not None:
                hits[name] = hit
        spiked = bool(hits)
        if run.ctx.enabled and self.action != "log":
            spiked = _any_rank(spiked, run.device)  # every rank logs the same decision
        self._pending = {"hits": hits, "spiked": spiked, "diag": is_diag_step(run, step)}
        if not spiked or self.action == "log":
            return Action.CONTINUE
        if self.action == "rollback" and self.rollbacks < self.d.max_rollbacks:
            self._pending["action"] = "rollback"
            return Action.ROLLBACK
        self._pending["action"] = "skip"
        if self.action == "rollback":
            self._pending["note"] = f"diag.max_rollbacks={self.d.max_rollbacks} reached"
        return Action.SKIP

    def after_step(self, run: RunState, step: int) -> Action:
        p = self._pending
        if not p:
            return Action.CONTINUE
        if p.get("action") == "rollback":
            if run.rollback is not None:
                self.rollbacks += 1
                p["rollback"] = {
                    "to_step": run.rollback.to_step,
                    "lr_scale": run.rollback.lr_scale,
                    "n": self.rollbacks,
                }
            else:
                p["action"], p["note"] = "skip", "no checkpoint to roll back to yet"
        if p["spiked"]:
            self.n_spikes += 1
            fields: Dict[str, Any] = {"spikes": p["hits"], "spike_action": p.get("action", "log")}
            if "rollback" in p:
                fields["rollback"] = p["rollback"]
            if "note" in p:
                fields["spike_note"] = f"skipped instead of rolled back: {p['note']}"
            run.record.add({"diag/spike": 1.0}, **fields)
        elif p["diag"]:
            run.record.add({"diag/spike": 0.0})
        self._pending = {}
        return Action.CONTINUE

    def state_dict(self) -> Dict[str, Any]:
        return {
            "detectors": {k: d.state_dict() for k, d in self.detectors.items()},
            "rollbacks": self.rollbacks,
            "n_spikes": self.n_spikes,
        }

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        for k, s in state.get("detectors", {}).items():
            self._detector(k).load_state_dict(s)
        self.rollbacks = int(state.get("rollbacks", 0))
        self.n_spikes = int(state.get("n_spikes", 0))


def _any_rank(flag: bool, device) -> bool:
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)
