"""Multi-crop views: shapes, global views unchanged, a pure function of (seed, step) and of the global batch."""

import torch

from ssl_vit.config.schema import AugConfig
from ssl_vit.data.images import TensorImages
from ssl_vit.data.streams import BatchOrder, TensorTwoViews
from ssl_vit.transforms.batched import TwoViewAugment
from ssl_vit.transforms.multicrop import MultiCropAugment


def _imgs(n, c=1, s=28, seed=0):
    return torch.randint(0, 256, (n, c, s, s), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


def _aug(c=1, local_crops=2, **kw):
    return MultiCropAugment(AugConfig(**kw), 28, (0.3,) * c, (0.3,) * c, local_crops)


def test_shapes_grey_and_rgb():
    for c in (1, 3):
        x1, x2, local = _aug(c, local_crops=3)(_imgs(6, c), torch.Generator().manual_seed(0))
        assert x1.shape == x2.shape == (6, c, 28, 28)
        assert local.shape == (3, 6, c, 14, 14) and local.dtype == torch.float32
        assert torch.isfinite(local).all()
    _, _, local = _aug(local_size=21)(_imgs(4), torch.Generator().manual_seed(0))
    assert local.shape == (2, 4, 1, 21, 21)


def test_global_views_are_bit_identical_to_two_view_augment():
    imgs = _imgs(6)
    v1, v2 = TwoViewAugment(AugConfig(), 28, (0.3,), (0.3,))(imgs, torch.Generator().manual_seed(3))
    x1, x2, _ = _aug()(imgs, torch.Generator().manual_seed(3))
    assert torch.equal(v1, x1) and torch.equal(v2, x2)


def test_local_views_are_a_pure_function_of_the_generator_and_differ_from_each_other():
    imgs = _imgs(6)
    a = _aug()(imgs, torch.Generator().manual_seed(5))[2]
    b = _aug()(imgs, torch.Generator().manual_seed(5))[2]
    c = _aug()(imgs, torch.Generator().manual_seed(6))[2]
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert not torch.equal(a[0], a[1])  # two local views of an image: two crops


def test_local_views_do_not_depend_on_the_rank_split():
    """1 rank x 8 images and the second of 2 ranks x 4 see the same views of the same images."""
    imgs = _imgs(8)
    full = _aug()(imgs, torch.Generator().manual_seed(2))
    half = _aug()(imgs[4:], torch.Generator().manual_seed(2), offset=4, global_batch=8)
    assert torch.equal(full[0][4:], half[0]) and torch.equal(full[1][4:], half[1])
    assert torch.equal(full[2][:, 4:], half[2])  # local: (L, B, C, s, s)


def test_stream_batches_are_a_pure_function_of_seed_and_step():
    data = TensorImages(_imgs(64), None, [], "t", (0.3,), (0.3,))
    order = BatchOrder(64, 16, seed=0)

    def stream():
        return TensorTwoViews(data, order, _aug(), torch.device("cpu"), seed=0)

    run = stream().batches(0)
    batches = [next(run) for _ in range(4)]
    resumed = next(stream().batches(3))  # a resumed run starts at step 3
    assert len(resumed) == 3 and resumed[2].shape == (2, 16, 1, 14, 14)
    for a, b in zip(batches[3], resumed):
        assert torch.equal(a, b)
    assert not torch.equal(batches[2][2], batches[3][2])
