"""CIFAR-10/100 and STL-10 through ``torchvision.datasets``, loaded into memory as uint8 tensors.

torchvision checks each file's md5 against the official release; the subclasses below keep its
loaders, layout and downloader (the archive's md5 is still checked) but accept any well-formed copy
of the files, so re-packed or subset copies (and the small ones the tests generate) load too.
"""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch
import torchvision

from ssl_vit.data.images import TensorImages
from ssl_vit.errors import SslvitError

STATS = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "stl10": ((0.4467, 0.4398, 0.4066), (0.2603, 0.2566, 0.2713)),
}


def _no_md5(cls):
    """A subclass of a torchvision dataset whose per-file md5 checks are off (existence still checked)."""
    attrs = {"train_list": [[n, None] for n, _ in cls.train_list],
             "test_list": [[n, None] for n, _ in cls.test_list]}
    if hasattr(cls, "meta"):
        attrs["meta"] = {**cls.meta, "md5": None}
    return type(f"Unchecked{cls.__name__}", (cls,), attrs)


_CIFAR10 = _no_md5(torchvision.datasets.CIFAR10)
CIFAR100_ANY_COPY = _no_md5(torchvision.datasets.CIFAR100)
_STL10 = _no_md5(torchvision.datasets.STL10)


def _open(cls, kind: str, root: str, download: bool, **kw):
    if not root:
        raise SslvitError(f"dataset '{kind}' needs a root folder: write '{kind}:<root>'")
    if not Path(root).is_dir() and not download:
        raise SslvitError(f"{kind} root '{root}' does not exist; pass the folder that holds "
                          f"{'cifar-10-batches-py' if kind == 'cifar10' else 'cifar-100-python' if kind == 'cifar100' else 'stl10_binary'}"
                          f", or add --set data.download=true")
    try:
        return cls(root, download=download, **kw)
    except RuntimeError as e:
        raise SslvitError(f"{kind} files not found or incomplete under '{root}' ({str(e).splitlines()[0]}); "
                          f"point the spec at the folder holding the extracted dataset, or --set data.download=true") from None
    except (pickle.UnpicklingError, EOFError, ValueError, KeyError, OSError) as e:
        raise SslvitError(f"{kind} files under '{root}' are corrupt ({type(e).__name__}: {e}); "
                          f"re-download or re-extract the dataset") from None


def load_cifar(kind: str, root: str, split: str, download: bool = False) -> TensorImages:
    if split not in ("train", "test"):
        raise SslvitError(f"{kind} has splits 'train' and 'test', not '{split}'")
    cls = _CIFAR10 if kind == "cifar10" else CIFAR100_ANY_COPY
    ds = _open(cls, kind, root, download, train=split == "train")
    images = torch.from_numpy(np.ascontiguousarray(ds.data)).permute(0, 3, 1, 2).contiguous()  # (N,H,W,C)->(N,C,H,W)
    mean, std = STATS[kind]
    return TensorImages(images, torch.as_tensor(ds.targets, dtype=torch.long), list(ds.classes), kind, mean, std)


def load_stl10(root: str, split: str, download: bool = False) -> TensorImages:
    valid = ("train", "test", "unlabeled", "train+unlabeled")
    if split not in valid:
        raise SslvitError(f"stl10 has splits {', '.join(valid)}, not '{split}'")
    ds = _open(_STL10, "stl10", root, download, split=split)
    images = torch.from_numpy(np.ascontiguousarray(ds.data))                       # (N, 3, 96, 96) uint8
    targets = torch.from_numpy(np.asarray(ds.labels, dtype=np.int64))               # -1 = unlabelled
    mean, std = STATS["stl10"]
    classes = list(getattr(ds, "classes", None) or [str(i) for i in range(10)])
    return TensorImages(images, targets, classes, "stl10", mean, std)
