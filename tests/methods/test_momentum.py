"""The one-pass momentum update (ssl_vit/methods/momentum.py) against lightly's update_momentum."""

import copy

import pytest
import torch
from lightly.models.utils import update_momentum as lightly_update_momentum

from ssl_vit.config import load_config
from ssl_vit.engine.trainer import build_model
from ssl_vit.methods.momentum import paired_parameters, update_momentum


def _model():
    cfg = load_config(
        "smoke",
        [
            "model.img_size=28",
            "model.patch_size=7",
            "model.in_chans=1",
            "method.proj_hidden_dim=64",
            "method.pred_hidden_dim=64",
            "method.out_dim=32",
        ],
    )
    torch.manual_seed(0)
    model = build_model(cfg, torch.device("cpu"))
    with torch.no_grad():  # online weights move away from the momentum copy, as after training
        for p in model.backbone.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.05)
        for p in model.projector.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model


def test_matches_lightly_within_float_rounding_over_many_updates():
    ours, ref = _model(), None
    ref = copy.deepcopy(ours)
    for m in [0.9, 0.99, 0.996, 0.5, 0.0, 1.0] * 5:
        with torch.no_grad():  # the online weights change between updates, as they train
            for a, b in zip(ours.backbone.parameters(), ref.backbone.parameters()):
                if a.requires_grad:
                    a.add_(torch.randn_like(a) * 1e-3)
                    b.copy_(a)
        update_momentum([ours.backbone, ours.projector], [ours.momentum_backbone, ours.momentum_projector], m)
        lightly_update_momentum(ref.backbone, ref.momentum_backbone, m)
        lightly_update_momentum(ref.projector, ref.momentum_projector, m)
    for (n, a), (_, b) in zip(ours.named_parameters(), ref.named_parameters()):
        assert torch.allclose(a, b, rtol=1e-6, atol=1e-7), (n, (a - b).abs().max())
    # buffers (the momentum projector's BN statistics) are left alone, as lightly and official MoCo v3 do
    for (n, a), (_, b) in zip(ours.named_buffers(), ref.named_buffers()):
        assert torch.equal(a, b), n


def test_one_update_is_the_ema_formula_and_frozen_parameters_stay_exact():
    model = _model()
    before = {n: p.detach().clone() for n, p in model.momentum_backbone.named_parameters()}
    online = dict(model.backbone.named_parameters())
    update_momentum(model.backbone, model.momentum_backbone, 0.9)
    for n, p in model.momentum_backbone.named_parameters():
        assert torch.allclose(p, 0.9 * before[n] + 0.1 * online[n], rtol=1e-6, atol=1e-7), n
        if not online[n].requires_grad:  # frozen patch projection / sin-cos position embedding: bit-identical
            assert torch.equal(p, online[n]), n
    assert any(not p.requires_grad for p in online.values())


def test_method_update_is_one_pass_over_both_modules(monkeypatch):
    model = _model()
    calls = []
    real = torch._foreach_lerp_
    monkeypatch.setattr(torch, "_foreach_lerp_", lambda a, b, w: (calls.append(len(a)), real(a, b, w)))
    model.update_momentum(0.99)
    n = len(list(model.momentum_backbone.parameters())) + len(list(model.momentum_projector.parameters()))
    assert sum(calls) == n and calls


def test_mismatched_modules_are_refused_by_name():
    a, b = torch.nn.Linear(3, 4), torch.nn.Linear(4, 3)
    with pytest.raises(ValueError, match="'weight'"):
        update_momentum(a, b, 0.9)
    with pytest.raises(ValueError, match="parameters"):
        update_momentum(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2, bias=False), 0.9)
    with pytest.raises(ValueError, match="modules"):
        paired_parameters(
            [a, a],
            [a],
        )
    c = torch.nn.Linear(3, 4)
    online, ema = paired_parameters(a, c)
    assert [t is s for t, s in zip(online, a.parameters())] == [True, True]
    assert [t is s for t, s in zip(ema, c.parameters())] == [True, True]
