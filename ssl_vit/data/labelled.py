"""Labelled sets for evaluation and supervised training: ``(path, label)`` file lists decoded as a torch
``Dataset`` (:class:`LabelledFiles`), the seeded random subset every evaluation takes (:func:`subsample`),
and the labelled evaluation splits of a dataset spec (:func:`load_eval_splits`: load both, subsample each).

Every evaluation (kNN, linear probe, adaptation, the supervised task's test, the online kNN monitor) starts
the same way; :func:`load_eval_splits` is that start. A subsample is a seeded permutation of the split kept
in dataset order, so the same ``(n, seed)`` gives the same images in every run.

Example::

    s = load_eval_splits("fmnist", DataConfig(), max_train=2000, max_test=500)
    s.train, s.test, s.train_split, s.test_split           # TensorImages / FileImages, "train", "test"
    bank = labelled_only(s.train)                          # drop the images with label -1
    test = subsample(load_dataset("fmnist", "test", data_cfg), 500, seed=1)     # same 500 images every time
    loader = DataLoader(LabelledFiles(files, eval_transform(224)), batch_size=256)
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.data import Dataset

from ssl_vit.data.imagefolder import pil_loader
from ssl_vit.data.images import FileImages
from ssl_vit.data.specs import DatasetSpec, eval_splits, load_dataset
from ssl_vit.errors import SslvitError


class LabelledFiles(Dataset):
    """``(path, label)`` files -> ``(uint8 tensor, label)`` through ``transform`` (decoded as RGB)."""

    def __init__(self, files: FileImages, transform):
        self.files, self.t, self.load = files, transform, pil_loader

    def __len__(self):
        return len(self.files)

    def __getitem__(self, i):
        path, label = self.files.samples[i]
        try:
            return self.t(self.load(path, 3)), label
        except Exception as e:  # noqa: BLE001
            raise SslvitError(f"cannot decode image '{path}' ({type(e).__name__}); remove it") from None


def subsample(data, n: int, seed: int):
    """``n`` images of ``data`` (a :class:`TensorImages` or :class:`FileImages`) drawn by a permutation seeded
    with ``seed``, in dataset order; all of it when ``n`` is 0 or at least its size."""
    if not n or len(data) <= n:
        return data
    g = torch.Generator().manual_seed(seed)
    return data.subset(torch.randperm(len(data), generator=g)[:n].sort().values)


def has_labels(data) -> bool:
    """Whether ``data`` has at least one labelled image (label >= 0)."""
    return data.targets is not None and bool((data.targets >= 0).any())


def labelled_only(data):
    """``data`` without its unlabelled images (label -1); ``data`` itself when all are labelled."""
    keep = data.targets >= 0                                                        # (N,)
    return data if bool(keep.all()) else data.subset(torch.nonzero(keep).flatten())


def require_labels(data, what: str, needs: str):
    """``data`` itself; raise ``SslvitError`` naming ``what`` and who ``needs`` labels when it has none."""
    if data.targets is None or len(data) == 0 or not has_labels(data):
        raise SslvitError(f"{what} has no labelled images; {needs} needs a labelled dataset")
    return data


@dataclass
class EvalSplits:
    train: object               # TensorImages | FileImages, subsampled (may hold unlabelled images)
    test: object                # TensorImages | FileImages, subsampled
    train_split: str            # split names, e.g. "train" / "test"
    test_split: str


def load_eval_splits(spec: str | DatasetSpec, data_cfg, max_train: int = 0, max_test: int = 0,
                     seed: int = 0) -> EvalSplits:
    """The spec's evaluation (train, test) splits (``data.specs.eval_splits``), train subsampled to
    ``max_train`` with ``seed``, test to ``max_test`` with ``seed + 1`` (0: whole)."""
    train_split, test_split = eval_splits(spec)
    train = subsample(load_dataset(spec, train_split, data_cfg), max_train, seed)
    test = subsample(load_dataset(spec, test_split, data_cfg), max_test, seed + 1)
    return EvalSplits(train, test, train_split, test_split)
