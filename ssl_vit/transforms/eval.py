"""Turn any dataset's uint8 batch into what a backbone expects (its :class:`~ssl_vit.core.input_spec.InputSpec`).

A backbone's input spec travels with it (checkpoint metadata, timm ``pretrained_cfg`` style), so a
Fashion-MNIST backbone can be evaluated on CIFAR (RGB -> grey, 32 -> 28 px) and vice versa.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ssl_vit.core.input_spec import InputSpec
from ssl_vit.transforms.batched import grayscale


def to_model_input(images: torch.Tensor, input_spec: InputSpec) -> torch.Tensor:
    """uint8 ``(B, C, H, W)`` -> float ``(B, in_chans, img_size, img_size)``, normalised."""
    x = images.float().div_(255.0)
    c = int(input_spec.in_chans)
    if x.shape[1] == 3 and c == 1:
        x = grayscale(x)
    elif x.shape[1] == 1 and c == 3:
        x = x.expand(-1, 3, -1, -1)
    elif x.shape[1] != c:
        raise ValueError(f"cannot convert {x.shape[1]}-channel images to {c} channels")
    s = int(input_spec.img_size)
    if x.shape[-2:] != (s, s):
        x = F.interpolate(x, size=(s, s), mode="bilinear", antialias=True, align_corners=False)
    mean = torch.tensor(input_spec.mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    std = torch.tensor(input_spec.std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    if mean.shape[1] != c:  # stats of another channel count: average / repeat them
        mean = mean.mean(1, keepdim=True).expand(1, c, 1, 1)
        std = std.mean(1, keepdim=True).expand(1, c, 1, 1)
    return (x - mean) / std
