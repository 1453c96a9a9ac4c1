"""Linear probe: fast mode solves separable problems; protocol mode follows main_lincls and leaves the
backbone untouched (and notices when it is not)."""

import pytest
import torch
import torch.nn as nn

from ssl_vit.config.schema import ProbeConfig
from ssl_vit.core.input_spec import InputSpec
from ssl_vit.data.images import TensorImages
from ssl_vit.evaluation.linear_probe import fast_probe, protocol_probe, train_logreg_grid


def _separable(n, d=16, classes=5, seed=0):
    """Linearly separable by construction: the label is the argmax of a fixed linear map (the same map for
    every seed), and points within a margin of 1 of a decision boundary are dropped."""
    w = torch.randn(d, classes, generator=torch.Generator().manual_seed(1234))
    x = torch.randn(n * 4, d, generator=torch.Generator().manual_seed(seed))
    s = x @ w
    top2 = s.topk(2, dim=1).values
    keep = (top2[:, 0] - top2[:, 1]) > 1.0
    return x[keep][:n], s[keep][:n].argmax(1)


def test_fast_probe_reaches_100_percent_on_separable_features():
    xtr, ytr = _separable(2000, seed=0)
    xte, yte = _separable(500, seed=1)  # fresh points, same rule
    assert len(xte) == 500 and ytr.unique().numel() == 5
    res = fast_probe(xtr, ytr, xte, yte, ProbeConfig())
    assert res["top1"] == 100.0 and res["val_top1"] == 100.0
    assert len(res["sweep"]) == 3 * 3 and (res["lr"], res["weight_decay"]) in [
        (p["lr"], p["weight_decay"]) for p in res["sweep"]
    ]


def test_grid_points_train_independently():
    x, y = _separable(400)
    w, b, grid = train_logreg_grid(x, y, 5, [0.01, 0.1], [0.0, 0.1], epochs=3, batch_size=64)
    i = grid.index((0.1, 0.1))
    w1, b1, _ = train_logreg_grid(x, y, 5, [0.1], [0.1], epochs=3, batch_size=64)
    assert torch.allclose(w[i], w1[0], atol=1e-5) and torch.allclose(b[i], b1[0], atol=1e-5)


def _bar_images(n, seed):
    """Class = row of a bright bar: a linear probe on almost any features can learn it."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 4, (n,), generator=g)
    x = torch.randint(0, 40, (n, 1, 28, 28), generator=g).to(torch.uint8)
    for i, c in enumerate(y.tolist()):
        x[i, 0, 3 + 6 * c : 6 + 6 * c, 4:24] = 230
    return TensorImages(x, y)


INPUT_SPEC = InputSpec(28, 1, (0.3,), (0.3,))


def _tiny_backbone():
    from ssl_vit.config import ModelConfig
    from ssl_vit.models import create_backbone

    torch.manual_seed(0)
    return create_backbone(ModelConfig(name="vit_micro", img_size=28, patch_size=7, in_chans=1, depth=1))


def test_protocol_mode_reports_last_and_best_and_keeps_backbone_frozen():
    from ssl_vit.evaluation.features import extract_features

    model = _tiny_backbone()
    train, test = _bar_images(256, 0), _bar_images(128, 1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fte = extract_features(model, test, INPUT_SPEC)
    cfg = ProbeConfig(mode="protocol", epochs=4, batch_size=64, lr=0.5, crop_scale=(0.8, 1.0))
    res = protocol_probe(model, train, fte, test.targets, INPUT_SPEC, cfg)
    assert len(res["history"]) == 4 and res["top1"] == res["top1_last"] == res["history"][-1]
    assert res["top1_best"] == max(res["history"]) and 1 <= res["best_epoch"] <= 4
    assert "last epoch" in res["top1_is"] and res["backbone_unchanged"]
    assert res["top1_best"] > 40.0  # learns something (chance: 25 %)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert res["lr"] == 0.5 * 64 / 256  # lr x batch / 256


class _Drifting(nn.Module):
    """A 'frozen' backbone that changes itself in forward: the sanity check must catch it."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(28 * 28, 8)

    def forward(self, x):
        with torch.no_grad():
            self.lin.bias.add_(1e-3)
        return self.lin(x.flatten(1))


def test_protocol_sanity_check_catches_a_changed_backbone():
    train, test = _bar_images(64, 0), _bar_images(32, 1)
    m = _Drifting()
    with torch.no_grad():
        from ssl_vit.transforms.eval import to_model_input

        fte = m(to_model_input(test.images, INPUT_SPEC))
    with pytest.raises(RuntimeError, match="changed frozen backbone weights"):
        protocol_probe(m, train, fte, test.targets, INPUT_SPEC, ProbeConfig(mode="protocol", epochs=1, batch_size=32))


def test_random_resized_crop_flip_per_sample():
    from ssl_vit.evaluation.linear_probe import random_resized_crop_flip

    x = torch.arange(2 * 8 * 8, dtype=torch.float32).view(2, 1, 8, 8).repeat(4, 1, 1, 1)  # 8 images, 2 distinct
    full = random_resized_crop_flip(x, (1.0, 1.0), torch.Generator().manual_seed(0), ratio=(1.0, 1.0))
    for i in range(8):  # scale 1: the image itself or its mirror
        assert torch.allclose(full[i], x[i], atol=1e-4) or torch.allclose(full[i], x[i].flip(-1), atol=1e-4)
    crops = random_resized_crop_flip(x, (0.1, 0.3), torch.Generator().manual_seed(0))
    assert crops.shape == x.shape and not torch.allclose(crops[0], crops[2])  # same image, own crop
