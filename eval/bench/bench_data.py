"""Data-path headroom: two-view augmentation pairs/s against the training step's pairs/s.

* **batched** -- sslvit's in-memory path: ``TwoViewAugment`` on whole uint8 batches (what the trainer
  runs for Fashion-MNIST / CIFAR / STL-10);
* **per-sample** -- torchvision v2 per image in a ``DataLoader`` (``num_workers=0``), the reference
  data path of ``bench_step.py`` (and what a user writes first);
* **step** -- the demo model's full pretraining step (``bench_step.SslvitStep``), pairs/s.

headroom = batched pairs/s / step pairs/s; the data path must never be the bottleneck (goal >= 3x).
Interleaved, medians, same batch size.

Usage::

    .venv/bin/python eval/bench/bench_data.py            # ~1 min
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TQDM_DISABLE", "1")

import torch  # noqa: E402


def _bench_step():
    spec = importlib.util.spec_from_file_location("bench_step", Path(__file__).with_name("bench_step.py"))
    mod = importlib.util.module_from_spec(spec)
    sys.modules["bench_step"] = mod
    spec.loader.exec_module(mod)
    return mod


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args(argv)
    bs = _bench_step()
    from ssl_vit.config.schema import AugConfig
    from ssl_vit.transforms.batched import TwoViewAugment

    bc = bs.BenchConfig(128, 6, 4, 28, 7, 1, args.batch_size)
    data, source = bs.load_images(bc, 4096)
    aug = TwoViewAugment(AugConfig(crop_scale=(0.25, 1.0)), bc.img_size, data.mean, data.std)
    g = torch.Generator().manual_seed(0)
    per_sample = bs.reference_batches(
        data.images, AugConfig(crop_scale=(0.25, 1.0)), list(data.mean), list(data.std), args.batch_size
    )
    step = bs.SslvitStep(bc, data, torch.device("cpu"))
    imgs = data.images[: args.batch_size]

    def batched():
        aug(imgs, g)

    fns = {"batched": batched, "per-sample": lambda: next(per_sample), "step": step}
    for f in fns.values():
        f()
    times = bs.interleaved(fns, args.rounds, 1)
    pairs = {k: args.batch_size / statistics.median(v) for k, v in times.items()}
    print(f"data={source} batch={args.batch_size} threads={torch.get_num_threads()}")
    print("| path | pairs/s |\n|---|---|")
    for k, v in pairs.items():
        print(f"| {k} | {v:,.0f} |")
    print(f"headroom={pairs['batched'] / pairs['step']:.1f}")
    print(f"per_sample_headroom={pairs['per-sample'] / pairs['step']:.2f}")


if __name__ == "__main__":
    main()
