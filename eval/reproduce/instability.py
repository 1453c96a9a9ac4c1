"""Reproduce the MoCo v3 instability study at CPU scale: trainable vs frozen random patch projection.

Paper: Chen, Xie, He 2021, "An Empirical Study of Training Self-Supervised Vision Transformers",
sec. 4.1 (Fig. 4: the first layer's gradient norm spikes first, then loss / accuracy dip) and sec. 4.2
(freezing the random patch projection removes most of it). Here: the same seed and recipe
(``recipes/instability_fmnist.yaml``: Fashion-MNIST, ViT-micro, base lr 1e-2 = ~7x the tuned
recipe, 20 warm-up steps, diagnostics every step), once with ``model.patch_embed.frozen=false`` and
once with ``true``, then ``sslvit diagnose`` compares them.

Outputs: the runs under ``--runs`` (default ``runs/instability``), and in ``--out`` (default
``eval/reproduce/instability/``) the comparison (``report.md``, ``compare.png``,
``compare_first_vs_last.png``), each arm's ``<arm>_diag_training.png`` and ``summary.json`` (spike
counts, first first-layer spike, final kNN, CPU seconds used).

Example (both arms in parallel, one thread each, ~11 CPU-minutes on a 2-core laptop)::

    nice -n 5 .venv/bin/python eval/reproduce/instability.py
    nice -n 5 .venv/bin/python eval/reproduce/instability.py --set train.max_steps=300 --set optim.lr=5e-3
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from arms import ROOT, run_arms, sslvit_cmd  # noqa: E402

ARMS = {"trainable": "false", "frozen": "true"}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--recipe", default="instability_fmnist")
    ap.add_argument("--runs", default=str(ROOT / "runs" / "instability"), help="where the two runs go")
    ap.add_argument(
        "--out",
        default=str(ROOT / "eval" / "reproduce" / "instability"),
        help="where the comparison report and plots go",
    )
    ap.add_argument("--set", dest="sets", action="append", default=[], help="extra --set for both arms")
    ap.add_argument("--threads", type=int, default=1, help="CPU threads per run")
    ap.add_argument("--sequential", action="store_true", help="run the arms one after the other")
    ap.add_argument("--reuse", action="store_true", help="only re-run sslvit diagnose on existing runs")
    a = ap.parse_args(argv)

    runs, out = Path(a.runs), Path(a.out)
    env = {**os.environ, "TQDM_DISABLE": "1", "PYTHONPATH": str(ROOT)}
    t0 = time.time()
    if not a.reuse:
        cmds = {
            arm: sslvit_cmd(
                "pretrain",
                "--recipe",
                a.recipe,
                "--output-dir",
                str(runs / arm),
                sets=[
                    f"model.patch_embed.frozen={frozen}",
                    f"train.threads={a.threads}",
                    "log.progress=false",
                    *a.sets,
                ],
            )
            for arm, frozen in ARMS.items()
        }
        done = run_arms(cmds, runs, jobs=1 if a.sequential else len(cmds), threads=a.threads)
        if any(r["exit"] for r in done.values()):
            return 1
    dirs = [os.path.relpath(runs / arm, ROOT) for arm in ARMS]  # relative paths in the committed report
    r = subprocess.run(sslvit_cmd("diagnose", *dirs, "--output-dir", os.path.relpath(out, ROOT)), cwd=ROOT, env=env)
    if r.returncode != 0:
        return r.returncode
    for arm in ARMS:
        shutil.copyfile(runs / arm / "diag_training.png", out / f"{arm}_diag_training.png")

    sys.path.insert(0, str(ROOT))
    from ssl_vit.diagnostics.report import read_run, summarize

    cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    summary = {
        "recipe": a.recipe,
        "sets": a.sets,
        "runs": os.path.relpath(runs, ROOT),
        "cpu_seconds": round(cpu.ru_utime + cpu.ru_stime, 1),  # training + diagnose, all children
        "wall_seconds": round(time.time() - t0, 1),
        "arms": {},
    }
    old = out / "summary.json"
    if a.reuse and old.exists():  # keep the cost of the run that made the data
        prev = json.loads(old.read_text())
        summary.update({k: prev[k] for k in ("cpu_seconds", "wall_seconds", "sets") if k in prev})
    for arm in ARMS:
        sm = summarize(read_run(runs / arm))
        summary["arms"][arm] = {
            "spike_steps": len(sm.events),
            "episodes": len(sm.episodes),
            "spikes_by_signal": _count_signals(sm.events),
            "first_layer_first_spike": sm.first_layer_first_spike,
            "episodes_led_by_first_layer": sm.first_layer_led,
            "largest": sm.largest,
            "knn_dips": len(sm.dips),
            "worst_dip": max((d["drop"] for d in sm.dips), default=0.0),
            "best_knn_monitor": sm.knn_best,
            "final_knn": sm.final_knn,
            "final_knn_source": sm.final_knn_source,
            "rankme_last": sm.rankme_last,
            "rankme_early": sm.rankme_early,
            "warnings": sm.warnings,
        }
    old.write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps(summary, indent=1))
    return 0


def _count_signals(events) -> dict:
    counts: dict = {}
    for _, hits, _ in events:
        for sig in hits:
            counts[sig] = counts.get(sig, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


if __name__ == "__main__":
    sys.exit(main())
