"""Write VTAB-1k task folders in NOAH's layout (read back by ``vtab:<root>/<task>``).

For a task with source pool P and test set T (see :mod:`ssl_vit.data.vtab_sources`), with
``rng = numpy.random.default_rng(seed)`` and ``perm = rng.permutation(len(P))``::

    train800        = P[perm[:800]]
    val200          = P[perm[800:1000]]
    train800val200  = train800 + val200            (lines of both files; images are not duplicated)
    test            = T[sorted(rng.permutation(len(T))[:test_size])]   (test_size 0: all of T)
                      or, without T, P[perm[1000:1000 + test_size]]  (held out, disjoint from the 1000)

Files: ``<task>/{train800,val200,train800val200,test}.txt`` with lines ``images/<split>/<n>.<ext> <label>``,
the images under ``<task>/images/<split>/``, and ``task.json`` (classes, channels, nominal size, mean/std,
origin, seed, counts). The folder is written under a temporary name next to the target and renamed into
place at the end, so a crash leaves no half-built task.

Example::

    build_vtab_task("fmnist_rot", Path("data/vtab-1k"), seed=0, test_size=2000)
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from ssl_vit.data.vtab_sources import NOT_IN_TORCHVISION, SOURCES, Source
from ssl_vit.errors import SslvitError

N_TRAIN, N_VAL = 800, 200


@contextmanager
def atomic_dir(target: Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder next to ``target``; on success it replaces ``target`` by renames."""
    target = Path(target)
    if target.exists() and not overwrite:
        raise SslvitError(f"'{target}' already exists; pass --overwrite to replace it or choose another --root")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.building-"))
    except OSError as e:
        raise SslvitError(f"cannot write under '{target.parent}' ({e.strerror}); choose a writable --root") from None
    try:
        yield tmp
        old = None
        if target.exists():
            old = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.old-"))
            os.replace(target, old / target.name)
        os.replace(tmp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise SslvitError(f"cannot write '{target}' ({e.strerror}); check free space and permissions") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_images(data: Sequence, indices: Sequence[int], folder: Path, rel: str, ext: str) -> List[str]:
    """Save ``data[i]`` for ``i`` in ``indices`` as ``folder/rel/<n>.<ext>``; -> list lines ``rel/<n>.<ext> <label>``."""
    (folder / rel).mkdir(parents=True, exist_ok=True)
    lines = []
    for n, i in enumerate(indices):
        img, label = data[int(i)]
        name = f"{rel}/{n:06d}.{ext}"
        if ext == "jpg":
            img.convert("RGB").save(folder / name, quality=95)
        else:
            img.save(folder / name)
        lines.append(f"{name} {int(label)}")
    return lines


def split_indices(n_pool: int, n_test: Optional[int], seed: int,
                  test_size: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(train800, val200, test) indices; test indexes the test set, or the pool when ``n_test`` is None."""
    need = N_TRAIN + N_VAL + (1 if n_test is None else 0)
    if n_pool < need:
        raise SslvitError(f"the source has {n_pool} training images; VTAB-1k needs {N_TRAIN} + {N_VAL}"
                          f"{' + held-out test images' if n_test is None else ''}; use a larger dataset")
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n_pool)
    train, val = perm[:N_TRAIN], perm[N_TRAIN:N_TRAIN + N_VAL]
    if n_test is None:
        rest = perm[N_TRAIN + N_VAL:]
        test = np.sort(rest[:test_size] if test_size else rest)
    else:
        order = rng.permutation(n_test)
        test = np.sort(order[:test_size] if test_size else order)
    return train, val, test


def build_vtab_task(task: str, root: Path, seed: int = 0, test_size: int = 2000, data_dir: Optional[str] = None,
                    download: bool = False, overwrite: bool = False, source: Optional[Source] = None) -> Dict:
    """Build ``root/task``; -> the ``task.json`` contents (counts included)."""
    if source is None:
        if task not in SOURCES:
            why = (f"'{task}' is not in torchvision; prepare it with NOAH's data/vtab-source/get_vtab1k.py"
                   if task in NOT_IN_TORCHVISION else f"unknown task '{task}'")
            raise SslvitError(f"{why}; build-vtab can build: {', '.join(SOURCES)}")
        source = SOURCES[task](data_dir, download, seed)
    train, val, test = split_indices(len(source.pool), None if source.test is None else len(source.test), seed, test_size)
    test_data = source.pool if source.test is None else source.test
    target = Path(root) / task
    with atomic_dir(target, overwrite) as tmp:
        lines = {"train800": write_images(source.pool, train, tmp, "images/train800", source.ext),
                 "val200": write_images(source.pool, val, tmp, "images/val200", source.ext),
                 "test": write_images(test_data, test, tmp, "images/test", source.ext)}
        lines["train800val200"] = lines["train800"] + lines["val200"]
        for split, ls in lines.items():
            (tmp / f"{split}.txt").write_text("".join(l + "\n" for l in ls))
        labels = {s: [int(l.rsplit(" ", 1)[1]) for l in ls] for s, ls in lines.items()}
        meta = {"task": task, "classes": source.classes, "in_chans": source.in_chans, "img_size": source.img_size,
                "mean": list(source.mean), "std": list(source.std), "origin": source.origin, "seed": seed,
                "counts": {s: len(ls) for s, ls in lines.items()},
                "class_counts": {s: np.bincount(v, minlength=len(source.classes)).tolist() for s, v in labels.items()},
                "built_by": "sslvit data build-vtab"}
        bad = sorted({y for v in labels.values() for y in v if not 0 <= y < len(source.classes)})
        if bad:   # a source bug, not user input -- but never write a task the reader would reject
            raise SslvitError(f"task '{task}': labels {bad} outside 0..{len(source.classes) - 1}; the source is broken")
        (tmp / "task.json").write_text(json.dumps(meta, indent=2) + "\n")
    return meta
