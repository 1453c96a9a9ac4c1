"""Batched crop-after-padding + flip for `sslvit train` (ssl_vit/transforms/supervised.py)."""

import torch
import torch.nn.functional as F

from ssl_vit.core.input_spec import InputSpec
from ssl_vit.transforms.supervised import CropFlip

CFG = InputSpec(8, 1, (0.5,), (0.25,))


def test_no_padding_no_flip_is_normalisation_only():
    x = torch.randint(0, 256, (4, 1, 8, 8), dtype=torch.uint8)
    y = CropFlip(CFG, padding=0, hflip_prob=0.0)(x, torch.Generator().manual_seed(0))
    torch.testing.assert_close(y, (x.float() / 255 - 0.5) / 0.25)
    z = CropFlip(CFG, padding=0, hflip_prob=1.0)(x, torch.Generator().manual_seed(0))
    torch.testing.assert_close(z, y.flip(-1))


def test_each_sample_is_an_integer_shift_of_the_zero_padded_image():
    x = torch.randint(1, 256, (16, 1, 8, 8), dtype=torch.uint8)
    y = CropFlip(CFG, padding=2, hflip_prob=0.0)(x, torch.Generator().manual_seed(3)) * 0.25 + 0.5  # back to [0, 1]
    padded = F.pad(x.float() / 255, (2, 2, 2, 2))
    shifts = set()
    for i in range(16):
        hits = [
            (dy, dx)
            for dy in range(5)
            for dx in range(5)
            if torch.allclose(y[i, 0], padded[i, 0, dy : dy + 8, dx : dx + 8], atol=1e-6)
        ]
        assert len(hits) == 1, i
        shifts.add(hits[0])
    assert len(shifts) > 3  # per-sample draws, not one crop for the batch


def test_same_generator_same_batch():
    x = torch.randint(0, 256, (8, 3, 10, 10), dtype=torch.uint8)
    cfg = InputSpec(8, 1, (0.5,), (0.25,))  # RGB 10 px -> grey 8 px
    a = CropFlip(cfg, 2)(x, torch.Generator().manual_seed(1))
    b = CropFlip(cfg, 2)(x, torch.Generator().manual_seed(1))
    assert a.shape == (8, 1, 8, 8) and torch.equal(a, b)
