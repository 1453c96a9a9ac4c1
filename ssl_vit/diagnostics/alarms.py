"""Live alarms for failures that are not spikes: the loss stuck at chance, representation collapse,
attention collapse, over-smoothing, and spikes in the first steps (before the spike detector has history).

Why: at a too-high lr without warm-up MoCo v3 on Fashion-MNIST collapses within ~20 steps (RankMe 13 -> 2,
loss at chance, kNN 32-44 %) with no gradient spike the robust detector could flag -- the jump comes before
it has ``diag.spike_min_history`` values, and no rule watches for collapse. Each rule below is a small class
with ``update(...)`` on plain floats (testable on synthetic series) and a ``state_dict``; :class:`AlarmHook`
feeds them from the loop and reports.

Rules (thresholds: ``diag.alarm_*``; "early" = the max of the first ``diag.alarm_early_obs`` diag records)::

    loss_chance     mean loss of the last alarm_loss_window steps >= alarm_loss_chance_frac x chance,
                    checked from warm-up + alarm_grace_steps on. Chance: the loss of uninformative outputs,
                    Method.chance_loss -- MoCo v3 (Chen et al. 2021, Alg. 1) scales each InfoNCE term by 2 tau
                    and sums two, so 4 tau ln(batch) (tau 0.2, batch 256: 4.44); supervised: ln(classes).
    rankme          RankMe (Garrido et al. 2023, eq. 1) <= alarm_rankme_floor or < alarm_rankme_frac x early
                    (the fraction only once the early value is known).
    feature_std     std of L2-normalised features (SimSiam, Chen & He 2021, sec. 4.1) < alarm_feature_std_floor
                    / sqrt(D) or < alarm_feature_std_frac x early.
    attn_entropy    a block's attention entropy / log N (Zhai et al. 2023, sec. 3) < alarm_attn_entropy_floor
                    or < alarm_attn_entropy_frac x that block's early value.
    over_smoothing  output patch tokens nearly parallel: mean |cos| (diag/token_diversity; Wang et al. 2022,
                    sec. 3) >= alarm_token_cos, i.e. token diversity 1 - |cos| near 0.
    early_spike     while a signal has fewer than diag.spike_min_history values: grad norm >= alarm_early_grad_ratio
                    x the median of its values so far, or loss >= alarm_early_loss_ratio x it (the loss only for
                    methods with a chance level: composite losses, e.g. a decaying hint term, move legitimately).
                    From the second value on, so a jump at step 3 is caught.

Why these are silent in healthy runs (measured, ``recipes/instability_fmnist.yaml`` at base lr 1.5e-3 with 20
warm-up steps, the smoke recipe, ``fmnist_vit_tiny``): RankMe stays 17-24 (floor 3), feature std within
0.7x of its early value, attention entropy >= 0.77, token |cos| <= 0.93 (with the patch projection frozen: up to
0.987 in runs within 1 kNN point of the best, eval/reproduce/stability.md), the first steps' gradient norms fall
(smoke: 109 -> 13, one 2x bounce) and the loss never rises above its start; the loss is tested only after
warm-up + 40 steps (every run starts at chance; the 20-step smoke run is still at 0.97 x chance at its end).

Each alarm: ``diag/alarm/<kind>`` (1 while it holds, 0 on diag steps otherwise), an event record in
metrics.jsonl (``{"step", "event": "alarm", "alarm": kind, "value", "reference", "bound", "message"}``) at each
onset, a one-line console warning at its first onset; with ``train.on_alarm=stop`` the first onset returns
``Action.STOP`` (checkpoint, then :class:`~ssl_vit.errors.RunStopped`: the CLI prints the message, exit 1).
The rules' windows and what has fired are in the hook's ``state_dict``, so a resumed run keeps them.

Example::

    rule = Collapse("rankme", frac=0.25, floor=3.0, early_obs=5)
    for step, v in [(2, 13.3), (4, 4.8), (6, 2.6)]:
        hit = rule.update(v)                 # None, None, (2.6, 13.3, 3.325)  -- (value, early, bound)
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from typing import Any, Deque, Dict, List, Optional, Tuple

from ssl_vit.diagnostics.spikes import is_diag_step
from ssl_vit.engine.hooks import Action, Hook, RunState

KINDS = ("loss_chance", "rankme", "feature_std", "attn_entropy", "over_smoothing", "early_spike")
Hit = Tuple[float, float, float]  # (value, reference, bound)


# ----------------------------------------------------------------------------------------- rules
class ChanceLoss:
    """Mean of the last ``window`` losses >= ``frac * chance``, from ``start_step`` (steps done) on."""

    def __init__(self, chance: float, frac: float = 0.93, window: int = 10, start_step: int = 0):
        self.chance, self.frac, self.start_step = chance, frac, start_step
        self.values: Deque[float] = deque(maxlen=window)

    def update(self, step: int, loss: float) -> Optional[Hit]:
        if not math.isfinite(loss):
            return None
        self.values.append(loss)
        if step < self.start_step or len(self.values) < self.values.maxlen:
            return None
        mean = sum(self.values) / len(self.values)
        bound = self.frac * self.chance
        return (mean, self.chance, bound) if mean >= bound else None

    def state_dict(self) -> Dict[str, Any]:
        return {"values": list(self.values)}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.values.extend(float(v) for v in state.get("values", []))


class Collapse:
    """A quantity that collapses downwards: ``value <= floor`` at any time, or ``value < frac * early`` once
    ``early`` (the max of the first ``early_obs`` observations) is known. ``frac`` / ``floor`` 0: that test off."""

    def __init__(self, kind: str, frac: float, floor: float, early_obs: int = 5):
        self.kind, self.frac, self.floor, self.early_obs = kind, frac, floor, early_obs
        self.early: List[float] = []

    @property
    def reference(self) -> Optional[float]:
        return max(self.early) if self.early else None

    def update(self, value: float, floor: Optional[float] = None) -> Optional[Hit]:
        """Score ``value`` (``floor`` overrides the configured one, e.g. scaled by the feature width)."""
        if not math.isfinite(value):
            return None
        floor = self.floor if floor is None else floor
        known = len(self.early) >= self.early_obs
        if not known:
            self.early.append(value)
        ref = self.reference
        bound = max(floor, self.frac * ref if (known and self.frac > 0) else 0.0)
        hit = (floor > 0 and value <= floor) or (known and self.frac > 0 and value < self.frac * ref)
        return (value, ref, bound) if hit else None

    def state_dict(self) -> Dict[str, Any]:
        return {"early": list(self.early)}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.early = [float(v) for v in state.get("early", [])]


class Ceiling:
    """``value >= bound`` (over-smoothing: mean |cos| of the output patch tokens)."""

    def __init__(self, bound: float):
        self.bound = bound

    def update(self, value: float) -> Optional[Hit]:
        return (value, self.bound, self.bound) if math.isfinite(value) and value >= self.bound else None

    def state_dict(self) -> Dict[str, Any]:
        return {}

    def load_state_dict(self, state: Dict[str, Any]) -> None: ...


class EarlySpike:
    """``x >= ratio * median(values so far)`` while fewer than ``until`` values were seen (from the second on):
    the first steps, before the robust detector (``spikes.py``) has its history."""

    def __init__(self, ratio: float, until: int = 20):
        self.ratio, self.until = ratio, until
        self.values: List[float] = []

    def update(self, x: float) -> Optional[Hit]:
        if not math.isfinite(x) or len(self.values) >= self.until:
            return None
        ref = statistics.median(self.values) if self.values else None
        self.values.append(x)
        if ref is None or ref <= 0:
            return None
        return (x, ref, self.ratio * ref) if x >= self.ratio * ref else None

    def state_dict(self) -> Dict[str, Any]:
        return {"values": list(self.values)}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.values = [float(v) for v in state.get("values", [])]


# ----------------------------------------------------------------------------------------- messages
_FIX = "lower optim.lr or add / lengthen warm-up (optim.warmup_steps)"


def message(kind: str, step: int, value: float, reference: float, bound: float, detail: str = "") -> str:
    """The one-line warning of an alarm: what, at which step, the value, and what to change."""
    what = {
        "loss_chance": f"loss {value:.3f} (mean of the last steps) is at chance level ({reference:.3f}{detail}; bound "
        f"{bound:.3f}): the model is not learning",
        "rankme": f"RankMe {value:.2f} (early value {reference:.2f}, bound {bound:.2f}): dimensional collapse",
        "feature_std": f"feature std {value:.4f} (early value {reference:.4f}, bound {bound:.4f}): the features "
        f"collapsed",
        "attn_entropy": f"attention entropy {value:.3f} in {detail} (early value {reference:.3f}, bound {bound:.3f}): "
        f"attention collapse",
        "over_smoothing": f"output patch tokens nearly parallel (mean |cos| {value:.3f} >= {bound:.3f}): "
        "over-smoothing",
        "early_spike": f"{detail} {value:.4g} is {value / reference:.1f}x the median of the first steps "
        f"({reference:.4g})"
        f": an early spike",
    }[kind]
    fix = _FIX + (", or set model.qk_norm=true" if kind == "attn_entropy" else "")
    return f"alarm {kind} at step {step}: {what}; {fix}"


# ----------------------------------------------------------------------------------------- the hook
class AlarmHook(Hook):
    """Runs the rules after every step (loss, grad norm) and on diag steps (the representation values the
    :class:`~ssl_vit.diagnostics.representation.RepresentationHook` put in ``run.record``: it must come first)."""

    name = "diag_alarms"

    def __init__(self, cfg):
        d = cfg.diag
        self.cfg, self.d = cfg, d
        self.stop = cfg.train.on_alarm == "stop"
        self.loss: Optional[ChanceLoss] = None  # built in on_start (needs the chance level)
        self.rankme = Collapse("rankme", d.alarm_rankme_frac, d.alarm_rankme_floor, d.alarm_early_obs)
        self.feature_std = Collapse(
            "feature_std", d.alarm_feature_std_frac, d.alarm_feature_std_floor, d.alarm_early_obs
        )
        self.attn: Dict[str, Collapse] = {}  # per block tag
        self.smooth = Ceiling(d.alarm_token_cos)
        self.early = {
            "grad_norm": EarlySpike(d.alarm_early_grad_ratio, d.spike_min_history),
            "loss": EarlySpike(d.alarm_early_loss_ratio, d.spike_min_history),
        }
        self.active: Dict[str, bool] = {}  # kind -> held at its last evaluation
        self.fired: Dict[str, int] = {}  # kind -> step of its first onset
        self._loss_state: Dict[str, Any] = {}

    def on_start(self, run: RunState) -> None:
        chance = run.model.chance_loss(run.global_batch)
        if chance is not None:
            self.loss = ChanceLoss(
                chance,
                self.d.alarm_loss_chance_frac,
                self.d.alarm_loss_window,
                run.warmup_steps + self.d.alarm_grace_steps,
            )
            self.loss.load_state_dict(self._loss_state)
        else:
            self.early.pop("loss", None)  # composite losses move legitimately

    def _check(self, run: RunState) -> Dict[str, Tuple[Hit, str]]:
        """{kind: (hit, detail)} of the rules that hold now."""
        hits: Dict[str, Tuple[Hit, str]] = {}
        if self.loss is not None and (h := self.loss.update(run.step, run.loss)):
            hits["loss_chance"] = (h, f" for a batch of {run.global_batch}")
        for signal, value in (("grad_norm", run.grad_norm), ("loss", run.loss)):
            rule = self.early.get(signal)
            if rule is not None and (h := rule.update(value)) and "early_spike" not in hits:
                hits["early_spike"] = (h, signal)
        vals = run.record.values
        if "diag/rankme" in vals and (h := self.rankme.update(vals["diag/rankme"])):
            hits["rankme"] = (h, "")
        if "diag/feature_std" in vals:
            feats = run.model.last_features
            dim = int(feats.shape[-1]) if feats is not None else 1
            if h := self.feature_std.update(vals["diag/feature_std"], self.d.alarm_feature_std_floor / math.sqrt(dim)):
                hits["feature_std"] = (h, "")
        worst = None
        for tag in sorted(t for t in vals if t.startswith("diag/attn_entropy/block_")):
            rule = self.attn.setdefault(
                tag,
                Collapse(
                    "attn_entropy",
                    self.d.alarm_attn_entropy_frac,
                    self.d.alarm_attn_entropy_floor,
                    self.d.alarm_early_obs,
                ),
            )
            if (h := rule.update(vals[tag])) and (worst is None or h[0] < worst[0][0]):
                worst = (h, tag.rsplit("/", 1)[1])
        if worst is not None:
            hits["attn_entropy"] = worst
        if "diag/token_diversity" in vals and (h := self.smooth.update(vals["diag/token_diversity"])):
            hits["over_smoothing"] = (h, "")
        return hits

    def after_step(self, run: RunState, step: int) -> Action:
        if not self.d.alarms:
            return Action.CONTINUE
        hits = self._check(run)
        diag = is_diag_step(run, step)
        action = Action.CONTINUE
        for kind in KINDS:
            held = kind in hits
            if held or (diag and self._applies(kind)):
                run.record.add({f"diag/alarm/{kind}": 1.0 if held else 0.0})
            onset = held and not (self.active.get(kind) and kind != "early_spike")
            if diag or held or kind in ("loss_chance", "early_spike"):
                self.active[kind] = held
            if not onset:
                continue
            (value, ref, bound), detail = hits[kind]
            msg = message(kind, run.step, value, ref, bound, detail)
            run.record.event(
                "alarm", {f"diag/alarm/{kind}": 1.0}, alarm=kind, value=value, reference=ref, bound=bound, message=msg
            )
            if kind not in self.fired:
                self.fired[kind] = run.step
                if run.ctx.is_main:
                    run.log(f"warning: {msg}")
                if self.stop and action is Action.CONTINUE:
                    run.stop_reason, action = msg + " (train.on_alarm=stop)", Action.STOP
        return action

    def _applies(self, kind: str) -> bool:
        return kind != "loss_chance" or self.loss is not None

    def state_dict(self) -> Dict[str, Any]:
        return {
            "loss": self.loss.state_dict() if self.loss is not None else {},
            "rankme": self.rankme.state_dict(),
            "feature_std": self.feature_std.state_dict(),
            "attn": {k: r.state_dict() for k, r in self.attn.items()},
            "early": {k: r.state_dict() for k, r in self.early.items()},
            "active": dict(self.active),
            "fired": dict(self.fired),
        }

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self._loss_state = state.get("loss", {})  # applied in on_start, once the rule exists
        self.rankme.load_state_dict(state.get("rankme", {}))
        self.feature_std.load_state_dict(state.get("feature_std", {}))
        for tag, s in state.get("attn", {}).items():
            self.attn.setdefault(
                tag,
                Collapse(
                    "attn_entropy",
                    self.d.alarm_attn_entropy_frac,
                    self.d.alarm_attn_entropy_floor,
                    self.d.alarm_early_obs,
                ),
            ).load_state_dict(s)
        for k, s in state.get("early", {}).items():
            if k in self.early:
                self.early[k].load_state_dict(s)
        self.active = {k: bool(v) for k, v in state.get("active", {}).items()}
        self.fired = {k: int(v) for k, v in state.get("fired", {}).items()}
