"""Issue 24, part 2: the tables of ``eval/reproduce/vitas_long.sh`` (superformers, search, retraining).

Reads ``--sharing`` (``vitas_sharing.py``'s summary.json over the prefix / cyclic / cyclic_noshift superformers)
and the retrained runs ``--runs/retrain_<arm>_s<seed>/`` (``results.json`` of the final kNN on the full test
split, ``config.yaml`` for the backbone, whose FLOPs are counted with :func:`ssl_vit.models.flops.count_gflops`),
and writes ``--out/results.md`` + ``results.json``: the superformer table (loss statistics, channel usage,
inherited sub-network kNN) and the retraining table (mean and range over seeds per arm).

Example::

    .venv/bin/python eval/reproduce/vitas_long_report.py --runs runs/vitas_long \\
        --sharing eval/reproduce/vitas_long/sharing/summary.json --out eval/reproduce/vitas_long
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
from pathlib import Path

from ssl_vit.config import load_config
from ssl_vit.core.atomic import atomic_write_text
from ssl_vit.models.flops import count_gflops
from ssl_vit.models.registry import create_backbone

RUN_NAME = re.compile(r"^retrain_(?P<arm>.+)_s(?P<seed>\d+)$")


def superformer_table(summary: dict) -> str:
    rows = [
        "| superformer | sharing | identity shifting | loss, last 20 steps | loss std around a 20-step rolling mean "
        "| mean abs. step change | channel usage min/max | usage CV | inherited sub-network kNN, mean ± std |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for label, setting in summary["settings"].items():
        loss, use, sub = summary["loss"][label], summary["usage"][label], summary["subnets"][label]
        rows.append(
            f"| {label} | {setting['sharing']} | {'on' if setting['identity_shifting'] else 'off'} "
            f"| {loss['final_mean_last20']:.3f} | {loss['std_around_rolling_mean']:.4f} "
            f"| {loss['mean_abs_step_change']:.4f} | {use['min_over_max']:.2f} | {use['cv']:.3f} "
            f"| {sub['mean']:.2f} ± {sub['std']:.2f} % |"
        )
    return "\n".join(rows)


def retrain_rows(runs: Path) -> list:
    arms: dict = {}
    for d in sorted(runs.iterdir()):
        m = RUN_NAME.match(d.name)
        if not m or not (d / "results.json").is_file():
            continue
        arm = arms.setdefault(m["arm"], {"seeds": {}})
        arm["seeds"][int(m["seed"])] = json.loads((d / "results.json").read_text())["top1"]
        if "gflops" not in arm:
            cfg = load_config(str(d / "config.yaml"))
            backbone = create_backbone(cfg.model)
            arm["gflops"] = count_gflops(backbone, img_size=cfg.model.img_size, in_chans=cfg.model.in_chans)
            arm["model"] = f"{cfg.model.embed_dim}-d, " + (
                f"blocks {cfg.model.vitas.blocks} (heads:MLP ratio)"
                if cfg.model.name == "vitas_subnet"
                else f"{cfg.model.depth} blocks x {cfg.model.num_heads} heads, MLP {cfg.model.mlp_ratio:g}"
            )
            arm["steps"] = cfg.train.max_steps
    out = []
    for name, arm in arms.items():
        vals = list(arm["seeds"].values())
        out.append(
            {
                "arm": name,
                "model": arm["model"],
                "gflops": arm["gflops"],
                "steps": arm["steps"],
                "seeds": arm["seeds"],
                "mean": statistics.fmean(vals),
                "min": min(vals),
                "max": max(vals),
            }
        )
    return out


def retrain_table(rows: list) -> str:
    lines = [
        "| arm | backbone | GFLOPs | steps | seeds | kNN top-1 per seed | mean | range |",
        "|---|---|---:|---:|---:|---|---:|---:|",
    ]
    for r in rows:
        per_seed = ", ".join(f"{v:.2f}" for _, v in sorted(r["seeds"].items()))
        lines.append(
            f"| {r['arm']} | {r['model']} | {r['gflops']:.5f} | {r['steps']} | {len(r['seeds'])} | {per_seed} "
            f"| **{r['mean']:.2f}** | {r['min']:.2f}–{r['max']:.2f} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", required=True, help="the directory of vitas_long.sh's runs")
    ap.add_argument("--sharing", required=True, help="vitas_sharing.py's summary.json")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    summary = json.loads(Path(args.sharing).read_text())
    rows = retrain_rows(Path(args.runs))
    text = (
        "# ViTAS, 3,000-step superformers: sharing, identity shifting, search and retraining\n\n"
        "Written by `eval/reproduce/vitas_long_report.py` from `eval/reproduce/vitas_long.sh`'s runs.\n\n"
        "## Superformers (3,000 steps x 128; loss statistics over the second half)\n\n"
        + superformer_table(summary)
        + "\n\n## Retrained from scratch (MoCo v3, batch 128; kNN k = 20 on the full test split, bank 10,000)\n\n"
        + retrain_table(rows)
        + "\n"
    )
    atomic_write_text(out / "results.md", text)
    atomic_write_text(out / "results.json", json.dumps({"retrain": rows}, indent=1) + "\n")
    print(text)


if __name__ == "__main__":
    main()
