import torch
from torchvision.transforms.v2 import functional as TF

from ssl_vit.config import AugConfig
from ssl_vit.transforms.batched import TwoViewAugment, hsv_to_rgb, rgb_to_hsv


def _imgs(b=8, c=3, s=16):
    return torch.randint(0, 256, (b, c, s, s), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


def test_shapes_range_and_determinism():
    aug = TwoViewAugment(AugConfig(), 12, (0.5,) * 3, (0.5,) * 3)
    x = _imgs()
    a1, a2 = aug(x, torch.Generator().manual_seed(1))
    b1, b2 = aug(x, torch.Generator().manual_seed(1))
    c1, _ = aug(x, torch.Generator().manual_seed(2))
    assert a1.shape == a2.shape == (8, 3, 12, 12)
    assert torch.equal(a1, b1) and torch.equal(a2, b2) and not torch.equal(a1, c1)
    assert a1.min() >= -1 - 1e-5 and a1.max() <= 1 + 1e-5  # [0,1] normalised with mean=std=0.5


def test_per_sample_parameters_differ():
    """Identical images in a batch get different views (torchvision would give one crop per call)."""
    x = _imgs(1).expand(6, -1, -1, -1).contiguous()
    v, _ = TwoViewAugment(AugConfig(), 16, (0,) * 3, (1,) * 3)(x, torch.Generator().manual_seed(0))
    assert len({tuple(t.flatten()[:20].tolist()) for t in v}) == 6


def test_identity_settings_and_flip():
    cfg = AugConfig(
        crop_scale=(1.0, 1.0),
        crop_ratio=(1.0, 1.0),
        hflip_prob=0.0,
        jitter_prob=0.0,
        grayscale_prob=0.0,
        blur_prob=(0.0, 0.0),
        solarize_prob=(0.0, 0.0),
    )
    x = _imgs()
    v1, v2 = TwoViewAugment(cfg, 16, (0,) * 3, (1,) * 3)(x, torch.Generator().manual_seed(0))
    assert torch.allclose(v1, x.float() / 255, atol=1e-5) and torch.allclose(v2, v1)
    cfg.hflip_prob = 1.0
    f1, _ = TwoViewAugment(cfg, 16, (0,) * 3, (1,) * 3)(x, torch.Generator().manual_seed(0))
    assert torch.allclose(f1, x.float().flip(-1) / 255, atol=1e-5)


def test_solarize_and_grayscale_always():
    cfg = AugConfig(
        crop_scale=(1.0, 1.0),
        crop_ratio=(1.0, 1.0),
        hflip_prob=0.0,
        jitter_prob=0.0,
        grayscale_prob=1.0,
        blur_prob=(0.0, 0.0),
        solarize_prob=(1.0, 1.0),
    )
    x = _imgs()
    v, _ = TwoViewAugment(cfg, 16, (0,) * 3, (1,) * 3)(x, torch.Generator().manual_seed(0))
    g = TF.rgb_to_grayscale(x.float() / 255, num_output_channels=3)
    ref = torch.where(g >= 0.5, 1 - g, g)
    assert torch.allclose(v, ref, atol=1e-5)


def test_hsv_roundtrip_and_matches_torchvision_hue():
    x = torch.rand(4, 3, 5, 5)
    assert torch.allclose(hsv_to_rgb(rgb_to_hsv(x)), x, atol=1e-5)
    hsv = rgb_to_hsv(x)
    hsv[:, 0] = torch.remainder(hsv[:, 0] + 0.1, 1.0)
    assert torch.allclose(hsv_to_rgb(hsv), TF.adjust_hue(x, 0.1), atol=1e-4)


def test_grey_images_supported():
    v1, v2 = TwoViewAugment(AugConfig(), 28, (0.3,), (0.3,))(_imgs(4, 1, 28), torch.Generator().manual_seed(0))
    assert v1.shape == (4, 1, 28, 28) and torch.isfinite(v2).all()


def test_views_do_not_depend_on_the_rank_split():
    """1 rank x 8 images == 2 ranks x 4 images: each rank keeps its slice of the global draws."""
    aug = TwoViewAugment(AugConfig(), 12, (0.5,) * 3, (0.5,) * 3)
    x = _imgs(8)
    full1, full2 = aug(x, torch.Generator().manual_seed(3))
    for rank in range(2):
        a1, a2 = aug(x[rank * 4 : (rank + 1) * 4], torch.Generator().manual_seed(3), rank * 4, 8)
        assert torch.allclose(a1, full1[rank * 4 : (rank + 1) * 4], atol=1e-6)
        assert torch.allclose(a2, full2[rank * 4 : (rank + 1) * 4], atol=1e-6)
