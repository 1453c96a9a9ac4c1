"""Supervised training augmentation on whole batches: random crop after zero padding + horizontal flip.

The standard CIFAR / small-image recipe (pad ``p`` pixels with zeros, crop back to the image size at a
random integer offset, flip with probability 0.5), as tensor ops on a uint8 batch with per-sample draws
from an explicit generator (exact resume), like :mod:`ssl_vit.transforms.batched`. Integer shifts by
indexing, no interpolation. Channels and size are first converted to the model's input spec
(:func:`~ssl_vit.transforms.eval.to_model_input`), so any dataset feeds any backbone.

Example::

    aug = CropFlip(InputSpec(img_size=28, in_chans=1, mean=(0.286,), std=(0.353,)), padding=4)
    x = aug(images_uint8, torch.Generator().manual_seed(0))     # (B, 1, 28, 28) float32, normalised
"""

from __future__ import annotations

import torch

from ssl_vit.core.input_spec import InputSpec
from ssl_vit.transforms.batched import _Draw
from ssl_vit.transforms.eval import to_model_input


class CropFlip(torch.nn.Module):
    """uint8 ``(B, C, H, W)`` -> normalised float ``(B, in_chans, S, S)``."""

    def __init__(self, input_spec: InputSpec, padding: int = 4, hflip_prob: float = 0.5):
        super().__init__()
        self.input_spec, self.padding, self.hflip_prob = input_spec, int(padding), float(hflip_prob)
        self.raw_spec = input_spec.unnormalised()  # convert only, no normalisation
        self.register_buffer(
            "mean", torch.tensor(input_spec.mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False
        )
        self.register_buffer(
            "std", torch.tensor(input_spec.std, dtype=torch.float32).view(1, -1, 1, 1), persistent=False
        )

    def forward(
        self, images: torch.Tensor, g: torch.Generator, offset: int = 0, global_batch: int | None = None
    ) -> torch.Tensor:
        x = to_model_input(images, self.raw_spec)  # (B, C, S, S) in [0, 1]
        B, C, S, _ = x.shape
        d, p = _Draw(g, offset, global_batch), self.padding
        oy = (d.rand(B) * (2 * p + 1)).long().clamp_(max=2 * p)  # (B,) top offset in the padded image
        ox = (d.rand(B) * (2 * p + 1)).long().clamp_(max=2 * p)
        flip = d.bernoulli(B, self.hflip_prob)
        if p > 0:
            xp = torch.nn.functional.pad(x, (p, p, p, p))  # (B, C, S+2p, S+2p), zeros
            ar = torch.arange(S)
            rows = (oy.view(B, 1) + ar).to(x.device)  # (B, S)
            cols = (ox.view(B, 1) + ar).to(x.device)  # (B, S)
            b = torch.arange(B, device=x.device).view(B, 1, 1)
            x = xp.permute(0, 2, 3, 1)[b, rows.view(B, S, 1), cols.view(B, 1, S)]  # (B, S, S, C)
            x = x.permute(0, 3, 1, 2)  # (B, C, S, S)
        x = torch.where(flip.to(x.device).view(B, 1, 1, 1), x.flip(-1), x)
        mean = self.mean.to(x.device)
        std = self.std.to(x.device)
        if mean.shape[1] != C:
            mean, std = mean.mean(1, keepdim=True), std.mean(1, keepdim=True)
        return ((x - mean) / std).contiguous()
