"""Labelled sets for evaluation and supervised training: ``(path, label)`` file lists decoded as a torch
``Dataset`` (:class:`LabelledFiles`), and the seeded random subset every evaluation takes (:func:`subsample`).

Example::

    test = subsample(load_dataset("fmnist", "test", data_cfg), 500, seed=1)     # same 500 images every time
    loader = DataLoader(LabelledFiles(files, eval_transform(224)), batch_size=256)
"""
from __future__ import annotations

import torch
from torch.utils.data import Dataset

from ssl_vit.data.imagefolder import pil_loader
from ssl_vit.data.images import FileImages
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
    """``n`` images of ``data`` (a :class:`TensorImages` or :class:`FileImages`) drawn with ``seed``, in dataset
    order; all of it when ``n`` is 0 or at least its size."""
    if not n or len(data) <= n:
        return data
    g = torch.Generator().manual_seed(seed)
    return data.subset(torch.randperm(len(data), generator=g)[:n].sort().values)
