"""Tiny VTAB-1k and few-shot trees in NOAH's on-disk layouts, generated with PIL (for the reader tests)."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
from PIL import Image


def _image(path: Path, value: int, size: int = 8, mode: str = "RGB") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = (size, size, 3) if mode == "RGB" else (size, size)
    Image.fromarray(np.full(shape, value % 256, np.uint8), mode).save(path)


def make_vtab_task(root: Path, task: str = "dtd", sizes: Optional[Dict[str, int]] = None, n_classes: int = 3,
                   ext: str = "jpg") -> Tuple[Path, Dict[str, List[Tuple[str, int]]]]:
    """``root/task`` with train800/val200/train800val200/test lists (small), labels ``i % n_classes``.

    Returns the task folder and the written ``{split: [(relative path, label)]}``.
    """
    sizes = sizes or {"train800": 8, "val200": 4, "test": 6}
    folder = root / task
    written: Dict[str, List[Tuple[str, int]]] = {}
    for split, n in sizes.items():
        written[split] = []
        for i in range(n):
            rel = f"images/{split}/{i:06d}.{ext}"
            _image(folder / rel, 10 * i + len(split))
            written[split].append((rel, i % n_classes))
    written["train800val200"] = written["train800"] + written["val200"]
    for split, rows in written.items():
        (folder / f"{split}.txt").write_text("".join(f"{p} {y}\n" for p, y in rows))
    return folder, written


def make_fewshot_tree(root: Path, n_classes: int = 3, shots=(1, 2), seeds=(0, 1), n_val: int = 2, n_test: int = 4,
                      images_dir: bool = True) -> Path:
    """NOAH few-shot layout: annotations/ + images/ (or paths relative to ``root`` when not ``images_dir``)."""
    base = root / "images" if images_dir else root
    ann = root / "annotations"
    ann.mkdir(parents=True)

    def lines(prefix: str, per_class: int) -> str:
        rows = []
        for c in range(n_classes):
            for j in range(per_class):
                rel = f"{prefix}/class {c}/img_{j}.png"          # a space in the path, as some FGVC names have
                _image(base / rel, 30 * c + j)
                rows.append(f"{rel} {c}\n")
        return "".join(rows)
    for s in seeds:
        for k in shots:
            (ann / f"train_meta.list.num_shot_{k}.seed_{s}").write_text(lines(f"train_s{s}", k))
    (ann / "val_meta.list").write_text(lines("val", n_val))
    (ann / "test_meta.list").write_text(lines("test", n_test))
    return root
