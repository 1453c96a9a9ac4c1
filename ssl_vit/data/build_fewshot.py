"""Write a few-shot folder in NOAH's layout from Fashion-MNIST (read back by ``fewshot:<root>?shots=k&seed=s``).

Layout (as NOAH's ``data/few-shot/<dataset>``)::

    <root>/annotations/train_meta.list.num_shot_<k>.seed_<s>    k shots per class
    <root>/annotations/val_meta.list                             val_per_class per class
    <root>/annotations/test_meta.list                            test_size images of t10k (0: all)
    <root>/images/train/<Fashion-MNIST train index>.png, images/test/<n>.png
    <root>/task.json                                             classes, channels, size, counts

Sampling: the val images are drawn once per class (``default_rng([seed_base, 0])``) and excluded from
the shot pool; for few-shot seed ``s`` a per-class permutation of the remaining training images
(``default_rng([seed_base, 1, s])``) gives the shots, nested over k (the 1-shot image is among the
2-shot images, ...), so curves over k differ only in the added images. Written atomically (temporary
folder, then rename).

Example::

    build_fewshot_fmnist(Path("data/few-shot/fmnist"))     # then fewshot:data/few-shot/fmnist?shots=4&seed=0
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, Optional, Sequence

import numpy as np
import torch
from PIL import Image

from ssl_vit.data import fmnist
from ssl_vit.data.build_vtab import atomic_dir
from ssl_vit.data.fewshot import SEEDS, SHOTS, train_list_name
from ssl_vit.errors import SslvitError


def build_fewshot_fmnist(root: Path, shots: Sequence[int] = SHOTS, seeds: Sequence[int] = SEEDS,
                         val_per_class: int = 20, test_size: int = 2000, seed_base: int = 0,
                         data_dir: Optional[str] = None, download: bool = False, overwrite: bool = False) -> Dict:
    """Build the folder ``root``; -> the ``task.json`` contents."""
    if not shots or min(shots) < 1 or not seeds or min(seeds) < 0 or val_per_class < 1:
        raise SslvitError("shots must be >= 1, seeds >= 0 and val_per_class >= 1")
    tx, ty = fmnist.load_fmnist("train", data_dir, data_dir, download)
    vx, vy = fmnist.load_fmnist("test", data_dir, data_dir, download)
    ty, vy = ty.numpy(), vy.numpy()
    n_cls = len(fmnist.CLASSES)
    per_class = [np.flatnonzero(ty == c) for c in range(n_cls)]
    need = val_per_class + max(shots)
    short = [c for c in range(n_cls) if len(per_class[c]) < need]
    if short:
        raise SslvitError(f"Fashion-MNIST classes {short} have fewer than {need} training images "
                          f"({val_per_class} val + {max(shots)} shots); lower --val-per-class or the shots")
    rng = np.random.default_rng([seed_base, 0])
    val, pools = [], []
    for c in range(n_cls):
        perm = rng.permutation(per_class[c])
        val += perm[:val_per_class].tolist()
        pools.append(perm[val_per_class:])
    lists: Dict[str, list] = {"val_meta.list": sorted(val)}
    for s in seeds:
        order = [np.random.default_rng([seed_base, 1, s]).permutation(p) for p in pools]
        for k in sorted(set(shots)):
            lists[train_list_name(k, s)] = [int(i) for c in range(n_cls) for i in order[c][:k]]
    test = np.sort(np.random.default_rng([seed_base, 2]).permutation(len(vy))[:test_size or None])

    def save(img: torch.Tensor, path: Path):
        Image.fromarray(img[0].numpy(), "L").save(path)                          # (1, H, W) -> H x W grey PNG

    with atomic_dir(Path(root), overwrite) as tmp:
        (tmp / "annotations").mkdir()
        (tmp / "images" / "train").mkdir(parents=True)
        (tmp / "images" / "test").mkdir(parents=True)
        for i in sorted({i for v in lists.values() for i in v}):
            save(tx[i], tmp / "images" / "train" / f"{i:06d}.png")
        for name, idx in lists.items():
            (tmp / "annotations" / name).write_text("".join(f"train/{i:06d}.png {int(ty[i])}\n" for i in idx))
        test_lines = []
        for n, i in enumerate(test):
            save(vx[int(i)], tmp / "images" / "test" / f"{n:06d}.png")
            test_lines.append(f"test/{n:06d}.png {int(vy[int(i)])}\n")
        (tmp / "annotations" / "test_meta.list").write_text("".join(test_lines))
        meta = {"dataset": "fmnist", "classes": list(fmnist.CLASSES), "in_chans": 1, "img_size": 28,
                "mean": list(fmnist.MEAN), "std": list(fmnist.STD), "shots": sorted(set(shots)), "seeds": list(seeds),
                "val_per_class": val_per_class, "seed_base": seed_base,
                "counts": {**{n: len(v) for n, v in lists.items()}, "test_meta.list": len(test_lines)},
                "built_by": "sslvit data build-fewshot"}
        (tmp / "task.json").write_text(json.dumps(meta, indent=2) + "\n")
    return meta
