"""``fewshot:<root>?shots=<k>&seed=<s>``: few-shot FGVC splits in the layout of the NOAH code.

NOAH (Zhang et al. 2022, "Neural Prompt Search", sec. 4.1; splits from CoOp) ships, per dataset::

    <root>/annotations/train_meta.list.num_shot_<k>.seed_<s>     k in {1, 2, 4, 8, 16}, s in {0, 1, 2}
    <root>/annotations/val_meta.list
    <root>/annotations/test_meta.list
    <root>/images/<path>                                         (Stanford Cars: <root>/<path>)

lines ``<path> <label>`` (the path may hold spaces; the label is the last field). Image paths are
relative to ``<root>/images`` when that folder exists, else to ``<root>`` -- NOAH's loader does the same
per dataset. Splits: ``train`` (the k-shot list of the given seed), ``val``, ``test``; evaluation trains
on ``train`` and reports ``test`` (report mean +- std over seeds per k).

The classes are the labels of the k-shot train list and ``val_meta.list``; a label in any list that is
not one of them (a class the model can never be trained on) is an error naming file and line.

Example::

    train = load_dataset("fewshot:/data/few-shot/oxford-pets?shots=4&seed=0", "train")   # 37 classes x 4
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Dict, List, Optional, Set

from ssl_vit.data.filelists import ListEntry, check_labels, file_images, read_list, read_meta, resolve_images
from ssl_vit.data.images import FileImages
from ssl_vit.data.specs import DatasetSpec, register_dataset
from ssl_vit.errors import SslvitError

SPLITS = ("train", "val", "test")
SHOTS = (1, 2, 4, 8, 16)
SEEDS = (0, 1, 2)
TASK_META = "task.json"
_TRAIN_RE = re.compile(r"^train_meta\.list\.num_shot_(\d+)\.seed_(\d+)$")


def train_list_name(shots: int, seed: int) -> str:
    return f"train_meta.list.num_shot_{shots}.seed_{seed}"


def available(root: Path) -> List[tuple]:
    """(shots, seed) pairs that have a train list under ``<root>/annotations``."""
    ann = root / "annotations"
    found = [_TRAIN_RE.match(p.name) for p in ann.iterdir()] if ann.is_dir() else []
    return sorted((int(m.group(1)), int(m.group(2))) for m in found if m)


def _int_option(spec_opts: Dict[str, str], key: str, root: Path) -> int:
    pairs = available(root)
    listing = ", ".join(f"shots={k}&seed={s}" for k, s in pairs) or "none found"
    if key not in spec_opts:
        raise SslvitError(f"fewshot spec needs ?shots=<k>&seed=<s>, e.g. 'fewshot:{root}?shots=4&seed=0' "
                          f"(available: {listing})")
    try:
        return int(spec_opts[key])
    except ValueError:
        raise SslvitError(f"fewshot option {key}={spec_opts[key]!r} is not an integer (available: {listing})") from None


def list_path(root: Path, split: str, shots: int, seed: int) -> Path:
    if split not in SPLITS:
        raise SslvitError(f"fewshot has splits {', '.join(SPLITS)}, not '{split}'")
    name = train_list_name(shots, seed) if split == "train" else f"{split}_meta.list"
    path = root / "annotations" / name
    if not path.is_file():
        pairs = available(root)
        extra = (f" (available: {', '.join(f'shots={k}&seed={s}' for k, s in pairs) or 'no train lists'})"
                 if split == "train" else "")
        raise SslvitError(f"few-shot list '{path}' does not exist{extra}; a few-shot folder holds "
                          f"annotations/train_meta.list.num_shot_<k>.seed_<s>, val_meta.list and test_meta.list "
                          f"(`sslvit data build-fewshot` writes one from Fashion-MNIST)")
    return path


def load_fewshot(root: Optional[str], split: str, options: Dict[str, str], on_bad_image: str = "fail") -> FileImages:
    if not root:
        raise SslvitError("fewshot needs a root: write 'fewshot:<root>?shots=<k>&seed=<s>' with <root>/annotations/")
    base_root = Path(root).expanduser()
    if not (base_root / "annotations").is_dir():
        raise SslvitError(f"few-shot root '{root}' has no annotations/ folder; point the spec at the dataset folder "
                          f"that holds annotations/ and images/")
    unknown = set(options) - {"shots", "seed", "subset", "subset_seed"}
    if unknown:
        raise SslvitError(f"unknown fewshot option(s) {', '.join(sorted(unknown))}; use ?shots=<k>&seed=<s>")
    shots, seed = _int_option(options, "shots", base_root), _int_option(options, "seed", base_root)
    train_path = list_path(base_root, "train", shots, seed)
    train = read_list(train_path)
    val_path = base_root / "annotations" / "val_meta.list"
    val: List[ListEntry] = read_list(val_path) if val_path.is_file() else []
    known: Set[int] = {e.label for e in train} | {e.label for e in val}
    if not known:
        raise SslvitError(f"'{train_path}' is empty; it should list '<path> <label>' lines")
    path = train_path if split == "train" else list_path(base_root, split, shots, seed)
    entries = train if split == "train" else val if split == "val" else read_list(path)
    check_labels(entries, path, known,
                 f"this few-shot set (unknown class: the {len(known)} classes are the labels of "
                 f"{train_path.name}{' and val_meta.list' if val else ''})",
                 "fix the label or add the class to the train and val lists")
    images = base_root / "images" if (base_root / "images").is_dir() else base_root
    samples = resolve_images(entries, images, path, on_bad_image)
    meta = read_meta(base_root / TASK_META)
    n_classes = max(known) + 1
    names = meta.get("classes", [])
    classes = [str(c) for c in names] if len(names) == n_classes else [str(i) for i in range(n_classes)]
    return file_images(samples, classes, f"fewshot:{root}?shots={shots}&seed={seed}", meta)


@register_dataset("fewshot", eval_splits=("train", "test"), options=("shots", "seed"))
def _fewshot(spec: DatasetSpec, split: str, cfg) -> FileImages:
    return load_fewshot(spec.root, split, spec.options, cfg.on_bad_image)
