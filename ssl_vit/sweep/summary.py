"""Summarise a sweep from its files only: one row per run, the LR sensitivity per arm, sweep.json / sweep.md.

Per run (its ``metrics.jsonl``, ``results.json`` and ``sweep_run.json``):

* ``knn_top1``: the final kNN top-1 of ``pretrain`` (``results.json``; else the last ``eval/knn_top1``
  record), on the full test split unless the sweep's ``--set eval.max_test`` said otherwise;
* ``spikes``: steps with ``diag/spike`` = 1 (or a ``spikes`` field); ``knn_dips``: records with a
  ``knn_dip`` field (the online kNN monitor's dips); ``rankme_min`` / ``rankme_last`` of ``diag/rankme``;
* ``alarms``: ``{kind: count}`` of ``"event": "alarm"`` records (one per onset; without any, the onsets
  of ``diag/alarm/<kind>``, 1 while an alarm holds) and ``first_alarm_step`` (``{}``: none fired);
  ``attn_logit_max``: the max of ``diag/attn_logit_max/block_<i>`` over blocks and steps. Runs that log
  neither show ``–`` (None in JSON);
* ``cpu_s`` / ``wall_s``: summed over the run's attempts (``os.wait4`` of each subprocess).

LR sensitivity (Wortsman et al. 2023, "Small-scale proxies for large-scale Transformer training
instabilities", sec. 3.2, with kNN top-1 in place of the loss): per arm (the grid values other than the lr
key), with ``knn(lr)`` the mean over seeds::

    sensitivity = mean over lr of ( max_lr' knn(lr') - knn(lr) )        (percentage points; 0 = flat)

over the lrs that have a final kNN (a failed or unfinished lr is left out, and the row says how many
lrs count: ``n_lr`` of ``n_lr_grid``). The paper caps a diverged run at the loss at initialisation; here a
run that fails outright has no kNN, so its lr is left out (which understates the sensitivity).
"""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Dict, List, Optional

from ssl_vit.core.atomic import atomic_write_text
from ssl_vit.errors import SslvitError
from ssl_vit.sweep.grid import SweepSpec, short_names
from ssl_vit.sweep.plot import plot_lr_sensitivity
from ssl_vit.sweep.records import RUN_LOG, RUN_RECORD, load_spec_file, run_state, sweep_command

SUMMARY_JSON, SUMMARY_MD, PLOT = "sweep.json", "sweep.md", "lr_sensitivity.png"


def _num(v) -> Optional[float]:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    v = float(v)
    return v if math.isfinite(v) else None


def read_records(path: Path) -> List[Dict[str, Any]]:
    """The JSON objects of a metrics.jsonl (corrupt or cut lines skipped; [] when absent)."""
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return []
    out = []
    for line in text.splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict):
            out.append(rec)
    return out


def _read_json(path: Path) -> Dict[str, Any]:
    try:
        d = json.loads(Path(path).read_text())
        return d if isinstance(d, dict) else {}
    except (OSError, ValueError):
        return {}


def run_metrics(run_dir: Path) -> Dict[str, Any]:
    """What one run logged, reduced to the sweep table's columns (see the module doc)."""
    run_dir = Path(run_dir)
    recs = read_records(run_dir / "metrics.jsonl")
    res = _read_json(run_dir / "results.json")
    steps = [int(r["step"]) for r in recs if isinstance(r.get("step"), int)]
    spike_steps = sorted(
        {int(r.get("step", 0)) for r in recs if _num(r.get("diag/spike")) == 1.0 or isinstance(r.get("spikes"), dict)}
    )
    dips = sum(1 for r in recs if isinstance(r.get("knn_dip"), dict))
    rankme = [v for v in (_num(r.get("diag/rankme")) for r in recs) if v is not None]
    monitor = [v for v in (_num(r.get("diag/knn_top1")) for r in recs) if v is not None]
    evals = [v for v in (_num(r.get("eval/knn_top1")) for r in recs) if v is not None]
    losses = [v for v in (_num(r.get("train/loss")) for r in recs) if v is not None]
    # alarms: event records first; tags only when no event record exists
    alarm_events = [r for r in recs if r.get("event") == "alarm"]
    kinds: Counter = Counter()
    first_alarm = None
    if alarm_events:
        for r in alarm_events:
            kinds[str(r.get("alarm", "?"))] += 1
            s = r.get("step")
            if isinstance(s, int) and (first_alarm is None or s < first_alarm):
                first_alarm = s
    tag_seen = False
    if not alarm_events:  # diag/alarm/<kind>: 1 while an alarm holds -> count its onsets
        holding: Dict[str, bool] = {}
        for r in sorted(recs, key=lambda r: r.get("step", 0) if isinstance(r.get("step"), int) else 0):
            for k, v in r.items():
                if k.startswith("diag/alarm/"):
                    tag_seen = True
                    kind, on = k[len("diag/alarm/") :], bool(_num(v))
                    if on and not holding.get(kind):
                        kinds[kind] += 1
                        s = r.get("step")
                        if isinstance(s, int) and (first_alarm is None or s < first_alarm):
                            first_alarm = s
                    holding[kind] = on
    alarm_known = bool(alarm_events) or tag_seen
    attn = [
        v
        for r in recs
        for k, x in r.items()
        if k.startswith("diag/attn_logit_max/")
        for v in [_num(x)]
        if v is not None
    ]
    knn, src = _num(res.get("top1")), "results.json"
    if knn is None and evals:
        knn, src = evals[-1], "metrics.jsonl eval/knn_top1"
    if knn is None:
        src = None
    return {
        "knn_top1": knn,
        "knn_source": src,
        "knn_n_test": res.get("n_test"),
        "knn_monitor_last": monitor[-1] if monitor else None,
        "last_step": max(steps) if steps else None,
        "loss_last": losses[-1] if losses else None,
        "spikes": len(spike_steps),
        "first_spike_step": spike_steps[0] if spike_steps else None,
        "knn_dips": dips,
        "alarms": dict(sorted(kinds.items())) if alarm_known else None,
        "alarms_total": sum(kinds.values()) if alarm_known else None,
        "first_alarm_step": first_alarm,
        "rankme_min": min(rankme) if rankme else None,
        "rankme_last": rankme[-1] if rankme else None,
        "attn_logit_max": max(attn) if attn else None,
    }


def lr_sensitivity(knn_by_lr: Dict[float, Optional[float]]) -> Optional[float]:
    """mean over lr of (max knn - knn(lr)), over the lrs with a value; None when none has one."""
    vals = [v for v in knn_by_lr.values() if v is not None]
    if not vals:
        return None
    best = max(vals)
    return sum(best - v for v in vals) / len(vals)


def _status(run_dir: Path) -> Dict[str, Any]:
    rec = _read_json(run_dir / RUN_RECORD)
    state = run_state(run_dir)
    if state in ("partial", "started"):  # not finished, not running: stopped by Ctrl-C, or killed
        state = "interrupted" if rec.get("status") == "interrupted" else "partial"
    return {
        "status": state,
        "exit": rec.get("exit"),
        "last_line": rec.get("last_line") if state == "failed" else None,
        "cpu_s": _num(rec.get("cpu_s")),
        "wall_s": _num(rec.get("wall_s")),
        "attempts": len(rec.get("attempts", [])),
    }


def summarize(out: Path) -> Dict[str, Any]:
    """Everything sweep.json holds, from the files of sweep dir ``out``."""

    out = Path(out)
    stored = load_spec_file(out)
    if stored is None:
        raise SslvitError(f"'{out}' holds no sweep (sweep_spec.json missing); pass the --output-dir of a sweep")
    spec = SweepSpec.from_dict(stored)
    lr_key = stored.get("lr_key")
    short = short_names(spec.keys)
    rows = []
    for i, p in enumerate(stored["points"]):
        rd = out / p["name"]
        values = p["values"]
        arm = " ".join(f"{short[k]}={values[k]}" for k in spec.keys if k != lr_key) or "all"
        row = {
            "name": p["name"],
            "index": i,
            "values": values,
            "resolved": p.get("resolved", {}),
            "seed": p["seed"],
            "arm": arm,
            "lr": _num((p.get("resolved") or {}).get(lr_key)) if lr_key else None,
            **_status(rd),
            **run_metrics(rd),
            "log": str(rd / RUN_LOG),
            "run_dir": str(rd),
        }
        rows.append(row)
    arms: Dict[str, Dict[str, Any]] = {}
    by_arm = defaultdict(list)
    for r in rows:
        by_arm[r["arm"]].append(r)
    for arm, rs in by_arm.items():
        per_lr: Dict[float, List[float]] = defaultdict(list)
        lrs = sorted({r["lr"] for r in rs if r["lr"] is not None})
        for r in rs:
            if r["lr"] is not None and r["knn_top1"] is not None and r["status"] == "ok":
                per_lr[r["lr"]].append(r["knn_top1"])
        mean = {lr: (sum(per_lr[lr]) / len(per_lr[lr]) if per_lr[lr] else None) for lr in lrs}
        have = {lr: v for lr, v in mean.items() if v is not None}
        best_lr = max(have, key=lambda k: have[k]) if have else None
        arms[arm] = {
            "arm": arm,
            "lr_sensitivity": lr_sensitivity(mean) if lr_key else None,
            "n_lr": len(have),
            "n_lr_grid": len(lrs),
            "best_lr": best_lr,
            "best_knn": have.get(best_lr) if best_lr is not None else None,
            "curve": [
                {
                    "lr": lr,
                    "knn_mean": mean[lr],
                    "knn_min": min(per_lr[lr]) if per_lr[lr] else None,
                    "knn_max": max(per_lr[lr]) if per_lr[lr] else None,
                    "n_seeds": len(per_lr[lr]),
                }
                for lr in lrs
            ],
        }
    counts = Counter(r["status"] for r in rows)
    return {
        "spec": spec.to_dict(),
        "command_line": sweep_command(spec, out),
        "lr_key": lr_key,
        "n_runs": len(rows),
        "status_counts": dict(sorted(counts.items())),
        "cpu_s_total": round(sum(r["cpu_s"] or 0.0 for r in rows), 1),
        "tensorboard": f"tensorboard --logdir {out}",
        "arms": list(arms.values()),
        "runs": rows,
    }


# ----------------------------------------------------------------------------------------- files
def _f(v, spec: str = ".2f") -> str:
    return "–" if v is None else format(v, spec)


def _g(v) -> str:
    return "–" if v is None else f"{v:g}"


def markdown(s: Dict[str, Any]) -> str:
    spec = s["spec"]
    keys = [a["key"] for a in spec["grid"]]
    short = short_names(keys)
    counts = ", ".join(f"{n} {k}" for k, n in s["status_counts"].items())
    lines = [
        f"# sweep: {spec['recipe']}",
        "",
        f"`{s['command_line']}`",
        "",
        f"{s['n_runs']} runs ({counts}); {s['cpu_s_total']:.0f} CPU-s in all. kNN: the final kNN top-1 (%) of "
        f"each pretrain (k-NN on the full test split unless --set eval.max_test says otherwise). "
        f"Curves: `{s['tensorboard']}`.",
        "",
    ]
    if s["lr_key"]:
        lines += [
            f"## LR sensitivity (Wortsman et al. 2023) over {s['lr_key']}",
            "",
            "Mean over the lr grid of (best kNN of the arm − kNN at that lr), kNN averaged over seeds; "
            "percentage points, lower is more robust.",
            "",
            "| arm | LR sensitivity | best lr | best kNN | lrs counted |",
            "|---|---|---|---|---|",
        ]
        for a in s["arms"]:
            lines.append(
                f"| {a['arm']} | {_f(a['lr_sensitivity'])} | {_g(a['best_lr'])} | {_f(a['best_knn'])} | "
                f"{a['n_lr']} of {a['n_lr_grid']} |"
            )
        lines += ["", f"Plot: `{PLOT}`.", ""]
    else:
        lines += ["No numeric grid key: no LR sensitivity or plot.", ""]
    head = [
        "run",
        *[short[k] for k in keys],
        "seed",
        "kNN top-1",
        "spikes",
        "kNN dips",
        "alarms",
        "first alarm",
        "RankMe min",
        "RankMe last",
        "max attn logit",
        "CPU s",
        "wall s",
        "status",
    ]
    lines += ["## Runs", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in s["runs"]:
        alarms = "–" if r["alarms"] is None else ", ".join(f"{k} {n}" for k, n in r["alarms"].items()) or "0"
        status = r["status"] + (f" (exit {r['exit']})" if r["status"] == "failed" else "")
        cells = [
            r["name"],
            *[str(r["values"][k]) for k in keys],
            str(r["seed"]),
            _f(r["knn_top1"]),
            str(r["spikes"]),
            str(r["knn_dips"]),
            alarms,
            _g(r["first_alarm_step"]),
            _f(r["rankme_min"]),
            _f(r["rankme_last"]),
            _f(r["attn_logit_max"]),
            _f(r["cpu_s"], ".1f"),
            _f(r["wall_s"], ".1f"),
            status,
        ]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    failed = [r for r in s["runs"] if r["status"] == "failed"]
    if failed:
        lines += ["", "## Failed runs", ""]
        for r in failed:
            lines.append(f"- {r['name']}: exit {r['exit']}, last line `{r['last_line']}`; log `{r['log']}`")
    return "\n".join(lines) + "\n"


def write_summary(out: Path, plot: bool = True) -> Dict[str, Any]:
    """Write sweep.json, sweep.md (and lr_sensitivity.png); return the summary."""
    out = Path(out)
    s = summarize(out)
    if plot and s["lr_key"]:
        s["plot"] = str(plot_lr_sensitivity(s, out / PLOT))
    elif (out / PLOT).is_file():
        s["plot"] = str(out / PLOT)
    atomic_write_text(out / SUMMARY_JSON, json.dumps(s, indent=2) + "\n")
    atomic_write_text(out / SUMMARY_MD, markdown(s))
    return s
