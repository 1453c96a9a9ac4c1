"""Conv-stem ablation at CPU scale: patchify vs conv vs scaled_relu vs its no-BN / no-ReLU ablations,
at a normal and a high learning rate.

Paper: Wang et al. 2022, "Scaled ReLU Matters for Training Vision Transformers" (AAAI), sec. 4: a conv
stem with scaled ReLU (BN's affine scaling + ReLU) makes ViT training robust to the lr / warm-up, raises
patch-token diversity and peak accuracy; conv without the scaled ReLU does not. MoCo v3 (Chen et al.
2021) uses the related ``conv`` stem. Here: ``recipes/stems_fmnist.yaml`` (Fashion-MNIST, ViT-micro,
7x7 patches, batch 128, 200 steps, everything trained), once per stem and lr (same seed), then per run:
final kNN top-1 (``eval.max_train`` / ``max_test`` caps of the recipe), final-token diversity
(``diag/token_diversity``: mean pairwise |cos| of the patch tokens after the last block, lower = more
diverse) and the stem output's, the number of spike steps from the run's diagnostics (``metrics.jsonl``,
``ssl_vit.diagnostics.report.summarize``), and the loss curve.

Outputs in ``--out`` (default ``eval/reproduce/stems/``): ``stems.md`` (table + command), ``stems.png``
(loss curves per lr, token diversity), ``summary.json``. Runs go to ``--runs`` (default ``runs/stems``).

Example (two runs at a time, one thread each)::

    OMP_NUM_THREADS=1 nohup .venv/bin/python eval/reproduce/stems.py --jobs 2 > /tmp/stems.log 2>&1 &
    .venv/bin/python eval/reproduce/stems.py --reuse          # only rebuild table + plot from the runs
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from arms import ROOT, arm_record, run_arms, sslvit_cmd  # noqa: E402

STEMS = ["patchify", "conv", "scaled_relu", "scaled_relu_no_bn", "scaled_relu_no_relu"]
LRS = {"normal": 1.5e-3, "high": 1e-2}


def run_all(a, runs: Path) -> int:
    order = ["patchify", "scaled_relu", "conv", "scaled_relu_no_bn", "scaled_relu_no_relu"]  # key arms first
    cmds = {
        f"{stem}-{lr_name}": sslvit_cmd(
            "pretrain",
            "--recipe",
            a.recipe,
            "--output-dir",
            str(runs / f"{stem}-{lr_name}"),
            sets=[f"model.stem={stem}", f"optim.lr={LRS[lr_name]}", f"train.threads={a.threads}", *a.sets],
        )
        for stem in order
        for lr_name in LRS
        if stem in a.stems.split(",") and not (a.skip_done and _finished(runs / f"{stem}-{lr_name}"))
    }
    return sum(r["exit"] != 0 for r in run_arms(cmds, runs, jobs=a.jobs, threads=a.threads).values())


def _finished(d: Path) -> bool:
    """The run wrote its final kNN record (the last thing sslvit pretrain logs)."""
    m = d / "metrics.jsonl"
    return m.is_file() and '"eval/knn_top1"' in m.read_text()


def collect(runs: Path):
    sys.path.insert(0, str(ROOT))
    from ssl_vit.diagnostics.report import read_run, series, summarize

    rows, curves = [], {}
    for lr_name in LRS:
        for stem in STEMS:
            d = runs / f"{stem}-{lr_name}"
            if not (d / "metrics.jsonl").is_file():
                continue
            run = read_run(d)
            sm = summarize(run)
            ls, lv = series(run, "train/loss")
            ts, tv = series(run, "diag/token_diversity")
            _, pv = series(run, "diag/token_diversity/patch_embed")
            curves[(stem, lr_name)] = {"loss": (ls.tolist(), lv.tolist()), "tokdiv": (ts.tolist(), tv.tolist())}
            tail = lv[-30:] if len(lv) else lv
            rows.append(
                {
                    "stem": stem,
                    "lr": lr_name,
                    "base_lr": float(run.cfg.optim.lr),
                    "depth": int(_depth(run.cfg)),
                    "steps": int(sm.last_step),
                    "knn_top1": sm.final_knn,
                    "knn_source": sm.final_knn_source,
                    "token_div_final": float(tv[-1]) if len(tv) else None,
                    "token_div_stem": float(pv[-1]) if len(pv) else None,
                    "spike_steps": len(sm.events),
                    "spike_episodes": len(sm.episodes),
                    "loss_final": float(tail.mean()) if len(tail) else None,
                    "loss_max_after_warmup": float(lv[ls > 15].max()) if (ls > 15).any() else None,
                    "nonfinite": sm.nonfinite,
                    "cpu_seconds": _cpu(d),
                }
            )
    return rows, curves


def _cpu(d: Path):
    return arm_record(d).get("cpu_s")


def _depth(cfg) -> int:
    from ssl_vit.models import resolve_model_config

    return resolve_model_config(cfg.model).depth


def _f(v, spec=".2f"):
    return "–" if v is None else format(v, spec)


def write_outputs(rows, curves, out: Path, cmdline: str, cpu_s: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    lines = [
        "# Conv-stem ablation (Fashion-MNIST, ViT-micro p7, batch 128, 200 steps, all layers trained)",
        "",
        f"Command: `{cmdline}`  ",
        f"CPU time: {cpu_s / 60:.1f} min for all runs together (each run's user + system time)",
        "",
        "| lr (base) | stem | blocks | kNN top-1 (%) | token \\|cos\\| final | token \\|cos\\| stem | "
        "spike steps | loss (last 30) | max loss after warm-up |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['lr']} ({r['base_lr']:g}) | {r['stem']} | {r['depth']} | {_f(r['knn_top1'])} | "
            f"{_f(r['token_div_final'], '.3f')} | {_f(r['token_div_stem'], '.3f')} | {r['spike_steps']} | "
            f"{_f(r['loss_final'], '.3f')} | {_f(r['loss_max_after_warmup'], '.3f')} |"
        )
    src = {r["knn_source"] for r in rows}
    lines += [
        "",
        f"kNN: k=20, T=0.07, {', '.join(sorted(src))}; memory bank / queries capped by the recipe's "
        "eval.max_train=10000 / eval.max_test=2000 (Fashion-MNIST train / test).",
        "Token |cos|: mean pairwise |cosine| of one image's patch tokens (16 probe images; lower = more "
        "diverse), after the final norm and at the stem output, at the last diagnostics step.",
        "Spike steps: steps where the robust z-score detector fired on the loss or a gradient norm "
        "(diagnostics every 2 steps).",
    ]
    from ssl_vit.core.atomic import atomic_write_text

    atomic_write_text(out / "stems.md", "\n".join(lines) + "\n")

    fig, ax = plt.subplots(1, 3, figsize=(15, 4.2))
    colors = dict(zip(STEMS, ["black", "tab:blue", "tab:red", "tab:orange", "tab:green"]))
    for j, lr_name in enumerate(LRS):
        for stem in STEMS:
            c = curves.get((stem, lr_name))
            if c:
                xs, ys = c["loss"]
                ax[j].plot(xs, _smooth(ys), color=colors[stem], lw=1.2, label=stem)
        ax[j].set_title(f"train loss, {lr_name} lr ({LRS[lr_name]:g}), smoothed over 10 steps")
        ax[j].set_xlabel("step")
        ax[j].legend(fontsize=8)
    for stem in STEMS:
        for lr_name, ls in (("normal", "-"), ("high", "--")):
            c = curves.get((stem, lr_name))
            if c:
                ax[2].plot(*c["tokdiv"], color=colors[stem], ls=ls, lw=1.1, label=f"{stem} ({lr_name})")
    ax[2].set_title("final-token |cos| (lower = more diverse)")
    ax[2].set_xlabel("step")
    ax[2].legend(fontsize=6, ncol=2)
    fig.tight_layout()
    from ssl_vit.diagnostics.report import save_png  # the reports' small-PNG writer (palette, atomic)

    save_png(fig, out / "stems.png")
    plt.close(fig)


def _smooth(ys, k: int = 10):
    out, acc = [], []
    for y in ys:
        acc.append(y)
        acc = acc[-k:]
        out.append(sum(acc) / len(acc))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--recipe", default="stems_fmnist")
    ap.add_argument("--runs", default=str(ROOT / "runs" / "stems"))
    ap.add_argument("--out", default=str(ROOT / "eval" / "reproduce" / "stems"))
    ap.add_argument("--set", dest="sets", action="append", default=[], help="extra --set for every run")
    ap.add_argument("--threads", type=int, default=1, help="CPU threads per run")
    ap.add_argument("--jobs", type=int, default=2, help="runs at a time")
    ap.add_argument("--reuse", action="store_true", help="only rebuild the table and plot from existing runs")
    ap.add_argument("--stems", default=",".join(STEMS), help="comma-separated subset of the stems to run")
    ap.add_argument("--skip-done", action="store_true", help="keep finished runs, (re)run the others")
    a = ap.parse_args(argv)
    runs, out = Path(a.runs), Path(a.out)
    t0 = time.time()
    summary_path = out / "summary.json"
    if not a.reuse:
        failed = run_all(a, runs)
        if failed:
            print(f"{failed} run(s) failed; see the logs in {runs}", file=sys.stderr)
        cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu_s, wall_s = cpu.ru_utime + cpu.ru_stime, time.time() - t0
    else:
        prev = json.loads(summary_path.read_text()) if summary_path.exists() else {}
        cpu_s, wall_s = prev.get("cpu_seconds", 0.0), prev.get("wall_seconds", 0.0)
    rows, curves = collect(runs)
    per_run = [r["cpu_seconds"] for r in rows if r["cpu_seconds"] is not None]
    if per_run:  # each run's own CPU time (also when runs came from several calls)
        cpu_s = sum(per_run)
    cmdline = "OMP_NUM_THREADS=1 .venv/bin/python eval/reproduce/stems.py" + "".join(f" --set {s}" for s in a.sets)
    write_outputs(rows, curves, out, cmdline, cpu_s)
    summary = {
        "recipe": a.recipe,
        "sets": a.sets,
        "runs": os.path.relpath(runs, ROOT),
        "lrs": LRS,
        "cpu_seconds": round(cpu_s, 1),
        "wall_seconds": round(wall_s, 1),
        "rows": rows,
    }
    from ssl_vit.core.atomic import atomic_write_text

    atomic_write_text(summary_path, json.dumps(summary, indent=1) + "\n")
    print((out / "stems.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
