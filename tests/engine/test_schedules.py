import math

import torch
from lightly.models.utils import update_momentum

from ssl_vit.engine.schedules import lr_at, momentum_at, scaled_lr


def test_lr_warmup_then_cosine_at_known_steps():
    peak, T, W = 1e-3, 100, 10
    assert lr_at(0, T, peak, W) == 0.0
    assert math.isclose(lr_at(5, T, peak, W), 0.5e-3)
    assert math.isclose(lr_at(10, T, peak, W), peak)  # end of warm-up
    assert math.isclose(lr_at(55, T, peak, W), peak * 0.5)  # half-way through the cosine
    assert math.isclose(lr_at(100, T, peak, W), 0.0, abs_tol=1e-15)
    assert math.isclose(lr_at(100, T, peak, W, min_lr=1e-5), 1e-5)


def test_momentum_cosine_from_base_to_one():
    assert math.isclose(momentum_at(0, 100, 0.99), 0.99)
    assert math.isclose(momentum_at(50, 100, 0.99), 0.995)
    assert math.isclose(momentum_at(100, 100, 0.99), 1.0)
    vals = [momentum_at(s, 100, 0.99) for s in range(101)]
    assert all(b >= a for a, b in zip(vals, vals[1:]))


def test_lr_scaling_rule():
    assert scaled_lr(1.5e-4, 4096) == 1.5e-4 * 16
    assert scaled_lr(1.5e-4, 4096, "none") == 1.5e-4


def test_momentum_update_formula():
    a, b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    before = b.weight.detach().clone()
    update_momentum(a, b, 0.9)
    assert torch.allclose(b.weight, 0.9 * before + 0.1 * a.weight)
