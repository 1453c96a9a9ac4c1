"""The stability study (eval/reproduce/stability.md): several `sslvit sweep` dirs, one per arm family, read back
and overlaid -- one lr-sensitivity plot of every arm, and one table of every run with the alarm check of
issue 19 (alarms within 50 steps of the onset in every run that ends at chance-level loss or RankMe <= 3;
none in a run within 2 kNN points of the best).

The sweeps themselves are ordinary `sslvit sweep` commands (listed in stability.md); this script runs nothing.

    python eval/reproduce/stability.py runs/stability_w0 runs/stability_warmup20 ... --out eval/reproduce/stability
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Dict, List, Tuple

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ssl_vit.sweep.summary import lr_sensitivity  # noqa: E402

CHANCE = 4 * 0.2 * math.log(256)  # MoCo v3 loss of uninformative outputs, tau 0.2, batch 256


def _metrics(run_dir: Path):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]


def onset_step(run_dir: Path) -> int:
    """When a failed run failed: the first step its RankMe was <= 3; a run that fails only by its loss never left
    chance level (every run starts there), so its onset is step 1."""
    for rec in _metrics(run_dir):
        v = rec.get("diag/rankme")
        if v is not None and v <= 3:
            return int(rec["step"])
    return 1


def max_steps(run_dir: Path) -> int:
    import yaml

    return int(yaml.safe_load((run_dir / "config.yaml").read_text())["train"]["max_steps"])


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sweeps", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    runs, dirs = [], {}
    for d in a.sweeps:
        s = json.loads((d / "sweep.json").read_text())
        for r in s["runs"]:
            runs.append((d.name, r))
            dirs[(d.name, r["name"])] = d / r["name"]
    steps = sorted({max_steps(p) for p in dirs.values()})
    best = max(r["knn_top1"] for _, r in runs if r["knn_top1"] is not None)

    # one arm = one sweep family (a "<name>_seed1" dir joins "<name>") x the sweep's arm; seeds pooled per lr
    pooled: Dict[Tuple[str, str], Dict[float, List[float]]] = {}
    for name, r in runs:
        if r["knn_top1"] is not None:
            fam = name.split("_seed")[0]
            pooled.setdefault((fam, r["arm"]), {}).setdefault(float(r["lr"]), []).append(r["knn_top1"])
    arm_rows = []
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    for (fam, arm), by_lr in pooled.items():
        lr = sorted(by_lr)
        mean = {x: sum(by_lr[x]) / len(by_lr[x]) for x in lr}
        seed0 = {x: by_lr[x][0] for x in lr}
        sens, sens0 = lr_sensitivity(mean), lr_sensitivity(seed0)
        best_lr = max(lr, key=lambda x: mean[x])
        arm_rows.append(
            {
                "arm": f"{fam} {arm}".replace(" all", ""),
                "lr_sensitivity": sens,
                "lr_sensitivity_seed0": sens0,
                "best_lr": best_lr,
                "best_knn": mean[best_lr],
                "knn": {f"{x:g}": by_lr[x] for x in lr},
            }
        )
        ax.plot(lr, [mean[x] for x in lr], marker="o", label=f"{arm_rows[-1]['arm']} (LR sens. {sens:.1f})")
        ax.fill_between(lr, [min(by_lr[x]) for x in lr], [max(by_lr[x]) for x in lr], alpha=0.15)
    ax.set_xscale("log")
    ax.set_xlabel("base lr (batch 256)")
    ax.set_ylabel("final kNN top-1 (%)")
    ax.set_title(f"MoCo v3, ViT-micro, Fashion-MNIST, {'/'.join(map(str, steps))} steps")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(a.out / "lr_sensitivity.png", dpi=110)

    rows = [
        "| sweep | run | kNN | loss last | RankMe min / last | max attn logit | alarms (first step) | "
        "failed? | alarm check |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    checks = {"missed": 0, "false": 0, "ok": 0}
    for name, r in runs:
        if r["knn_top1"] is None:
            continue
        failed = (r["loss_last"] is not None and r["loss_last"] >= 0.93 * CHANCE) or (
            r["rankme_last"] is not None and r["rankme_last"] <= 3
        )  # "ends at" (issue 19)
        healthy = r["knn_top1"] >= best - 2
        first = r["first_alarm_step"]
        onset = onset_step(dirs[(name, r["name"])]) if failed else None
        if failed:
            verdict = (
                f"caught ({first - onset:+d} steps from the onset at {onset})"
                if first is not None and first <= onset + 50
                else f"MISSED (onset {onset})"
            )
        elif healthy:
            verdict = "silent" if not r["alarms_total"] else "FALSE ALARM"
        else:
            verdict = "–"
        checks["missed" if verdict.startswith("MISSED") else "false" if verdict == "FALSE ALARM" else "ok"] += 1
        alarms = ", ".join(f"{k} {v}" for k, v in (r["alarms"] or {}).items()) or "none"
        rows.append(
            f"| {name} | {r['name']} | {r['knn_top1']:.2f} | {r['loss_last']:.3f} | "
            f"{r['rankme_min']:.2f} / {r['rankme_last']:.2f} | {r['attn_logit_max']:.1f} | {alarms}"
            f"{f' ({first})' if first is not None else ''} | {'yes' if failed else 'no'} | {verdict} |"
        )
    summary = {"best_knn": best, "checks": checks, "arms": arm_rows}
    (a.out / "runs.md").write_text("\n".join(rows) + "\n")
    (a.out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    print("\n".join(rows))
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
