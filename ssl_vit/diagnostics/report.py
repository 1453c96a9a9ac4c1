"""Offline stability report: a run's ``metrics.jsonl`` -> ``report.md`` + PNG plots (``sslvit diagnose``).

Paper: Chen, Xie, He 2021, "An Empirical Study of Training Self-Supervised Vision Transformers",
sec. 4.1 / Fig. 4 (what an instability looks like: first-layer gradient spikes, then loss and
accuracy dips) and sec. 4.2 (the frozen random patch projection removes most of it). The report
answers: did the run spike, where first, how badly, did kNN dip, did the representation collapse.

Input: ``RUN_DIR/metrics.jsonl`` (one JSON object per logged step; lines of the same step are
merged, a cut last line -- a run still writing, or killed -- and corrupt lines are skipped and
counted) and ``RUN_DIR/config.yaml`` when present (labels, total steps, thresholds). Spikes are the
ones the live detector logged (``spikes`` fields); kNN dips are recomputed from ``diag/knn_top1``
with ``diag.knn_dip`` (overridable). Outputs are written atomically, so it is safe to run on a live run.

Series are 1-D numpy arrays over logged steps; plots are matplotlib ``Figure`` objects rendered with
Agg (no display, no pyplot global state).

Example::

    run = read_run("runs/fm")
    paths = write_run_report(run)                     # runs/fm/report.md, diag_training.png, ...
    write_comparison([read_run(a), read_run(b)], "runs/compare")
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import yaml

from ssl_vit.config import apply_overrides, config_from_dict
from ssl_vit.config.schema import Config
from ssl_vit.core.atomic import atomic_path, atomic_write_text
from ssl_vit.diagnostics.alarms import Collapse
from ssl_vit.diagnostics.knn_monitor import find_dips
from ssl_vit.diagnostics.spikes import RobustSpikeDetector
from ssl_vit.errors import SslvitError
from ssl_vit.models.registry import resolve_model_config

FIRST_LAYER = "grad_norm/patch_embed"


# ----------------------------------------------------------------------------------------- reading
@dataclass
class RunData:
    path: Path
    name: str
    records: Dict[int, Dict[str, Any]]  # step -> merged record
    bad_lines: int = 0  # corrupt lines skipped
    cut_tail: bool = False  # the file ends inside a line (run still writing / killed)
    cfg: Any = None  # ssl_vit Config (defaults where config.yaml is missing)
    has_config: bool = False
    label: str = ""
    alarm_events: List[Dict[str, Any]] = field(default_factory=list)  # the `event: alarm` lines, in file order

    @property
    def steps(self) -> List[int]:
        return sorted(self.records)


def _num(v) -> Optional[float]:
    if isinstance(v, bool) or v is None:
        return None
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v)  # the logger writes non-finite numbers as "nan" / "inf"
        except ValueError:
            return None
    return None


def read_run(run_dir, overrides: Sequence[str] = ()) -> RunData:
    """Read a run directory made by ``sslvit pretrain`` (complete or still running)."""

    d = Path(run_dir)
    if not d.is_dir():
        raise SslvitError(f"run dir '{d}' not found; pass a directory written by sslvit pretrain --output-dir")
    mpath = d / "metrics.jsonl"
    if not mpath.is_file():
        raise SslvitError(
            f"'{d}' has no metrics.jsonl; pass a run directory written by sslvit pretrain "
            f"(the file appears after the first logged step)"
        )
    try:
        raw = mpath.read_bytes()
    except OSError as e:
        raise SslvitError(f"cannot read '{mpath}': {e.strerror}; check its permissions") from None
    text = raw.decode("utf-8", errors="replace")
    lines = text.split("\n")
    tail = lines.pop()  # "" when the file ends with a newline
    records: Dict[int, Dict[str, Any]] = {}
    events: List[Dict[str, Any]] = []
    bad, cut = 0, False
    for i, line in enumerate(lines + ([tail] if tail.strip() else [])):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            step = int(rec["step"])
        except (ValueError, KeyError, TypeError):
            if i == len(lines):  # the unterminated last line
                cut = True
            else:
                bad += 1
            continue
        if rec.get("event") == "alarm":  # several alarms may share a step: kept apart, not merged
            events.append(rec)
        records.setdefault(step, {}).update(rec)
    if not records:
        raise SslvitError(
            f"'{mpath}' has no complete records yet; wait until the run has logged a step "
            f"(log.every) and run sslvit diagnose again"
        )
    cfg, has_cfg = Config(), False
    cpath = d / "config.yaml"
    if cpath.is_file():
        try:
            cfg, has_cfg = config_from_dict(yaml.safe_load(cpath.read_text()) or {}), True
        except (SslvitError, yaml.YAMLError, OSError, TypeError):
            cfg = Config()  # a config of another sslvit version: defaults, still report
    cfg = apply_overrides(cfg, overrides)
    label = d.resolve().name
    if has_cfg:
        label += f" (patch proj. {'frozen' if cfg.model.patch_embed.frozen else 'trainable'})"
    return RunData(d, d.resolve().name, records, bad, cut, cfg, has_cfg, label, events)


def series(run: RunData, tag: str) -> Tuple[np.ndarray, np.ndarray]:
    """(steps, values) of a numeric tag, in step order (steps without the tag are left out)."""
    xs, ys = [], []
    for s in run.steps:
        v = _num(run.records[s].get(tag))
        if v is not None:
            xs.append(s)
            ys.append(v)
    return np.asarray(xs, dtype=np.int64), np.asarray(ys, dtype=np.float64)


def tags(run: RunData, prefix: str) -> List[str]:
    found = {k for r in run.records.values() for k in r if k.startswith(prefix)}
    return sorted(found, key=_natural)


def _natural(tag: str):
    head, _, tail = tag.rpartition("_")
    return (head, int(tail)) if tail.isdigit() else (tag, -1)


# ----------------------------------------------------------------------------------------- analysis
@dataclass
class Summary:
    name: str
    label: str
    last_step: int
    total_steps: Optional[int]
    in_progress: bool
    spike_steps: List[int]
    events: List[Tuple[int, Dict[str, Dict[str, float]], str]]  # (step, {signal: stats}, action)
    episodes: List[Dict[str, Any]]
    largest: Optional[Dict[str, Any]]
    first_layer_first_spike: Optional[int]
    first_layer_led: int
    first_layer_led_alone: int
    dips: List[Dict[str, float]]
    final_knn: Optional[float]
    final_knn_source: str
    knn_best: Optional[float]
    rankme_last: Optional[float]
    rankme_early: Optional[float]  # max of the first diag.alarm_early_obs values
    feature_std_last: Optional[float]
    feature_std_early: Optional[float]
    token_div_last: Optional[float]
    rollbacks: int
    nonfinite: int
    excursion: Optional[Dict[str, Any]] = None  # largest robust z on the logged points
    collapse: Dict[str, Dict[str, float]] = field(default_factory=dict)  # rule -> first step it held, value, bound
    alarms: List[Dict[str, Any]] = field(default_factory=list)  # the live alarms' onsets, from metrics.jsonl
    warnings: List[str] = field(default_factory=list)
    verdict: str = ""
    notes: List[str] = field(default_factory=list)


def _total_steps(run: RunData) -> Optional[int]:
    t = run.cfg.train
    if t.max_steps:
        return int(t.max_steps)
    for s in reversed(run.steps):
        ep = _num(run.records[s].get("epoch"))
        if ep:
            return int(round(t.epochs * s / ep))
    return None


def spike_events(run: RunData) -> List[Tuple[int, Dict[str, Dict[str, float]], str]]:
    out = []
    for s in run.steps:
        r = run.records[s]
        if isinstance(r.get("spikes"), dict) or _num(r.get("diag/spike")) == 1.0:
            hits = r.get("spikes") if isinstance(r.get("spikes"), dict) else {}
            out.append((s, hits, str(r.get("spike_action", "log"))))
    return out


def spike_episodes(events, gap: int) -> List[Dict[str, Any]]:
    """Group spike steps closer than ``gap`` steps; per episode the signals of its first step lead."""
    eps: List[Dict[str, Any]] = []
    for step, hits, _ in events:
        if eps and step - eps[-1]["end"] <= gap:
            ep = eps[-1]
            ep["end"] = step
            for sig in hits:
                ep["first_step_of"].setdefault(sig, step)
            ep["n"] += 1
        else:
            eps.append(
                {"start": step, "end": step, "lead": sorted(hits), "n": 1, "first_step_of": {sig: step for sig in hits}}
            )
    return eps


def summarize(run: RunData) -> Summary:
    cfg = run.cfg
    last = run.steps[-1]
    total = _total_steps(run)
    events = spike_events(run)
    gap = max(10, 2 * int(cfg.log.diag_every))
    episodes = spike_episodes(events, gap)
    largest = None
    for step, hits, _ in events:
        for sig, st in hits.items():
            r = _num(st.get("ratio")) if isinstance(st, dict) else None
            if r is not None and (largest is None or r > largest["ratio"]):
                largest = {
                    "step": step,
                    "signal": sig,
                    "ratio": r,
                    "z": _num(st.get("z")),
                    "value": _num(st.get("value")),
                }
    fl_steps = [s for s, hits, _ in events if FIRST_LAYER in hits]
    led = sum(1 for e in episodes if FIRST_LAYER in e["lead"])
    led_alone = sum(1 for e in episodes if e["lead"] == [FIRST_LAYER])
    ks, kv = series(run, "diag/knn_top1")
    dips = find_dips(list(zip(ks.tolist(), kv.tolist())), float(cfg.diag.knn_dip))
    es, ev = series(run, "eval/knn_top1")
    if len(ev):
        final, src = float(ev[-1]), "full kNN at the end of pretraining"
    elif len(kv):
        final, src = float(kv[-1]), f"online monitor, step {int(ks[-1])}, {cfg.log.knn_subset}-image subset"
    else:
        final, src = None, "not measured"
    # collapse is judged as the live alarms judge it (diagnostics/alarms.py, the same thresholds):
    # against the run's early values (max of the first diag.alarm_early_obs observations) and a floor
    rs, rk = series(run, "diag/rankme")
    fss, fs = series(run, "diag/feature_std")
    _, td = series(run, "diag/token_diversity")
    rollbacks = sum(1 for s in run.steps if isinstance(run.records[s].get("rollback"), dict))
    nonfinite = sum(1 for s in run.steps if run.records[s].get("event") == "nonfinite")
    in_progress = not len(ev) and (total is None or last < total)
    d = cfg.diag
    early_n = max(1, int(d.alarm_early_obs))
    sm = Summary(
        run.name,
        run.label,
        last,
        total,
        in_progress,
        [e[0] for e in events],
        events,
        episodes,
        largest,
        fl_steps[0] if fl_steps else None,
        led,
        led_alone,
        dips,
        final,
        src,
        float(kv.max()) if len(kv) else None,
        float(rk[-1]) if len(rk) else None,
        float(rk[:early_n].max()) if len(rk) else None,
        float(fs[-1]) if len(fs) else None,
        float(fs[:early_n].max()) if len(fs) else None,
        float(td[-1]) if len(td) else None,
        rollbacks,
        nonfinite,
    )
    sm.collapse = replay_collapse(run)
    sm.alarms = live_alarms(run)
    sm.excursion = largest_excursion(run)
    _warn(sm, run)
    sm.verdict = _verdict(sm, run)
    return sm


def largest_excursion(run: RunData) -> Optional[Dict[str, Any]]:
    """The highest robust z-score of any tracked signal on the *logged* points, spike or not (how close the
    run came to a spike). Same detector and thresholds as live; signals logged every ``log.diag_every``
    steps are scored on that grid."""

    d = run.cfg.diag
    best = None
    for tag in ["train/loss"] + tags(run, "diag/grad_norm/"):
        sig = tag.split("/", 1)[1] if tag.startswith("diag/") else "loss"
        det = RobustSpikeDetector(
            d.spike_window,
            d.spike_min_history,
            d.spike_z,
            d.spike_loss_min_ratio if sig == "loss" else d.spike_min_ratio,
        )
        for step, v in zip(*series(run, tag)):
            sc = det.score(float(v))
            det.update(float(v))
            if sc is not None and (best is None or sc["z"] > best["z"]):
                best = {"signal": sig, "step": int(step), "z": sc["z"], "ratio": sc["ratio"]}
    return best


def replay_collapse(run: RunData) -> Dict[str, Dict[str, float]]:
    """Replay the live RankMe and feature-std collapse rules (:class:`~ssl_vit.diagnostics.alarms.Collapse`,
    thresholds ``diag.alarm_*``) over the logged series: {rule: {step, value, reference, bound}} of the first
    step each rule held, so a report written afterwards says what the live alarm would have said, also for a
    run trained with alarms off or before they existed."""
    d = run.cfg.diag
    dim = resolve_model_config(run.cfg.model).embed_dim if run.has_config else 0
    std_floor = d.alarm_feature_std_floor / math.sqrt(dim) if dim else None  # as live: scaled by 1/sqrt(D)
    out: Dict[str, Dict[str, float]] = {}
    for kind, tag, frac, floor in (
        ("rankme", "diag/rankme", d.alarm_rankme_frac, d.alarm_rankme_floor),
        ("feature_std", "diag/feature_std", d.alarm_feature_std_frac, std_floor),
    ):
        rule = Collapse(kind, frac, floor if floor is not None else 0.0, d.alarm_early_obs)
        for step, v in zip(*series(run, tag)):
            hit = rule.update(float(v))
            if hit:
                out[kind] = {"step": int(step), "value": hit[0], "reference": hit[1], "bound": hit[2]}
                break
    return out


def live_alarms(run: RunData) -> List[Dict[str, Any]]:
    """The onsets the live alarm hook logged (``event: alarm`` records), first one per kind, in step order."""
    seen: Dict[str, Dict[str, Any]] = {}
    for r in run.alarm_events:
        kind = r.get("alarm")
        if isinstance(kind, str) and kind not in seen:
            seen[kind] = {"step": int(r["step"]), "kind": kind, "message": str(r.get("message", ""))}
    return sorted(seen.values(), key=lambda a: a["step"])


def _warn(sm: Summary, run: RunData) -> None:
    w = sm.warnings
    rk, fs = sm.collapse.get("rankme"), sm.collapse.get("feature_std")
    if rk:
        w.append(
            f"dimensional collapse: RankMe fell to {rk['value']:.1f} from its early value {rk['reference']:.1f} "
            f"at step {rk['step']} (bound {rk['bound']:.2f}; {sm.rankme_last:.1f} at the end)"
        )
    if fs:
        w.append(
            f"collapse: feature std fell to {fs['value']:.4f} from its early value {fs['reference']:.4f} at "
            f"step {fs['step']} (bound {fs['bound']:.4f}; {sm.feature_std_last:.4f} at the end)"
        )
    bound = run.cfg.diag.alarm_token_cos  # the live over-smoothing alarm's bound
    if sm.token_div_last is not None and sm.token_div_last >= bound:
        w.append(
            f"over-smoothing: output patch tokens nearly parallel (mean |cos| {sm.token_div_last:.3f} >= {bound:g})"
        )
    if sm.nonfinite:
        w.append(f"{sm.nonfinite} non-finite step(s) skipped by the loop")
    if run.bad_lines:
        w.append(f"{run.bad_lines} corrupt line(s) in metrics.jsonl skipped")
    if run.cut_tail:
        sm.notes.append("metrics.jsonl ends mid-line (run still writing, or killed); the partial record is ignored")
    if int(run.cfg.log.diag_every) > 1:
        sm.notes.append(
            f"per-group gradient norms are observed every {run.cfg.log.diag_every} steps (the loss and "
            f"the total norm every step): which signal leads is resolved to that interval only"
        )


def _fmt(v: Optional[float], spec: str = ".2f", none: str = "–") -> str:
    return none if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


def _verdict(sm: Summary, run: RunData) -> str:
    span = f"{sm.last_step} steps" + (f" of {sm.total_steps}" if sm.total_steps else "")
    parts = []
    if sm.in_progress:
        parts.append(f"Run in progress ({span} logged so far).")
    if not sm.events:
        parts.append(
            f"No gradient-norm or loss spike was detected in {span}"
            + (" and the kNN monitor never dipped." if not sm.dips else ".")
        )
        ex = sm.excursion
        if ex:
            parts.append(
                f"The closest call was {ex['signal']} at step {ex['step']}: {ex['ratio']:.1f}x its running "
                f"median, robust z {ex['z']:.1f} (threshold {run.cfg.diag.spike_z:g})."
            )
    else:
        n_ep = len(sm.episodes)
        s = f"{len(sm.events)} spike step(s) in {n_ep} episode(s) over {span}, the first at step {sm.events[0][0]}"
        if sm.largest:
            s += (
                f"; the largest was {sm.largest['signal']} at {sm.largest['ratio']:.1f}x its running median "
                f"(step {sm.largest['step']})"
            )
        parts.append(s + ".")
        if sm.first_layer_first_spike is not None:
            parts.append(
                f"The first-layer (patch projection) gradient norm spiked first in {sm.first_layer_led} of "
                f"{n_ep} episode(s) ({sm.first_layer_led_alone} alone), first at step "
                f"{sm.first_layer_first_spike}."
            )
        else:
            parts.append("The first-layer (patch projection) gradient norm never spiked.")
    if sm.dips:
        worst = max(sm.dips, key=lambda d: d["drop"])
        parts.append(
            f"kNN dipped {len(sm.dips)} time(s), worst {worst['drop']:.1f} points below its best at step "
            f"{worst['step']}."
        )
    elif sm.knn_best is not None and sm.events:
        parts.append("kNN did not dip by more than the threshold.")
    if sm.rollbacks:
        parts.append(f"{sm.rollbacks} rollback(s) were made.")
    parts.append(f"Final kNN: {_fmt(sm.final_knn)} % ({sm.final_knn_source}).")
    if sm.alarms:
        first = sm.alarms[0]
        parts.append(
            f"Live alarms: {', '.join(a['kind'] + ' at step ' + str(a['step']) for a in sm.alarms)}; the first "
            f"said: {first['message']}."
        )
    if sm.warnings:
        parts.append("Warnings: " + "; ".join(sm.warnings) + ".")
    stable = not sm.events and not sm.dips and not sm.warnings and not sm.alarms
    parts.append(
        "Verdict: "
        + (
            "stable."
            if stable
            else "unstable."
            if (sm.events and sm.dips) or sm.nonfinite
            else "mostly stable, see the spikes above."
            if sm.events or sm.dips
            else "check the alarms and warnings."
        )
    )
    return " ".join(parts)


# ----------------------------------------------------------------------------------------- plots
def _figure(nrows: int, ncols: int, w: float = 11, h: float = 6.5):
    from matplotlib.figure import Figure  # no pyplot: Agg rendering, no global state

    fig = Figure(figsize=(w, h), dpi=80, layout="constrained")
    return fig, fig.subplots(nrows, ncols, squeeze=False)


def _finish_grid(fig, ax, title: str, path: Path) -> Path:
    """Common end of a 2x2 per-run figure: step x-labels, legends where there are labels, title, save."""
    for a in (ax[0][0], ax[0][1], ax[1][0], ax[1][1]):
        a.set_xlabel("step")
        if a.get_legend_handles_labels()[0]:
            a.legend(fontsize=7, ncol=2)
    fig.suptitle(title)
    return save_png(fig, path)


def save_png(fig, path: Path) -> Path:
    """``fig`` as a PNG at ``path``, written atomically (a 256-colour palette when that is smaller)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    data = buf.getvalue()
    try:  # 256-colour palette: ~3x smaller files, same look for line plots
        from PIL import Image  # lazy and optional: Pillow only shrinks the PNG

        small = io.BytesIO()
        Image.open(io.BytesIO(data)).convert("RGB").quantize(256).save(small, format="PNG", optimize=True)
        data = small.getvalue() if small.tell() < len(data) else data
    except ImportError:
        pass
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return path


def _mark_spikes(ax, steps: Iterable[int], label: bool = True) -> None:
    for i, s in enumerate(steps):
        ax.axvline(s, color="red", alpha=0.25, lw=1, label="spike" if (label and i == 0) else None)


def _plot_tag(ax, run: RunData, tag: str, **kw) -> bool:
    x, y = series(run, tag)
    if not len(x):
        return False
    ax.plot(x, y, **kw)
    return True


def plot_run(run: RunData, sm: Summary, out_dir: Path) -> List[Path]:
    out: List[Path] = []
    fig, ax = _figure(2, 2)
    a = ax[0][0]
    _plot_tag(a, run, "train/loss", color="k", lw=1, label="train/loss")
    _mark_spikes(a, sm.spike_steps)
    a.set_title("loss (red: detected spikes)")
    a = ax[0][1]
    blocks = tags(run, "diag/grad_norm/block_")
    cmap = _cmap(len(blocks))
    for i, t in enumerate(blocks):
        _plot_tag(a, run, t, color=cmap(i), lw=0.8, label=t.rsplit("/", 1)[1])
    _plot_tag(a, run, "diag/grad_norm/patch_embed", color="red", lw=1.6, label="patch_embed (first layer)")
    _plot_tag(a, run, "diag/grad_norm/total", color="k", lw=1, ls="--", label="total")
    _mark_spikes(a, sm.spike_steps, label=False)
    a.set_yscale("log")
    a.set_title("gradient norms: first layer vs blocks")
    a = ax[1][0]
    for t in tags(run, "diag/update_ratio/"):
        _plot_tag(a, run, t, lw=0.8, label=t.rsplit("/", 1)[1])
    a.set_yscale("log")
    a.set_title("update / weight ratio")
    a = ax[1][1]
    _plot_tag(a, run, "train/lr", color="tab:blue", lw=1, label="train/lr")
    a.set_title("learning rate")
    out.append(_finish_grid(fig, ax, run.label, out_dir / "diag_training.png"))

    fig, ax = _figure(2, 2)
    a = ax[0][0]
    if _plot_tag(a, run, "diag/knn_top1", color="tab:green", marker="o", ms=3, label="kNN monitor"):
        for d in sm.dips:
            a.annotate(f"-{d['drop']:.1f}", (d["step"], d["top1"]), color="red", fontsize=8)
            a.plot([d["step"]], [d["top1"]], "v", color="red")
    if sm.final_knn is not None and sm.final_knn_source.startswith("full"):
        a.axhline(sm.final_knn, color="tab:green", ls=":", label=f"final kNN {sm.final_knn:.1f}")
    _mark_spikes(a, sm.spike_steps, label=False)
    a.set_title("kNN top-1 (%), dips marked")
    a = ax[0][1]
    _plot_tag(a, run, "diag/rankme", color="tab:purple", lw=1, label="RankMe")
    a.set_title("RankMe (effective rank of CLS features)")
    a = ax[1][0]
    _plot_tag(a, run, "diag/feature_std", color="tab:orange", lw=1, label="feature std")
    a.set_title("feature std of L2-normalised CLS features (0 = collapse)")
    a = ax[1][1]
    _plot_tag(a, run, "diag/token_diversity", color="k", lw=1.4, label="token |cos| (output)")
    _plot_tag(a, run, "diag/token_diversity/patch_embed", color="gray", lw=1, ls="--", label="token |cos| (stem)")
    ent = tags(run, "diag/attn_entropy/block_")
    cmap = _cmap(len(ent))
    for i, t in enumerate(ent):
        _plot_tag(a, run, t, color=cmap(i), lw=0.7, label=f"attn entropy {t.rsplit('/', 1)[1]}")
    a.set_title("token similarity / attention entropy")
    out.append(_finish_grid(fig, ax, run.label, out_dir / "diag_representation.png"))
    return out


def _cmap(n: int):
    from matplotlib import colormaps  # lazy: matplotlib is heavy (~0.5 s) and only plots need it

    cm = colormaps["viridis"]
    return lambda i: cm(i / max(n - 1, 1) * 0.85)


def plot_comparison(runs: List[RunData], sums: List[Summary], out_dir: Path) -> List[Path]:
    from matplotlib import colormaps  # lazy: matplotlib is heavy (~0.5 s) and only plots need it

    colors = colormaps["tab10"]
    fig, ax = _figure(2, 2)
    panels = [
        ("train/loss", "loss", False),
        ("diag/grad_norm/patch_embed", "first-layer (patch_embed) grad norm", True),
        ("diag/knn_top1", "kNN monitor top-1 (%)", False),
        ("diag/rankme", "RankMe", False),
    ]
    for (tag, title, logy), a in zip(panels, [ax[0][0], ax[0][1], ax[1][0], ax[1][1]]):
        for i, (run, sm) in enumerate(zip(runs, sums)):
            x, y = series(run, tag)
            if not len(x):
                continue
            a.plot(x, y, color=colors(i), lw=1, label=run.label, marker="o" if tag == "diag/knn_top1" else None, ms=3)
            if tag in ("train/loss", "diag/grad_norm/patch_embed") and sm.spike_steps:
                ys = np.interp(sm.spike_steps, x, y)
                a.plot(sm.spike_steps, ys, "x", color=colors(i), ms=6)
        if logy:
            a.set_yscale("log")
        a.set_title(title + (" (x: spikes)" if tag in ("train/loss", "diag/grad_norm/patch_embed") else ""))
        a.set_xlabel("step")
        if a.get_legend_handles_labels()[0]:
            a.legend(fontsize=7)
    out = [save_png(fig, out_dir / "compare.png")]

    fig, ax = _figure(1, len(runs), w=5.5 * len(runs), h=3.8)
    for i, (run, sm) in enumerate(zip(runs, sums)):
        a = ax[0][i]
        blocks = tags(run, "diag/grad_norm/block_")
        if blocks:
            _plot_tag(a, run, blocks[-1], color="tab:blue", lw=1, label=f"last block ({blocks[-1].rsplit('/', 1)[1]})")
        _plot_tag(a, run, "diag/grad_norm/patch_embed", color="red", lw=1.2, label="first layer (patch_embed)")
        _mark_spikes(a, sm.spike_steps, label=False)
        a.set_yscale("log")
        a.set_title(run.label, fontsize=9)
        a.set_xlabel("step")
        if a.get_legend_handles_labels()[0]:
            a.legend(fontsize=7)
    fig.suptitle("gradient norm: first layer vs last block (MoCo v3 Fig. 4); red lines: spikes")
    out.append(save_png(fig, out_dir / "compare_first_vs_last.png"))
    return out


# ----------------------------------------------------------------------------------------- markdown
def _cell(text: str) -> str:
    """Markdown table cell: a literal '|' (as in |cos|) must not end the cell."""
    return str(text).replace("|", "\\|")


def _summary_rows(sm: Summary) -> List[Tuple[str, str]]:
    lg = sm.largest
    worst = max(sm.dips, key=lambda d: d["drop"]) if sm.dips else None
    return [
        (
            "steps logged",
            f"{sm.last_step}"
            + (f" of {sm.total_steps}" if sm.total_steps else "")
            + (" (in progress)" if sm.in_progress else ""),
        ),
        ("spike steps / episodes", f"{len(sm.events)} / {len(sm.episodes)}"),
        (
            "largest spike",
            f"{lg['signal']} {lg['ratio']:.1f}x median (z {_fmt(lg['z'], '.1f')}) at step {lg['step']}" if lg else "–",
        ),
        (
            "largest excursion (logged points)",
            "–"
            if not sm.excursion
            else f"{sm.excursion['signal']} {sm.excursion['ratio']:.1f}x median, z {sm.excursion['z']:.1f} at step "
            f"{sm.excursion['step']}",
        ),
        (
            "first-layer grad norm: first spike",
            "–" if sm.first_layer_first_spike is None else f"step {sm.first_layer_first_spike}",
        ),
        (
            "episodes led by the first layer",
            f"{sm.first_layer_led} of {len(sm.episodes)} ({sm.first_layer_led_alone} alone)",
        ),
        ("kNN dips", "0" if not worst else f"{len(sm.dips)} (worst -{worst['drop']:.1f} pts at step {worst['step']})"),
        ("best kNN (monitor)", _fmt(sm.knn_best)),
        ("final kNN", f"{_fmt(sm.final_knn)} ({sm.final_knn_source})"),
        ("RankMe last / early", f"{_fmt(sm.rankme_last, '.1f')} / {_fmt(sm.rankme_early, '.1f')}"),
        ("feature std last / early", f"{_fmt(sm.feature_std_last, '.4f')} / {_fmt(sm.feature_std_early, '.4f')}"),
        ("live alarms (first step)", ", ".join(f"{a['kind']} {a['step']}" for a in sm.alarms) or "none"),
        ("token |cos| (last)", _fmt(sm.token_div_last, ".3f")),
        ("rollbacks", str(sm.rollbacks)),
        ("warnings", "; ".join(sm.warnings) or "none"),
    ]


def _events_table(sm: Summary, limit: int = 40) -> List[str]:
    if not sm.events:
        return ["No spikes detected."]
    lines = ["| step | signal: value (x median, z) | action |", "|---:|---|---|"]
    for step, hits, action in sm.events[:limit]:
        sigs = "; ".join(
            f"{k}: {_fmt(_num(v.get('value')), '.3g')} ({_fmt(_num(v.get('ratio')), '.1f')}x, "
            f"z {_fmt(_num(v.get('z')), '.1f')})"
            for k, v in hits.items()
            if isinstance(v, dict)
        )
        lines.append(f"| {step} | {_cell(sigs or '(another rank)')} | {_cell(action)} |")
    if len(sm.events) > limit:
        lines.append(f"| … | {len(sm.events) - limit} more in metrics.jsonl (`spikes` fields) | |")
    return lines


def run_markdown(run: RunData, sm: Summary, pngs: List[Path]) -> str:
    md = [
        f"# Stability report: {run.label}",
        "",
        f"Run dir: `{run.path}`",
        "",
        "## Verdict",
        "",
        sm.verdict,
        "",
        "## Summary",
        "",
        "| | |",
        "|---|---|",
    ]
    md += [f"| {_cell(k)} | {_cell(v)} |" for k, v in _summary_rows(sm)]
    md += ["", "## Spikes", ""] + _events_table(sm)
    if sm.dips:
        md += ["", "## kNN dips", "", "| step | top-1 | best before | drop (pts) |", "|---:|---:|---:|---:|"]
        md += [
            f"| {d['step']} | {d['top1']:.2f} | {d['best']:.2f} (step {d['best_step']}) | {d['drop']:.2f} |"
            for d in sm.dips
        ]
    if sm.notes:
        md += ["", "Notes: " + " ".join(sm.notes)]
    md += ["", "## Plots", ""] + [f"![{p.stem}]({p.name})" for p in pngs] + [""]
    return "\n".join(md)


def write_run_report(run: RunData, out_dir: Optional[Path] = None) -> List[Path]:
    """report.md + diag_training.png + diag_representation.png in ``out_dir`` (default: the run dir)."""
    out_dir = Path(out_dir) if out_dir else run.path
    sm = summarize(run)
    pngs = plot_run(run, sm, out_dir)
    md = out_dir / "report.md"
    atomic_write_text(md, run_markdown(run, sm, pngs))
    return [md] + pngs


def _comparison_verdict(sums: List[Summary]) -> str:
    parts = []
    counts = ", ".join(
        f"{s.label}: {len(s.events)} spike step(s) in {len(s.episodes)} episode(s), "
        f"{len(s.dips)} kNN dip(s), final kNN {_fmt(s.final_knn)} %"
        for s in sums
    )
    parts.append(counts + ".")
    fewest = min(sums, key=lambda s: (len(s.events), len(s.dips)))
    most = max(sums, key=lambda s: (len(s.events), len(s.dips)))
    if len(fewest.events) == len(most.events) and len(fewest.dips) == len(most.dips):
        parts.append("The runs do not differ in spikes or dips.")
    else:
        parts.append(f"{fewest.label} was the most stable, {most.label} the least.")
    led = [s for s in sums if s.first_layer_first_spike is not None]
    if led:
        parts.append(
            "The first-layer gradient norm spiked first in "
            + ", ".join(f"{s.first_layer_led}/{len(s.episodes)} episodes of {s.label}" for s in led)
            + "."
        )
    scored = [s for s in sums if s.final_knn is not None]
    if len(scored) >= 2:
        best = max(scored, key=lambda s: s.final_knn)
        worst = min(scored, key=lambda s: s.final_knn)
        parts.append(
            f"Final kNN: best {best.label} ({best.final_knn:.2f} %), {best.final_knn - worst.final_knn:.2f} "
            f"points above {worst.label}."
        )
    if any(s.in_progress for s in sums):
        parts.append("At least one run is still in progress.")
    warn = [f"{s.label}: {'; '.join(s.warnings)}" for s in sums if s.warnings]
    if warn:
        parts.append("Warnings -- " + "; ".join(warn) + ".")
    return " ".join(parts)


def write_comparison(runs: List[RunData], out_dir) -> List[Path]:
    """Comparison of several runs: report.md + compare.png + compare_first_vs_last.png in ``out_dir``."""
    out_dir = Path(out_dir)
    names = [r.name for r in runs]
    for r in runs:  # sweeps name their runs alike (lr=2.4e-2_seed=0): name the sweep too
        if names.count(r.name) > 1:
            r.label = f"{r.path.resolve().parent.name}/{r.label}"
    sums = [summarize(r) for r in runs]
    pngs = plot_comparison(runs, sums, out_dir)
    keys = [k for k, _ in _summary_rows(sums[0])]
    md = [
        "# Stability comparison",
        "",
        "Runs: " + ", ".join(f"`{r.path}`" for r in runs),
        "",
        "## Verdict",
        "",
        _comparison_verdict(sums),
        "",
        "## Summary",
        "",
        "| | " + " | ".join(_cell(s.label) for s in sums) + " |",
        "|---|" + "---|" * len(sums),
    ]
    rows = [dict(_summary_rows(s)) for s in sums]
    md += [f"| {_cell(k)} | " + " | ".join(_cell(r[k]) for r in rows) + " |" for k in keys]
    for r, s in zip(runs, sums):
        md += ["", f"### {r.label}", "", s.verdict, ""] + _events_table(s, limit=15)
    md += ["", "## Plots", ""] + [f"![{p.stem}]({p.name})" for p in pngs] + [""]
    path = out_dir / "report.md"
    atomic_write_text(path, "\n".join(md))
    return [path] + pngs
