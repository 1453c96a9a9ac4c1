"""MoCo v3's two asymmetric views, computed for a whole uint8 batch at once as tensor ops.

Paper: MoCo v3 (Chen et al. 2021) appendix / BYOL (Grill et al. 2020) Table 6 augmentation:
random resized crop + flip, colour jitter (0.4, 0.4, 0.2, 0.1) with p=0.8, grayscale p=0.2,
Gaussian blur p=1.0 / 0.1, solarize p=0 / 0.2 (view 1 / view 2).

Why by hand: torchvision's transforms draw *one* set of random parameters per call, so a batch would
share one crop and one jitter; per-sample torchvision is ~100x slower for small in-memory images.
Here every sample gets its own parameters, drawn from an explicit ``torch.Generator`` (exact resume).

Differences from torchvision, kept deliberately small:
* crop + flip are one ``affine_grid``/``grid_sample`` (bilinear, no antialias); torchvision retries
  10 times to fit a crop inside the image, here the sampled width/height are clipped to the image;
* the four jitter ops run in one random order per batch (torchvision: per sample);
* blur sigma is given in pixels at 224 px and scaled by ``img_size / 224``.

Example::

    aug = TwoViewAugment(AugConfig(), img_size=28, mean=(0.286,), std=(0.353,))
    g = torch.Generator().manual_seed(0)
    x1, x2 = aug(images_uint8, g)        # (B, C, 28, 28) float32 each, normalised
"""

from __future__ import annotations

import math
from typing import Sequence, Tuple

import torch
import torch.nn.functional as F

from ssl_vit.config.schema import AugConfig

_GRAY = (0.2989, 0.587, 0.114)  # torchvision rgb_to_grayscale coefficients


class _Draw:
    """Per-sample random numbers for a slice of a (possibly larger, multi-rank) global batch.

    Every draw produces ``total`` values and keeps ``[offset, offset + n)``, so a sample's augmentation
    depends only on the generator and its position in the global batch -- not on how the batch is
    split over processes (1 rank x B and 2 ranks x B/2 see identical views)."""

    def __init__(self, g: torch.Generator, offset: int = 0, total: int | None = None):
        self.g, self.offset, self.total = g, offset, total

    def rand(self, n: int) -> torch.Tensor:
        total = self.total or n
        return torch.rand(total, generator=self.g)[self.offset : self.offset + n]

    def uniform(self, n: int, lo: float, hi: float) -> torch.Tensor:
        return self.rand(n) * (hi - lo) + lo

    def bernoulli(self, n: int, p: float) -> torch.Tensor:
        return self.rand(n) < p


def grayscale(x: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) -> (B, 1, H, W) luma, as torchvision's rgb_to_grayscale."""
    w = x.new_tensor(_GRAY).view(1, 3, 1, 1)
    return (x * w).sum(1, keepdim=True)


def rgb_to_hsv(x: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) in [0, 1] -> hsv in [0, 1]; vectorised form of torchvision's _rgb2hsv."""
    r, g, b = x.unbind(1)
    maxc, _ = x.max(1)
    minc, _ = x.min(1)
    eqc = maxc == minc
    cr = maxc - minc
    s = cr / torch.where(eqc, torch.ones_like(maxc), maxc)
    cr_div = torch.where(eqc, torch.ones_like(cr), cr)
    rc, gc, bc = (maxc - r) / cr_div, (maxc - g) / cr_div, (maxc - b) / cr_div
    hr = (maxc == r) * (bc - gc)
    hg = ((maxc == g) & (maxc != r)) * (2.0 + rc - bc)
    hb = ((maxc != g) & (maxc != r)) * (4.0 + gc - rc)
    h = torch.fmod((hr + hg + hb) / 6.0 + 1.0, 1.0)
    return torch.stack((h, s, maxc), 1)


def hsv_to_rgb(x: torch.Tensor) -> torch.Tensor:
    h, s, v = x.unbind(1)
    i = torch.floor(h * 6.0)
    f = h * 6.0 - i
    i = i.to(torch.int64) % 6
    p = (v * (1.0 - s)).clamp(0, 1)
    q = (v * (1.0 - s * f)).clamp(0, 1)
    t = (v * (1.0 - s * (1.0 - f))).clamp(0, 1)
    mask = i.unsqueeze(1) == torch.arange(6, device=x.device).view(1, -1, 1, 1)  # (B, 6, H, W)
    a1 = torch.stack((v, q, p, p, t, v), 1)
    a2 = torch.stack((t, v, v, q, p, p), 1)
    a3 = torch.stack((p, p, t, v, v, q), 1)
    a4 = torch.stack((a1, a2, a3), 1)  # (B, 3, 6, H, W)
    return (a4 * mask.unsqueeze(1)).sum(2)


class TwoViewAugment(torch.nn.Module):
    """uint8 ``(B, C, H, W)`` -> two normalised float views ``(B, C, img_size, img_size)``."""

    def __init__(self, cfg: AugConfig, img_size: int, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        self.cfg, self.img_size = cfg, img_size
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)

    def forward(
        self, images: torch.Tensor, g: torch.Generator, offset: int = 0, global_batch: int | None = None
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """``offset``/``global_batch``: this slice's place in the global batch (data-parallel ranks)."""
        x = images.float().div_(255.0)  # (B, C, H, W) in [0, 1]
        return self.global_views(x, _Draw(g, offset, global_batch))

    def global_views(self, x: torch.Tensor, d: _Draw) -> Tuple[torch.Tensor, torch.Tensor]:
        """(B, C, H, W) in [0, 1] -> the two views (B, C, img_size, img_size), drawing from ``d`` in order."""
        c = self.cfg
        v1 = self.view(x, c.blur_prob[0], c.solarize_prob[0], d, c.crop_scale, self.img_size)
        v2 = self.view(x, c.blur_prob[1], c.solarize_prob[1], d, c.crop_scale, self.img_size)
        return v1, v2

    # -- one view ---------------------------------------------------------------------------
    def view(
        self, x: torch.Tensor, blur_p: float, solarize_p: float, g: _Draw, crop_scale: Tuple[float, float], size: int
    ) -> torch.Tensor:
        """(B, C, H, W) in [0, 1] -> one normalised view (B, C, size, size), crops covering ``crop_scale`` of the
        area."""
        x = self.resized_crop_flip(x, g, crop_scale, size)
        x = self.color_jitter(x, g)
        x = self.random_grayscale(x, g)
        x = self.blur(x, blur_p, g)
        if solarize_p > 0:
            m = g.bernoulli(x.shape[0], solarize_p).to(x.device).view(-1, 1, 1, 1)
            x = torch.where(m & (x >= 0.5), 1.0 - x, x)
        return (x - self.mean) / self.std

    def resized_crop_flip(self, x: torch.Tensor, g: _Draw, crop_scale: Tuple[float, float], size: int) -> torch.Tensor:
        B, C, H, W = x.shape
        c = self.cfg
        area = g.uniform(B, crop_scale[0], crop_scale[1])
        logr = g.uniform(B, math.log(c.crop_ratio[0]), math.log(c.crop_ratio[1]))
        ratio = torch.exp(logr)
        w = torch.sqrt(area * ratio).clamp(max=1.0)  # fraction of width
        h = torch.sqrt(area / ratio).clamp(max=1.0)
        cx = (g.rand(B) * 2 - 1) * (1 - w)  # centre in [-1+w, 1-w]
        cy = (g.rand(B) * 2 - 1) * (1 - h)
        flip = torch.where(g.bernoulli(B, c.hflip_prob), -1.0, 1.0)
        theta = torch.zeros(B, 2, 3)
        theta[:, 0, 0], theta[:, 0, 2] = w * flip, cx
        theta[:, 1, 1], theta[:, 1, 2] = h, cy
        grid = F.affine_grid(theta.to(x.device), [B, C, size, size], align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)

    def color_jitter(self, x: torch.Tensor, g: _Draw) -> torch.Tensor:
        B, C = x.shape[:2]
        c = self.cfg
        apply = g.bernoulli(B, c.jitter_prob)

        def factor(strength):  # (B, 1, 1, 1)
            f = g.uniform(B, max(0.0, 1 - strength), 1 + strength)
            return torch.where(apply, f, torch.ones_like(f)).to(x.device).view(-1, 1, 1, 1)

        b, ct, s = factor(c.brightness), factor(c.contrast), factor(c.saturation)
        hue = torch.where(apply, g.uniform(B, -c.hue, c.hue), torch.zeros(B)).to(x.device).view(-1, 1, 1)
        for op in torch.randperm(4, generator=g.g).tolist():
            if op == 0:
                x = (x * b).clamp_(0, 1)
            elif op == 1:
                gray = grayscale(x) if C == 3 else x
                m = gray.mean(dim=(1, 2, 3), keepdim=True)
                x = (ct * x + (1 - ct) * m).clamp_(0, 1)
            elif op == 2 and C == 3:
                x = (s * x + (1 - s) * grayscale(x)).clamp_(0, 1)
            elif op == 3 and C == 3 and c.hue > 0:
                hsv = rgb_to_hsv(x)
                hsv[:, 0] = torch.remainder(hsv[:, 0] + hue, 1.0)
                x = hsv_to_rgb(hsv)
        return x

    def random_grayscale(self, x: torch.Tensor, g: _Draw) -> torch.Tensor:
        m = g.bernoulli(x.shape[0], self.cfg.grayscale_prob).to(x.device).view(-1, 1, 1, 1)
        if x.shape[1] != 3:  # already grey: a no-op, but keep the RNG stream aligned
            return x
        return torch.where(m, grayscale(x).expand_as(x), x)

    def blur(self, x: torch.Tensor, p: float, g: _Draw) -> torch.Tensor:
        B, C, H, W = x.shape
        scale = self.img_size / 224.0  # of the image, also for smaller local views (DINO: same sigma at 96 px)
        lo, hi = self.cfg.blur_sigma[0] * scale, self.cfg.blur_sigma[1] * scale
        sigma = g.uniform(B, lo, hi)
        apply = g.bernoulli(B, p)
        if p <= 0 or hi < 0.2:  # a sigma below 0.2 px changes nothing measurable
            return x
        radius = max(1, math.ceil(3 * hi))
        t = torch.arange(-radius, radius + 1, dtype=torch.float32)
        k = torch.exp(-0.5 * (t.view(1, -1) / sigma.view(-1, 1)) ** 2)  # (B, K)
        k = k / k.sum(1, keepdim=True)
        delta = (t == 0).float().expand_as(k)
        k = torch.where(apply.view(-1, 1), k, delta).to(x.device)
        k = k.repeat_interleave(C, 0)  # (B*C, K)
        y = x.reshape(1, B * C, H, W)  # channels as groups
        y = F.pad(y, (radius, radius, radius, radius), mode="reflect" if radius < min(H, W) else "replicate")
        y = F.conv2d(y, k.view(B * C, 1, 1, -1), groups=B * C)  # horizontal
        y = F.conv2d(y, k.view(B * C, 1, -1, 1), groups=B * C)  # vertical
        return y.view(B, C, H, W)
