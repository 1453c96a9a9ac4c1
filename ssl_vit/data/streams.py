"""Training batches as a pure function of the global step: exact resume and rank-aware by design.

* :class:`BatchOrder` -- which images form step ``s``: a permutation seeded by ``(seed, epoch)``,
  sliced into global batches (drop-last), each rank taking its contiguous share.
* :class:`TensorTwoViews` -- in-memory data: slice the uint8 tensor, move it to the device, augment the
  whole batch there (:class:`~ssl_vit.transforms.TwoViewAugment`; with ``method.local_crops``
  :class:`~ssl_vit.transforms.MultiCropAugment`, batches ``(x1, x2, local)``) with a generator seeded by
  ``(seed, step)``; each rank keeps its slice of the global batch's random draws, so the views do
  not depend on the number of processes.
* :class:`FileTwoViews` -- file data: a DataLoader whose batch sampler starts at any step; each sample
  is transformed under a seed derived from ``(seed, step, position in the global batch)``, so neither
  workers nor the number of processes matter.
"""
from __future__ import annotations

import warnings
from typing import Iterator, List, Tuple

import torch
from torch.utils.data import DataLoader, Dataset

from ssl_vit.core.input_spec import InputSpec
from ssl_vit.core.seeding import derive_seed
from ssl_vit.data.imagefolder import pil_loader
from ssl_vit.data.images import FileImages, TensorImages
from ssl_vit.errors import SslvitError
from ssl_vit.transforms.batched import TwoViewAugment
from ssl_vit.transforms.multicrop import MultiCropAugment
from ssl_vit.transforms.pipeline import view_transform


class BatchOrder:
    def __init__(self, n: int, global_batch: int, seed: int, rank: int = 0, world_size: int = 1):
        if global_batch % world_size:
            raise SslvitError(f"train.batch_size={global_batch} is not divisible by the {world_size} processes; "
                              f"use a multiple of {world_size}")
        if n < global_batch:
            raise SslvitError(f"the dataset has {n} images, fewer than train.batch_size={global_batch}; "
                              f"lower train.batch_size")
        self.n, self.global_batch, self.seed = n, global_batch, seed
        self.rank, self.world_size = rank, world_size
        self.local_batch = global_batch // world_size
        self.steps_per_epoch = n // global_batch
        self._cache: Tuple[int, torch.Tensor] = (-1, torch.empty(0))

    def permutation(self, epoch: int) -> torch.Tensor:
        if self._cache[0] != epoch:
            g = torch.Generator().manual_seed(derive_seed("order", self.seed, epoch))
            self._cache = (epoch, torch.randperm(self.n, generator=g))
        return self._cache[1]

    def indices(self, step: int) -> torch.Tensor:
        """(local_batch,) dataset indices of this rank at global step ``step``."""
        epoch, i = divmod(step, self.steps_per_epoch)
        glob = self.permutation(epoch)[i * self.global_batch:(i + 1) * self.global_batch]
        return glob[self.rank * self.local_batch:(self.rank + 1) * self.local_batch]


class TensorTwoViews:
    def __init__(self, data: TensorImages, order: BatchOrder, augment, device: torch.device, seed: int):
        self.data, self.order, self.augment, self.device, self.seed = data, order, augment.to(device), device, seed
        self.images = data.images.to(device) if device.type == "cuda" else data.images
        self.steps_per_epoch = order.steps_per_epoch

    def batches(self, start_step: int) -> Iterator[Tuple[torch.Tensor, ...]]:
        """(x1, x2) per step; (x1, x2, local) with a :class:`MultiCropAugment`."""
        step = start_step
        while True:
            idx = self.order.indices(step).to(self.images.device)
            g = torch.Generator().manual_seed(derive_seed("aug", self.seed, step))   # same on every rank
            x = self.images[idx].to(self.device, non_blocking=True)                   # (B, C, H, W) uint8
            yield self.augment(x, g, self.order.rank * self.order.local_batch, self.order.global_batch)
            step += 1


class _SeededTwoViewFiles(Dataset):
    """``dataset[(index, seed)] -> (view1, view2)``; decoding failures follow ``on_bad_image``."""

    def __init__(self, files: FileImages, t1, t2, on_bad_image: str):
        self.files, self.t1, self.t2, self.on_bad = files, t1, t2, on_bad_image
        self.loader = pil_loader

    def __len__(self):
        return len(self.files)

    def __getitem__(self, key):
        idx, seed = key
        for attempt in range(len(self.files)):
            path = self.files.samples[(idx + attempt) % len(self.files)][0]
            try:
                img = self.loader(path, self.files.in_chans)
                break
            except Exception as e:  # noqa: BLE001 - PIL raises many types
                if self.on_bad == "fail":
                    raise SslvitError(f"cannot decode image '{path}' ({type(e).__name__}); remove it or "
                                      f"--set data.on_bad_image=skip") from None
                warnings.warn(f"skipping unreadable image '{path}' ({type(e).__name__})", stacklevel=1)
        torch.manual_seed(seed)
        return self.t1(img), self.t2(img)


class _StepBatchSampler:
    def __init__(self, order: BatchOrder, start_step: int, seed: int):
        self.order, self.start, self.seed = order, start_step, seed

    def __iter__(self) -> Iterator[List[Tuple[int, int]]]:
        step = self.start
        while True:
            idx = self.order.indices(step).tolist()
            base = self.order.rank * self.order.local_batch        # position in the global batch
            yield [(i, derive_seed("aug", self.seed, step, base + j)) for j, i in enumerate(idx)]
            step += 1


class FileTwoViews:
    def __init__(self, files: FileImages, order: BatchOrder, t1, t2, device: torch.device, seed: int,
                 num_workers: int, on_bad_image: str):
        self.ds = _SeededTwoViewFiles(files, t1, t2, on_bad_image)
        self.order, self.device, self.seed, self.num_workers = order, device, seed, num_workers
        self.steps_per_epoch = order.steps_per_epoch

    def batches(self, start_step: int) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
        loader = DataLoader(self.ds, batch_sampler=_StepBatchSampler(self.order, start_step, self.seed),
                            num_workers=self.num_workers, pin_memory=self.device.type == "cuda",
                            persistent_workers=False, prefetch_factor=4 if self.num_workers else None)
        for x1, x2 in loader:
            yield x1.to(self.device, non_blocking=True), x2.to(self.device, non_blocking=True)


def two_view_stream(data, aug_cfg, input_spec: InputSpec, order: BatchOrder, device: torch.device, seed: int,
                    num_workers: int = 2, on_bad_image: str = "fail", local_crops: int = 0):
    """Pick the batched tensor path for in-memory data, torchvision v2 per sample for files. ``local_crops > 0``
    (in-memory data only): batches ``(x1, x2, local)`` with ``local`` ``(local_crops, B, C, s, s)``."""
    if isinstance(data, TensorImages):
        if data.in_chans != input_spec.in_chans:
            raise SslvitError(f"the dataset has {data.in_chans} channel(s) but model.in_chans={input_spec.in_chans}; "
                              f"--set model.in_chans={data.in_chans}")
        args = (aug_cfg, input_spec.img_size, list(input_spec.mean), list(input_spec.std))
        aug = MultiCropAugment(*args, local_crops) if local_crops else TwoViewAugment(*args)
        return TensorTwoViews(data, order, aug, device, seed)
    if local_crops:
        raise SslvitError(f"method.local_crops={local_crops} needs an in-memory dataset (the batched augmentation; "
                          f"'{data.name}' is read from files); set method.local_crops=0")
    t = [view_transform(aug_cfg, input_spec.img_size, list(input_spec.mean), list(input_spec.std), v,
                        input_spec.in_chans) for v in (0, 1)]
    files = FileImages(data.samples, data.classes, data.name, data.mean, data.std, input_spec.in_chans, data.img_size)
    return FileTwoViews(files, order, t[0], t[1], device, seed, num_workers, on_bad_image)
