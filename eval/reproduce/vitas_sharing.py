"""ViTAS sec. 3.2 at CPU scale: prefix vs cyclic channel sharing in two superformers trained alike.

Given superformer runs trained alike (``sslvit pretrain --recipe vitas_fmnist --set model.vitas.sharing=prefix|cyclic``,
``log.every=1``), each named ``LABEL=RUN_DIR``, writes into ``--out``:

* ``channel_usage.png`` + ``summary.json['usage']`` -- how many training steps used each token-embedding
  channel (the sub-networks of steps ``0..T-1`` are replayed from ``(seed, step)``: the same sequence the
  runs trained on), and the min/max ratio, coefficient of variation;
* ``summary.json['loss']`` -- per-step loss statistics of the superformer: std of the loss around a
  20-step rolling mean over the second half of training, mean |step-to-step change|;
* ``summary.json['subnets']`` -- held-out kNN top-1 (train split: 3,000 bank / 1,000 queries, as the search)
  of the same sub-networks (largest, smallest, 10 random) with inherited weights in each superformer.

Example::

    OMP_NUM_THREADS=1 .venv/bin/python eval/reproduce/vitas_sharing.py \\
        --run prefix=runs/super_prefix --run cyclic=runs/super_cyclic \\
        --run cyclic_noshift=runs/super_cyclic_noshift --out runs/vitas_sharing
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
from pathlib import Path

import torch


def loss_stats(run: Path) -> dict:
    losses = [
        json.loads(line)["train/loss"]
        for line in (run / "metrics.jsonl").read_text().splitlines()
        if "train/loss" in line
    ]
    half = losses[len(losses) // 2 :]
    resid = [x - statistics.fmean(half[max(0, i - 10) : i + 10]) for i, x in enumerate(half)]
    return {
        "steps": len(losses),
        "final_mean_last20": statistics.fmean(losses[-20:]),
        "std_around_rolling_mean": statistics.pstdev(resid),
        "mean_abs_step_change": statistics.fmean(abs(a - b) for a, b in zip(half[1:], half)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--run", action="append", required=True, metavar="LABEL=RUN_DIR", help="a superformer run; repeat per run"
    )
    ap.add_argument("--out", required=True)
    ap.add_argument("--random-subnets", type=int, default=10)
    args = ap.parse_args()
    runs = {}
    for item in args.run:
        label, sep, path = item.partition("=")
        if not sep or not label or not path:
            ap.error(f"--run {item!r}: expected LABEL=RUN_DIR, e.g. --run cyclic=runs/super_cyclic")
        runs[label] = Path(path)
    from ssl_vit.checkpoints import load_backbone
    from ssl_vit.core.atomic import atomic_path, atomic_write_text
    from ssl_vit.search.scoring import HeldOutKnn

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_grad_enabled(False)
    summary, usage = {"settings": {}, "usage": {}, "loss": {}, "subnets": {}}, {}
    nets = None
    for mode, run in runs.items():
        loaded = load_backbone(run / "checkpoints" / "last.pt")
        sf, cfg = loaded.model.eval(), loaded.config
        summary["settings"][mode] = {
            "sharing": sf.sharing,
            "identity_shifting": sf.identity_shifting,
        }
        summary["loss"][mode] = loss_stats(run)
        steps = summary["loss"][mode]["steps"]
        use = torch.zeros(sf.embed_dim)
        for step in range(steps):
            use[sf.channels("e", sf.subnet_for_step(step, cfg.seed).embed_dim, "cpu")] += 1
        usage[mode] = use
        summary["usage"][mode] = {
            "min_over_max": (use.min() / use.max()).item(),
            "cv": (use.std() / use.mean()).item(),
            "steps": steps,
        }
        if nets is None:
            rng = random.Random(123)
            nets = [sf.space.largest(), sf.space.smallest()] + [
                sf.space.sample(rng).canonical(sf.identity_shifting) for _ in range(args.random_subnets)
            ]
        scorer = HeldOutKnn(cfg.data.dataset, cfg.data, loaded.input_spec, 3000, 1000, cfg.seed)
        res = {}
        for n in nets:
            sf.set_subnet(n)
            res[n.key()] = scorer(sf)
        summary["subnets"][mode] = {
            "top1": res,
            "mean": statistics.fmean(res.values()),
            "std": statistics.pstdev(res.values()),
        }
        print(mode, json.dumps({k: summary[k][mode] for k in ("usage", "loss")}), flush=True)
        print(
            mode, "subnets mean", summary["subnets"][mode]["mean"], "std", summary["subnets"][mode]["std"], flush=True
        )
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=1) + "\n")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.2))
    styles = (("tab:red", "-"), ("tab:blue", "-"), ("tab:green", "--"), ("tab:purple", ":"))
    for mode, (c, ls) in zip(usage, styles):  # lines, not bars: runs with equal usage would hide each other
        ax.plot(usage[mode].numpy(), color=c, linestyle=ls, drawstyle="steps-mid", linewidth=1.6, label=mode)
    ax.set_xlabel("token-embedding channel")
    ax.set_ylabel("training steps using it")
    ax.set_title(f"channel usage over {max(u['steps'] for u in summary['usage'].values())} superformer steps")
    ax.legend()
    fig.tight_layout()
    with atomic_path(out / "channel_usage.png") as tmp:
        fig.savefig(tmp, format="png", dpi=110)


if __name__ == "__main__":
    main()
