"""The straightforward lightly + timm MoCo v3 as a *trainer*: the bar a user compares sslvit against (issue 20).

The model and the data path are the reference of ``eval/bench/bench_step.py`` (:class:`ReferenceMoCoV3`,
:class:`ReferenceTwoViews`: timm ``VisionTransformer`` with a frozen patch projection, lightly
``MoCoProjectionHead`` MLPs and ``update_momentum``, per-sample torchvision v2 augmentation in a
``DataLoader``); this script adds what a user adds to train it: AdamW at ``lr x batch / 256`` with linear
warm-up and a cosine decay (MoCo v3's schedule), the momentum raised to 1 on a cosine (lightly's
``cosine_schedule``), bf16 autocast where the CPU has it (as sslvit's ``train.precision=auto``), and at the end
the same kNN as ``sslvit knn`` (CLS features of the Fashion-MNIST train split as the bank, test split as
queries, cosine, k 20, T 0.07, :func:`ssl_vit.evaluation.knn.knn_top1`).

Its hyper-parameters default to ``recipes/fmnist_demo.yaml``'s (vit_micro), so a side-by-side run differs only in
the toolkit. ``results.json`` in ``--out`` holds ``top1``, ``steps``, ``cpu_s`` (this process's user + sys
seconds, training and kNN), ``wall_s``, ``pairs_per_s`` and the precision.

Example::

    OMP_NUM_THREADS=1 .venv/bin/python eval/reproduce/reference_moco.py --steps 1000 --out runs/ref_1000
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "eval" / "bench"))
sys.path.insert(0, str(ROOT))
from bench_step import ReferenceMoCoV3, reference_batches  # noqa: E402
from lightly.utils.scheduler import cosine_schedule  # noqa: E402

from ssl_vit.config.schema import AugConfig  # noqa: E402
from ssl_vit.core.precision import auto_precision  # noqa: E402
from ssl_vit.data.specs import load_dataset  # noqa: E402
from ssl_vit.evaluation.knn import knn_top1  # noqa: E402


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def lr_at(step: int, total: int, warmup: int, peak: float) -> float:
    """Linear warm-up to ``peak`` over ``warmup`` steps, then a half-cosine to 0 (MoCo v3's schedule)."""
    if step < warmup:
        return peak * (step + 1) / warmup
    return peak * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


@torch.no_grad()
def cls_features(backbone, images: torch.Tensor, mean, std, dtype, batch: int = 1024) -> torch.Tensor:
    """uint8 images (N, C, H, W) -> CLS features (N, D), normalised as in training."""
    m = torch.tensor(mean).view(1, -1, 1, 1)
    s = torch.tensor(std).view(1, -1, 1, 1)
    out = []
    for i in range(0, len(images), batch):
        x = (images[i : i + batch].float() / 255 - m) / s
        with torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32):
            out.append(backbone(x).float())
    return torch.cat(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, required=True, help="training steps (the cosine schedule's length)")
    ap.add_argument("--out", required=True, help="folder for results.json")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--lr", type=float, default=3e-3, help="base lr for batch 256")
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--warmup-steps", type=int, default=234, help="1 epoch of 60k at batch 256")
    ap.add_argument("--embed-dim", type=int, default=64)
    ap.add_argument("--depth", type=int, default=4)
    ap.add_argument("--num-heads", type=int, default=2)
    ap.add_argument("--patch-size", type=int, default=7)
    ap.add_argument("--hidden", type=int, default=512, help="projector and predictor hidden width")
    ap.add_argument("--temperature", type=float, default=0.2)
    ap.add_argument("--momentum", type=float, default=0.99)
    ap.add_argument("--precision", choices=["auto", "bf16", "fp32"], default="auto")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)

    torch.manual_seed(a.seed)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    precision = auto_precision(torch.device("cpu")) if a.precision == "auto" else a.precision
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    train, test = load_dataset("fmnist", "train"), load_dataset("fmnist", "test")
    mean, std = list(train.mean), list(train.std)
    model = ReferenceMoCoV3.build(
        28, a.patch_size, 1, a.embed_dim, a.depth, a.num_heads, a.hidden, a.hidden, temperature=a.temperature
    )
    params = [p for p in model.parameters() if p.requires_grad]
    peak = a.lr * a.batch_size / 256
    opt = torch.optim.AdamW(params, lr=peak, weight_decay=a.weight_decay)
    batches = reference_batches(train.images, AugConfig(crop_scale=(0.25, 1.0)), mean, std, a.batch_size, seed=a.seed)
    t0, c0 = time.time(), cpu_seconds()
    losses = []
    for step in range(a.steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(step, a.steps, a.warmup_steps, peak)
        m = cosine_schedule(step, a.steps, a.momentum, 1.0)
        x1, x2 = next(batches)
        with torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32):
            loss = model(x1, x2, m)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if step % 100 == 0 or step == a.steps - 1:
            print(
                f"step {step}/{a.steps} loss {loss.item():.4f} lr {opt.param_groups[0]['lr']:.2e} "
                f"{(step + 1) * a.batch_size / (time.time() - t0):.0f} pairs/s",
                flush=True,
            )
    train_s = time.time() - t0
    model.eval()
    ftr = cls_features(model.backbone, train.images, mean, std, dtype)
    fte = cls_features(model.backbone, test.images, mean, std, dtype)
    top1 = knn_top1(ftr, train.targets, fte, test.targets, k=20, temperature=0.07)
    res = {
        "top1": top1,
        "steps": a.steps,
        "batch_size": a.batch_size,
        "precision": precision,
        "cpu_s": round(cpu_seconds(), 1),
        "train_cpu_s": round(cpu_seconds() - c0, 1),
        "wall_s": round(time.time() - t0, 1),
        "pairs_per_s": round(a.steps * a.batch_size / train_s, 1),
        "final_loss": sum(losses[-20:]) / len(losses[-20:]),
        "args": vars(a),
    }
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(res, indent=2) + "\n")
    print(f"top1={top1:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
