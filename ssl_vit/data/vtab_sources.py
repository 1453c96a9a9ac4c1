"""Where `sslvit data build-vtab` takes a task's images from: Fashion-MNIST and torchvision datasets.

A :class:`Source` is an image pool to draw train800 + val200 from, and a test set (or ``None``: hold the
test images out of the pool's remainder, for datasets torchvision ships without a split). Only images the
builder picks are decoded.

VTAB's own tasks come from TFDS with TFDS's splits; the torchvision copies give the same classes and
label definitions (CLEVR count = objects - 3; CLEVR distance = bin of the closest object's depth with
VTAB's thresholds) but not the same 1000 images, and Caltech-101 has 101 classes (no background) instead
of TFDS's 102. Tasks torchvision does not ship (resisc45, diabetic_retinopathy, dmlab, kitti, dsprites,
smallnorb) must be prepared with NOAH's ``data/vtab-source/get_vtab1k.py``.

Fashion-MNIST tasks (this machine has no other data): ``fmnist`` (10 classes), ``fmnist_sub`` (the five
upper-body garments T-shirt, Pullover, Dress, Coat, Shirt: the confusable, fine-grained part), and
``fmnist_rot`` (predict the rotation 0/90/180/270 degrees applied to the image: a structured task whose
label is geometry, not category).

Example::

    src = SOURCES["fmnist_rot"](data_dir=None, download=False, seed=0)
    img, label = src.pool[0]                      # PIL image (28x28, 'L'), rotation class 0..3
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torchvision.datasets as tvd
from PIL import Image
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from torch.utils.data import ConcatDataset

from ssl_vit.data import fmnist
from ssl_vit.data.torchvision_sets import CIFAR100_ANY_COPY
from ssl_vit.errors import SslvitError


@dataclass
class Source:
    pool: Sequence                         # [i] -> (PIL.Image, int): train800 + val200 are drawn from it
    test: Optional[Sequence]               # [i] -> (PIL.Image, int); None: held out of the pool's remainder
    classes: List[str]
    origin: str                            # human-readable: where the images came from
    in_chans: int = 3
    img_size: int = 224                    # nominal input size (the protocol resizes to the backbone's)
    mean: Tuple[float, ...] = IMAGENET_DEFAULT_MEAN
    std: Tuple[float, ...] = IMAGENET_DEFAULT_STD
    ext: str = "jpg"                       # 'png' for lossless grey images


class _Pairs:
    """uint8 ``(N, 1, H, W)`` images + labels -> ``[i] -> (PIL 'L' image, label)``; ``rot`` quarter-turns."""

    def __init__(self, images: torch.Tensor, labels: np.ndarray, rot: Optional[np.ndarray] = None):
        self.images, self.labels, self.rot = images, labels, rot

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        img = self.images[i, 0]                                                  # (H, W)
        if self.rot is not None:
            img = torch.rot90(img, int(self.rot[i]), dims=(0, 1))                # counter-clockwise k x 90
        return Image.fromarray(img.numpy(), "L"), int(self.labels[i])


class _Torchvision:
    """A torchvision dataset (or ConcatDataset) -> ``[i] -> (PIL image, label)``."""

    def __init__(self, ds, label: Callable = int):
        self.ds, self.label = ds, label

    def __len__(self):
        return len(self.ds)

    def __getitem__(self, i):
        img, y = self.ds[i]
        return img, self.label(y)


# ----------------------------------------------------------------------------- Fashion-MNIST tasks
FMNIST_SUB = (0, 2, 3, 4, 6)   # T-shirt/top, Pullover, Dress, Coat, Shirt
ROTATIONS = ("0deg", "90deg", "180deg", "270deg")


def _fmnist(data_dir, download):
    tr_x, tr_y = fmnist.load_fmnist("train", data_dir, data_dir, download)
    te_x, te_y = fmnist.load_fmnist("test", data_dir, data_dir, download)
    return fmnist, (tr_x, tr_y.numpy()), (te_x, te_y.numpy())


def fmnist_task(data_dir: Optional[str], download: bool, seed: int) -> Source:
    fm, (tx, ty), (vx, vy) = _fmnist(data_dir, download)
    return Source(_Pairs(tx, ty), _Pairs(vx, vy), list(fm.CLASSES), "Fashion-MNIST (train -> 800/200, t10k -> test)",
                  1, 28, fm.MEAN, fm.STD, "png")


def fmnist_sub_task(data_dir: Optional[str], download: bool, seed: int) -> Source:
    fm, (tx, ty), (vx, vy) = _fmnist(data_dir, download)
    remap = np.full(10, -1)
    remap[list(FMNIST_SUB)] = np.arange(len(FMNIST_SUB))

    def sub(x, y):
        keep = np.isin(y, FMNIST_SUB)
        return _Pairs(x[torch.from_numpy(np.flatnonzero(keep))], remap[y[keep]])
    return Source(sub(tx, ty), sub(vx, vy), [fm.CLASSES[c] for c in FMNIST_SUB],
                  "Fashion-MNIST classes " + ",".join(map(str, FMNIST_SUB)) + " relabelled 0..4",
                  1, 28, fm.MEAN, fm.STD, "png")


def fmnist_rot_task(data_dir: Optional[str], download: bool, seed: int) -> Source:
    fm, (tx, ty), (vx, vy) = _fmnist(data_dir, download)
    rng = np.random.default_rng([seed, 90])                     # the rotations are part of the task: seeded
    rt, rv = rng.integers(0, 4, len(ty)), rng.integers(0, 4, len(vy))
    return Source(_Pairs(tx, rt, rt), _Pairs(vx, rv, rv), list(ROTATIONS),
                  "Fashion-MNIST rotated by k x 90 degrees (label k)", 1, 28, fm.MEAN, fm.STD, "png")


# ----------------------------------------------------------------------------- torchvision tasks
def _open(name: str, cls, data_dir: Optional[str], download: bool, **kw):
    tv = cls.__name__.removeprefix("Unchecked")                 # sslvit's md5-free subclasses keep the layout
    if not data_dir:
        raise SslvitError(f"task '{name}' needs --data-dir (the torchvision root that holds {tv}'s files)")
    if not Path(data_dir).is_dir() and not download:
        raise SslvitError(f"--data-dir '{data_dir}' does not exist; point it at the torchvision root that holds "
                          f"{tv}'s files, or add --download")
    try:
        return cls(data_dir, download=download, **kw)
    except (ImportError, ModuleNotFoundError) as e:
        raise SslvitError(f"torchvision's {tv} needs the '{e.name}' package: pip install {e.name}") from None
    except RuntimeError as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        if "pip install" in first:                               # e.g. PCAM without h5py
            raise SslvitError(f"task '{name}': {first}") from None
        raise SslvitError(f"{tv} not found under '{data_dir}' ({first}); point --data-dir at the folder "
                          f"torchvision's {tv} reads (its own layout), or add --download") from None
    except Exception as e:  # noqa: BLE001 - downloads and archive readers fail in many ways
        raise SslvitError(f"cannot open {tv} under '{data_dir}' ({type(e).__name__}: {e}); "
                          f"re-download or re-extract it") from None


def _tv(name: str, cls_name: str, pool_kw: Sequence[dict], test_kw: Optional[dict], classes: Callable,
        origin: str, label: Callable = int, extra: Optional[dict] = None):
    def make(data_dir: Optional[str], download: bool, seed: int) -> Source:
        cls = getattr(tvd, cls_name)
        if name == "cifar":   # sslvit's md5-free CIFAR-100 (accepts any well-formed copy, see torchvision_sets)
            cls = CIFAR100_ANY_COPY
        parts = [_open(name, cls, data_dir, download, **{**(extra or {}), **kw}) for kw in pool_kw]
        pool = parts[0] if len(parts) == 1 else ConcatDataset(parts)
        test = _open(name, cls, data_dir, download, **{**(extra or {}), **test_kw}) if test_kw is not None else None
        return Source(_Torchvision(pool, label), None if test is None else _Torchvision(test, label),
                      [str(c) for c in classes(parts[0])], origin)
    return make


def _clevr(task: str):
    """CLEVR from its own scene files (torchvision's CLEVRClassification has counts only; distance needs
    the objects' depth). Layout: ``<data_dir>/clevr/CLEVR_v1.0/{images,scenes}`` (torchvision's)."""
    thresholds = np.array([0.0, 8.0, 8.5, 9.0, 9.5, 10.0, 100.0])   # VTAB's closest_object_distance bins

    def label(scene) -> int:
        objs = scene["objects"]
        if task == "count":
            return len(objs) - 3                                     # 3..10 objects -> 0..7
        dist = min(o["pixel_coords"][2] for o in objs)
        return int(np.flatnonzero(thresholds < dist).max())

    class _Scenes:
        def __init__(self, folder: Path, split: str):
            path = folder / "scenes" / f"CLEVR_{split}_scenes.json"
            try:
                scenes = json.loads(path.read_text())["scenes"]
            except (OSError, ValueError, KeyError) as e:
                raise SslvitError(f"cannot read CLEVR scenes '{path}' ({type(e).__name__}); re-extract CLEVR_v1.0") from None
            self.items = [(folder / "images" / split / s["image_filename"], label(s)) for s in scenes]

        def __len__(self):
            return len(self.items)

        def __getitem__(self, i):
            p, y = self.items[i]
            with Image.open(p) as im:
                return im.convert("RGB"), y

    def make(data_dir: Optional[str], download: bool, seed: int) -> Source:
        folder = Path(data_dir or ".") / "clevr" / "CLEVR_v1.0"
        if not folder.is_dir() and data_dir and (Path(data_dir) / "scenes").is_dir():
            folder = Path(data_dir)                                   # --data-dir points at CLEVR_v1.0 itself
        if not folder.is_dir():
            _open(f"clevr_{task}", tvd.CLEVRClassification, data_dir, download)   # downloads, or explains
        n = 8 if task == "count" else 6
        names = [str(c + 3) for c in range(n)] if task == "count" else [f"bin{i}" for i in range(n)]
        return Source(_Scenes(folder, "train"), _Scenes(folder, "val"), names,
                      f"CLEVR v1.0 scenes ({'objects - 3' if task == 'count' else 'closest-object depth bins'}); "
                      f"train -> 800/200, val -> test (as VTAB)")
    return make


_SVHN_NOTE = "SVHN (torchvision reads the .mat files with scipy)"
SOURCES: Dict[str, Callable[[Optional[str], bool, int], Source]] = {
    "fmnist": fmnist_task,
    "fmnist_sub": fmnist_sub_task,
    "fmnist_rot": fmnist_rot_task,
    "cifar": _tv("cifar", "CIFAR100", [{"train": True}], {"train": False}, lambda d: d.classes,
                 "CIFAR-100 (train -> 800/200, test -> test)"),
    "caltech101": _tv("caltech101", "Caltech101", [{}], None, lambda d: d.categories,
                      "Caltech-101, 101 classes without background (test held out of the rest)"),
    "dtd": _tv("dtd", "DTD", [{"split": "train"}, {"split": "val"}], {"split": "test"}, lambda d: d.classes,
               "DTD partition 1 (train+val -> 800/200, test -> test)"),
    "oxford_flowers102": _tv("oxford_flowers102", "Flowers102", [{"split": "train"}, {"split": "val"}],
                             {"split": "test"}, lambda d: d.classes, "Flowers-102 (train+val -> 800/200, test -> test)"),
    "oxford_iiit_pet": _tv("oxford_iiit_pet", "OxfordIIITPet", [{"split": "trainval"}], {"split": "test"},
                           lambda d: d.classes, "Oxford-IIIT Pet (trainval -> 800/200, test -> test)"),
    "svhn": _tv("svhn", "SVHN", [{"split": "train"}], {"split": "test"}, lambda d: [str(i) for i in range(10)],
                _SVHN_NOTE + " (train -> 800/200, test -> test)"),
    "sun397": _tv("sun397", "SUN397", [{}], None, lambda d: d.classes, "SUN397 (test held out of the rest)"),
    "patch_camelyon": _tv("patch_camelyon", "PCAM", [{"split": "train"}], {"split": "test"},
                          lambda d: ["normal", "metastatic"], "PatchCamelyon, needs h5py (train -> 800/200, test -> test)"),
    "eurosat": _tv("eurosat", "EuroSAT", [{}], None, lambda d: d.classes, "EuroSAT RGB (test held out of the rest)"),
    "clevr_count": _clevr("count"),
    "clevr_dist": _clevr("dist"),
}
NOT_IN_TORCHVISION = ("resisc45", "diabetic_retinopathy", "dmlab", "kitti", "dsprites_loc", "dsprites_ori",
                      "smallnorb_azi", "smallnorb_ele")
