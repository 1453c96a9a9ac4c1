"""Per-sample torchvision v2 pipelines for file datasets (decoded in DataLoader workers).

The pretraining pipeline mirrors :mod:`ssl_vit.transforms.batched` parameter for parameter, so a
recipe means the same augmentation whichever data path runs it.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torchvision.transforms import v2

from ssl_vit.config.schema import AugConfig


def _blur(img_size: int, sigma: Sequence[float], p: float):
    scale = img_size / 224.0
    lo, hi = sigma[0] * scale, sigma[1] * scale
    k = 2 * max(1, int(round(3 * hi))) + 1
    return v2.RandomApply([v2.GaussianBlur(k, sigma=(max(lo, 1e-3), max(hi, 1e-3)))], p=p)


def view_transform(cfg: AugConfig, img_size: int, mean, std, view: int, in_chans: int = 3):
    """One of the two MoCo v3 views (0 or 1) as a torchvision v2 pipeline: PIL/uint8 -> float tensor."""
    ops = [
        v2.ToImage(),
        v2.RandomResizedCrop(img_size, scale=tuple(cfg.crop_scale), ratio=tuple(cfg.crop_ratio), antialias=True),
        v2.RandomHorizontalFlip(cfg.hflip_prob),
        v2.RandomApply(
            [
                v2.ColorJitter(
                    cfg.brightness,
                    cfg.contrast,
                    cfg.saturation if in_chans == 3 else 0,
                    cfg.hue if in_chans == 3 else 0,
                )
            ],
            p=cfg.jitter_prob,
        ),
    ]
    if in_chans == 3:
        ops.append(v2.RandomGrayscale(cfg.grayscale_prob))
    ops += [
        _blur(img_size, cfg.blur_sigma, cfg.blur_prob[view]),
        v2.RandomSolarize(128, cfg.solarize_prob[view]),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(list(mean), list(std)),
    ]
    return v2.Compose(ops)


def eval_transform(img_size: int, crop_pct: float | None = None):
    """Resize (shorter side to img_size / crop_pct) + centre crop -> uint8 tensor (C, img_size, img_size).
    Normalisation and channel conversion happen batched in :func:`ssl_vit.transforms.eval.to_model_input`."""
    crop_pct = crop_pct if crop_pct is not None else (0.875 if img_size >= 64 else 1.0)
    return v2.Compose(
        [v2.ToImage(), v2.Resize(int(round(img_size / crop_pct)), antialias=True), v2.CenterCrop(img_size)]
    )
