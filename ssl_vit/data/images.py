"""Two kinds of labelled image sets, the only things the rest of sslvit sees.

* :class:`TensorImages` -- the whole set in memory as one uint8 tensor ``(N, C, H, W)`` (Fashion-MNIST,
  CIFAR, STL-10). Batches are sliced and augmented as tensors: no per-sample Python, no workers.
* :class:`FileImages` -- a list of ``(path, label)`` decoded per sample (ImageFolder, VTAB, few-shot);
  augmented per sample with torchvision v2 in DataLoader workers.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple

import torch


@dataclass
class TensorImages:
    images: torch.Tensor                    # (N, C, H, W) uint8
    targets: Optional[torch.Tensor]         # (N,) int64, -1 for unlabelled; None when no labels at all
    classes: List[str] = field(default_factory=list)
    name: str = ""
    mean: Tuple[float, ...] = (0.5,)
    std: Tuple[float, ...] = (0.5,)

    def __post_init__(self):
        assert self.images.dtype == torch.uint8 and self.images.ndim == 4, "images must be uint8 (N, C, H, W)"

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def in_chans(self) -> int:
        return self.images.shape[1]

    @property
    def img_size(self) -> int:
        return self.images.shape[-1]

    def subset(self, idx: torch.Tensor) -> "TensorImages":
        return TensorImages(self.images[idx], None if self.targets is None else self.targets[idx],
                            self.classes, self.name, self.mean, self.std)


@dataclass
class FileImages:
    samples: List[Tuple[str, int]]          # (path, label)
    classes: List[str] = field(default_factory=list)
    name: str = ""
    mean: Tuple[float, ...] = (0.485, 0.456, 0.406)
    std: Tuple[float, ...] = (0.229, 0.224, 0.225)
    in_chans: int = 3
    img_size: int = 224                     # nominal size, for recipes' defaults only

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def targets(self) -> torch.Tensor:
        return torch.tensor([s[1] for s in self.samples], dtype=torch.long)

    def subset(self, idx: Sequence[int]) -> "FileImages":
        return FileImages([self.samples[int(i)] for i in idx], self.classes, self.name, self.mean, self.std,
                          self.in_chans, self.img_size)
