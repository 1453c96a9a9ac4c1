"""``vtab:<root>/<task>``: one VTAB-1k task in the layout of the NOAH / Convpass / VPT code.

VTAB-1k (Zhai et al. 2019, "A Large-scale Study of Representation Learning with the Visual Task
Adaptation Benchmark", sec. 2): 19 tasks, 1000 training images each (800 train + 200 val), the full
test split; groups Natural (7), Specialized (4), Structured (8). NOAH's ``get_vtab1k.py`` writes one
folder per task::

    vtab-1k/<task>/train800.txt  val200.txt  train800val200.txt  test.txt
    vtab-1k/<task>/images/<split>/000000.jpg ...

each split line ``<image path relative to the task folder> <integer label>``. The protocol: tune on
``train800`` / ``val200``, then train on ``train800val200`` and report top-1 on ``test`` (hence
``eval_splits = ("train800val200", "test")``).

Class counts of the 19 tasks are NOAH's (``lib/datasets.py``). A folder written by
``sslvit data build-vtab`` also holds ``task.json`` (class names, channels, nominal size, source, seed);
it wins over the table, which matters where torchvision's copy differs from TFDS's (e.g. Caltech-101
without the background class: 101 classes). Tasks not in the table (e.g. ``fmnist_rot``) without a
``task.json`` take ``max label + 1`` over the training lists.

Example::

    train = load_dataset("vtab:/data/vtab-1k/dtd", "train800")     # FileImages, 800 samples, 47 classes
    test = load_dataset("vtab:/data/vtab-1k/dtd", "test")
"""
from __future__ import annotations

import difflib
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from ssl_vit.data.filelists import check_labels, file_images, read_list, read_meta, resolve_images
from ssl_vit.data.images import FileImages
from ssl_vit.data.specs import DatasetSpec, register_dataset
from ssl_vit.errors import SslvitError

SPLITS = ("train800", "val200", "train800val200", "test")
TRAIN_SPLITS = ("train800", "val200", "train800val200")   # the ones that define the classes
TASK_META = "task.json"

GROUPS: Dict[str, Tuple[str, ...]] = {
    "Natural": ("cifar", "caltech101", "dtd", "oxford_flowers102", "oxford_iiit_pet", "svhn", "sun397"),
    "Specialized": ("patch_camelyon", "eurosat", "resisc45", "diabetic_retinopathy"),
    "Structured": ("clevr_count", "clevr_dist", "dmlab", "kitti", "dsprites_loc", "dsprites_ori",
                   "smallnorb_azi", "smallnorb_ele"),
}
NUM_CLASSES: Dict[str, int] = {
    "cifar": 100, "caltech101": 102, "dtd": 47, "oxford_flowers102": 102, "oxford_iiit_pet": 37, "svhn": 10,
    "sun397": 397, "patch_camelyon": 2, "eurosat": 10, "resisc45": 45, "diabetic_retinopathy": 5,
    "clevr_count": 8, "clevr_dist": 6, "dmlab": 6, "kitti": 4, "dsprites_loc": 16, "dsprites_ori": 16,
    "smallnorb_azi": 18, "smallnorb_ele": 9,
}
TASKS: Tuple[str, ...] = tuple(t for g in GROUPS.values() for t in g)
# Tasks `sslvit data build-vtab` derives from Fashion-MNIST, and the VTAB group each stands in for.
FMNIST_TASK_GROUPS = {"fmnist": "Natural", "fmnist_sub": "Natural", "fmnist_rot": "Structured"}
TASK_GROUP: Dict[str, str] = {**{t: g for g, ts in GROUPS.items() for t in ts}, **FMNIST_TASK_GROUPS}


def group_of(task: str) -> str:
    """VTAB group of a task folder name; 'Other' for tasks outside the benchmark."""
    return TASK_GROUP.get(task, "Other")


def _task_dirs(folder: Path) -> List[str]:
    """Sub-folders of ``folder`` that hold at least one split file."""
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and any((p / f"{s}.txt").is_file() for s in SPLITS))


def task_folder(root: Optional[str]) -> Path:
    """Check ``<root>/<task>`` exists; unknown names get the nearest known ones as a hint."""
    if not root:
        raise SslvitError("vtab needs a task folder: write 'vtab:<vtab-1k root>/<task>', e.g. 'vtab:/data/vtab-1k/dtd'")
    folder = Path(root).expanduser()
    if folder.is_dir():
        return folder
    task, parent = folder.name, folder.parent
    present = _task_dirs(parent)
    near = difflib.get_close_matches(task, list(dict.fromkeys(present + list(TASKS) + list(FMNIST_TASK_GROUPS))),
                                     n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(repr(n) for n in near)}? " if near else ""
    where = (f"tasks under '{parent}': {', '.join(present)}" if present else
             f"VTAB-1k task names: {', '.join(TASKS)}; build tasks with `sslvit data build-vtab --root {parent}`")
    raise SslvitError(f"VTAB task folder '{folder}' does not exist; {hint}{where}")


def split_file(folder: Path, split: str) -> Path:
    if split not in SPLITS:
        raise SslvitError(f"VTAB has splits {', '.join(SPLITS)}, not '{split}'")
    path = folder / f"{split}.txt"
    if not path.is_file():
        tasks = _task_dirs(folder)
        if tasks:
            raise SslvitError(f"'{folder}' is a vtab-1k root, not a task folder; append a task: "
                              f"'vtab:{folder}/<task>' with <task> one of {', '.join(tasks)}")
        files = ", ".join(s + ".txt" for s in SPLITS)
        raise SslvitError(f"VTAB task '{folder}' has no {split}.txt; a task folder holds {files} "
                          f"(NOAH's get_vtab1k.py or `sslvit data build-vtab` write them)")
    return path


def task_classes(folder: Path, meta: Dict) -> List[str]:
    """Class names: ``task.json``, else NOAH's class count, else max label + 1 over the training lists."""
    if meta.get("classes"):
        return [str(c) for c in meta["classes"]]
    if folder.name in NUM_CLASSES:
        return [str(i) for i in range(NUM_CLASSES[folder.name])]
    labels = [e.label for s in TRAIN_SPLITS if (folder / f"{s}.txt").is_file() for e in read_list(folder / f"{s}.txt")]
    if not labels:
        raise SslvitError(f"cannot tell the classes of VTAB task '{folder}': no training split lists a label; "
                          f"add train800val200.txt or a task.json with 'classes'")
    return [str(i) for i in range(max(labels) + 1)]


def load_vtab(root: Optional[str], split: str, on_bad_image: str = "fail") -> FileImages:
    """-> :class:`FileImages` of one split; every label checked against the task's classes."""
    folder = task_folder(root)
    path = split_file(folder, split)
    meta = read_meta(folder / TASK_META)
    classes = task_classes(folder, meta)
    entries = read_list(path, fix=f"rebuild {folder}")
    if not entries:
        raise SslvitError(f"'{path}' is empty; it should list '<image path> <label>' lines")
    src = ("task.json" if meta.get("classes") else
           "NOAH's class count" if folder.name in NUM_CLASSES else "the training lists")
    check_labels(entries, path, range(len(classes)), f"task '{folder.name}' ({len(classes)} classes, from {src})",
                 "fix the label or the task's class list (task.json)")
    samples = resolve_images(entries, folder, path, on_bad_image)
    return file_images(samples, classes, f"vtab:{folder}", meta)


@register_dataset("vtab", eval_splits=("train800val200", "test"))
def _vtab(spec: DatasetSpec, split: str, cfg) -> FileImages:
    return load_vtab(spec.root, split, cfg.on_bad_image)
