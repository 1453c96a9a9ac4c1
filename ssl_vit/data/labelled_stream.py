"""Labelled training batches ``(x, y)`` as a pure function of the global step (``sslvit train``).

Same contract as :mod:`ssl_vit.data.streams` (which serves MoCo's two views): :class:`BatchOrder` picks the
images of step ``s``; the augmentation (:class:`~ssl_vit.transforms.supervised.CropFlip`) draws from a
generator seeded by ``(seed, step)``; so a resumed run sees the same batches. In-memory data is sliced as a
tensor; file data is decoded in DataLoader workers to the model's size (``eval_transform``) and then
augmented as one batch, the same code path.

Example::

    stream = labelled_stream(train, aug_cfg, input_spec, order, device, seed=0)
    x, y = next(stream.batches(start_step=0))       # (B, C, S, S) float32, (B,) int64
"""
from __future__ import annotations

from typing import Iterator, List, Tuple

import torch
from torch.utils.data import DataLoader

from ssl_vit.core.input_spec import InputSpec
from ssl_vit.core.seeding import derive_seed
from ssl_vit.data.images import FileImages, TensorImages
from ssl_vit.data.labelled import LabelledFiles
from ssl_vit.data.streams import BatchOrder
from ssl_vit.errors import SslvitError
from ssl_vit.transforms.pipeline import eval_transform
from ssl_vit.transforms.supervised import CropFlip


def _labels(data) -> torch.Tensor:
    y = data.targets
    if y is None or (y < 0).any():
        raise SslvitError(f"dataset '{data.name}' has unlabelled images; `sslvit train` needs labels for every "
                          f"training image (pick a labelled split with data.train_split=train)")
    return y.long()


class _IndexBatches:
    """Batch sampler: the indices of step ``start``, ``start + 1``, ..."""

    def __init__(self, order: BatchOrder, start: int):
        self.order, self.start = order, start

    def __iter__(self) -> Iterator[List[int]]:
        step = self.start
        while True:
            yield self.order.indices(step).tolist()
            step += 1


class LabelledStream:
    def __init__(self, data, order: BatchOrder, augment: CropFlip, device: torch.device, seed: int,
                 num_workers: int = 2):
        self.data, self.order, self.augment, self.device, self.seed = data, order, augment.to(device), device, seed
        self.num_workers = num_workers
        self.labels = _labels(data)
        self.steps_per_epoch = order.steps_per_epoch

    def _raw(self, start_step: int) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
        if isinstance(self.data, TensorImages):
            step = start_step
            while True:
                idx = self.order.indices(step)
                yield self.data.images[idx], self.labels[idx]                # (B, C, H, W) uint8, (B,)
                step += 1
        files = LabelledFiles(self.data, eval_transform(int(self.augment.input_spec.img_size)))
        loader = DataLoader(files, batch_sampler=_IndexBatches(self.order, start_step), num_workers=self.num_workers,
                            pin_memory=self.device.type == "cuda")
        for x, y in loader:
            yield x, y.long()

    def batches(self, start_step: int) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
        step = start_step
        for x, y in self._raw(start_step):
            g = torch.Generator().manual_seed(derive_seed("aug", self.seed, step))
            x = self.augment(x.to(self.device, non_blocking=True), g, self.order.rank * self.order.local_batch,
                             self.order.global_batch)
            yield x, y.to(self.device, non_blocking=True)
            step += 1


def labelled_stream(data, aug_cfg, input_spec: InputSpec, order: BatchOrder, device: torch.device, seed: int,
                    num_workers: int = 2) -> LabelledStream:
    if not isinstance(data, (TensorImages, FileImages)):
        raise SslvitError(f"unsupported dataset type {type(data).__name__}")
    return LabelledStream(data, order, CropFlip(input_spec, aug_cfg.crop_padding, aug_cfg.hflip_prob), device, seed,
                          num_workers)
