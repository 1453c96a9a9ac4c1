"""Multi-crop views: MoCo v3's two global views plus ``local_crops`` small local views per image.

Multi-crop is not part of MoCo v3: it comes from SwAV (Caron et al. 2020, "Unsupervised Learning of Visual
Features by Contrasting Cluster Assignments", sec. 3.2) and DINO (Caron et al. 2021, sec. 3.1 / appendix):
a few low-resolution crops of small parts of the image, cheap because a ViT's cost grows with its tokens
(28 px at patch 7: 16 tokens; a 14-px local view: 4).

The two global views are exactly :class:`~ssl_vit.transforms.batched.TwoViewAugment`'s (same draws from the
generator, bit-identical); the local views' draws follow them in the same generator, so the whole batch is
still a pure function of ``(seed, step)`` and independent of the number of ranks. A local view is a random
resized crop of ``aug.local_crop_scale`` of the area to ``aug.local_size`` px, then flip, colour jitter and
grayscale as the global views, with DINO's local-view blur (p 0.5, the global views' sigma in pixels) and
no solarization.

Example::

    aug = MultiCropAugment(AugConfig(), img_size=28, mean=(0.286,), std=(0.353,), local_crops=2)
    x1, x2, local = aug(images_uint8, torch.Generator().manual_seed(0))
    # x1, x2: (B, 1, 28, 28); local: (2, B, 1, 14, 14), all float32, normalised
"""

from __future__ import annotations

from typing import Sequence, Tuple

import torch

from ssl_vit.config.schema import AugConfig
from ssl_vit.transforms.batched import TwoViewAugment, _Draw

LOCAL_BLUR_PROB = 0.5  # DINO's local-view transform: GaussianBlur(p=0.5), no solarization
LOCAL_SOLARIZE_PROB = 0.0


class MultiCropAugment(TwoViewAugment):
    """uint8 ``(B, C, H, W)`` -> ``(x1, x2, local)``: the two global views ``(B, C, img_size, img_size)`` and
    ``local`` ``(local_crops, B, C, aug.local_size, aug.local_size)``."""

    def __init__(self, cfg: AugConfig, img_size: int, mean: Sequence[float], std: Sequence[float], local_crops: int):
        super().__init__(cfg, img_size, mean, std)
        self.local_crops = local_crops

    def forward(
        self, images: torch.Tensor, g: torch.Generator, offset: int = 0, global_batch: int | None = None
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``offset``/``global_batch``: this slice's place in the global batch (data-parallel ranks)."""
        x = images.float().div_(255.0)  # (B, C, H, W) in [0, 1]
        d, c = _Draw(g, offset, global_batch), self.cfg
        x1, x2 = self.global_views(x, d)  # draws first: global views unchanged
        local = [
            self.view(x, LOCAL_BLUR_PROB, LOCAL_SOLARIZE_PROB, d, c.local_crop_scale, c.local_size)
            for _ in range(self.local_crops)
        ]  # each (B, C, s, s)
        return x1, x2, torch.stack(local)  # (L, B, C, s, s)
