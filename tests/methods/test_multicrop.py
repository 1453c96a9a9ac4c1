"""Multi-crop MoCo v3 (method.local_crops): the loss by hand, local_crops=0 is the previous loss, local views
reach the base encoder only, one-line config errors, and a smoke pretrain end to end."""

import copy
import json
import math

import pytest
import torch
from timm.models import VisionTransformer

from ssl_vit.config import MethodConfig, ModelConfig, apply_overrides, load_config
from ssl_vit.config.schema import BootstrapConfig
from ssl_vit.errors import SslvitError
from ssl_vit.methods.bootstrap_mocov3 import BootstrapMoCoV3
from ssl_vit.methods.losses import contrastive_loss
from ssl_vit.methods.mocov3 import MoCoV3, build_mocov3
from ssl_vit.methods.multicrop import multicrop_loss
from ssl_vit.models import create_backbone
from ssl_vit.runs import pretrain


def _ctr_by_hand(q, k, tau):
    """Explicit logits q_i . k_j / tau of L2-normalised rows, cross-entropy with positives on the diagonal, * 2 tau."""

    def unit(r):
        n = math.sqrt(sum(v * v for v in r))
        return [v / n for v in r]

    qn, kn = [unit(r) for r in q], [unit(r) for r in k]
    ce = 0.0
    for i, qi in enumerate(qn):
        logits = [sum(a * b for a, b in zip(qi, kj)) / tau for kj in kn]
        ce += -(logits[i] - math.log(sum(math.exp(z) for z in logits)))
    return ce / len(qn) * 2 * tau


# 2 global + 2 local queries, 2 keys, batch 3, dim 4
Q1 = [[1.0, 0.0, 2.0, -1.0], [0.5, 1.5, 0.0, 0.0], [-1.0, 1.0, 1.0, 3.0]]
Q2 = [[0.2, -1.0, 1.0, 0.0], [1.0, 1.0, 1.0, 1.0], [0.0, 0.3, -2.0, 1.0]]
L1 = [[2.0, 0.1, 0.0, 0.0], [0.0, 1.0, -1.0, 0.5], [1.0, -1.0, 0.0, 2.0]]
L2 = [[-0.5, 0.5, 0.5, -0.5], [0.3, 0.0, 0.9, 0.1], [0.0, 0.0, 1.0, 1.0]]
K1 = [[0.9, 0.1, 2.1, -0.8], [0.0, 2.0, 0.2, 0.1], [-0.5, 1.0, 0.5, 2.0]]
K2 = [[0.1, -0.9, 1.2, 0.2], [0.8, 1.1, 0.9, 1.2], [0.1, 0.2, -1.5, 0.7]]


def test_loss_with_two_global_and_two_local_views_matches_hand_computation():
    tau = 0.2
    pairs = [(Q1, K2), (Q2, K1), (L1, K1), (L1, K2), (L2, K1), (L2, K2)]
    hand = 2 * sum(_ctr_by_hand(q, k, tau) for q, k in pairs) / len(pairs)  # 2 x mean over the 6 pairs
    t = torch.tensor
    out = multicrop_loss(t(Q1), t(Q2), [t(L1), t(L2)], t(K1), t(K2), tau)
    assert abs(out.loss.item() - hand) < 1e-5
    assert abs(out.ctr_global.item() - (_ctr_by_hand(Q1, K2, tau) + _ctr_by_hand(Q2, K1, tau))) < 1e-5
    assert abs(out.ctr_local.item() - 2 * sum(_ctr_by_hand(q, k, tau) for q, k in pairs[2:]) / 4) < 1e-5


def test_loss_without_local_views_is_exactly_the_mocov3_loss():
    g = torch.Generator().manual_seed(0)
    q1, q2, k1, k2 = (torch.randn(5, 8, generator=g) for _ in range(4))
    out = multicrop_loss(q1, q2, [], k1, k2, 0.2)
    assert torch.equal(out.loss, contrastive_loss(q1, k2, 0.2) + contrastive_loss(q2, k1, 0.2))


def test_chance_level_is_kept_with_local_views():
    """Identical queries and keys: all logits equal, each ctr is 2 tau ln B, the loss 4 tau ln B (the alarm's)."""
    ones = torch.ones(6, 4)
    out = multicrop_loss(ones, ones, [ones, ones, ones], ones, ones, 0.2)
    assert abs(out.loss.item() - 4 * 0.2 * math.log(6)) < 1e-5


def _micro(local_crops=0, **model_kw):
    torch.manual_seed(0)
    bb = create_backbone(ModelConfig(name="vit_micro", img_size=28, patch_size=7, in_chans=1, depth=2, **model_kw))
    return build_mocov3(
        bb, 64, MethodConfig(proj_hidden_dim=32, pred_hidden_dim=32, out_dim=16, local_crops=local_crops)
    )


def _views(B=8):
    g = torch.Generator().manual_seed(1)
    return torch.randn(B, 1, 28, 28, generator=g), torch.randn(B, 1, 28, 28, generator=g)


def test_local_crops_zero_gives_the_previous_loss():
    """The value MoCoV3 returned on this seed before multi-crop existed (any thread count here)."""
    x1, x2 = _views()
    assert abs(_micro()(x1, x2, 0.9).item() - 1.9408490657806396) < 1e-6


def _dynamic_vit(**kw):
    torch.manual_seed(0)
    return VisionTransformer(
        img_size=28,
        patch_size=7,
        in_chans=1,
        embed_dim=32,
        depth=1,
        num_heads=2,
        num_classes=0,
        dynamic_img_size=True,
        **kw,
    )


def test_local_views_reach_the_base_encoder_only_and_leave_the_global_part_unchanged():
    model = MoCoV3(_dynamic_vit(), 32, 32, 32, 16, 0.2, local_crops=2)
    seen = {"base": [], "momentum": []}
    model.backbone.register_forward_hook(lambda m, i, o: seen["base"].append(tuple(i[0].shape)))
    model.momentum_backbone.register_forward_hook(lambda m, i, o: seen["momentum"].append(tuple(i[0].shape)))
    plain = copy.deepcopy(model)
    x1, x2 = _views(4)
    local = torch.randn(2, 4, 1, 14, 14)
    loss = model(x1, x2, 0.9, local)
    assert seen["base"] == [(8, 1, 28, 28), (8, 1, 14, 14)] and seen["momentum"] == [(8, 1, 28, 28)]
    assert torch.equal(model.terms["ctr_global"], plain(x1, x2, 0.9).detach())  # same global queries and keys
    t = model.terms
    assert torch.allclose(loss.detach(), (t["ctr_global"] + 2 * t["ctr_local"]) / 3)
    assert model.last_features.shape == (8, 32)  # the global views' features
    loss.backward()
    assert model.backbone.blocks[0].attn.qkv.weight.grad is not None
    assert all(p.grad is None for p in model.momentum_backbone.parameters())


def test_a_backbone_without_dynamic_img_size_is_refused_in_one_line():
    torch.manual_seed(0)
    fixed = VisionTransformer(img_size=28, patch_size=7, in_chans=1, embed_dim=32, depth=1, num_heads=2, num_classes=0)
    with pytest.raises(SslvitError, match="dynamic_img_size=True") as e:
        MoCoV3(fixed, 32, 32, 32, 16, 0.2, local_crops=2)
    assert "\n" not in str(e.value) and "method.local_crops=0" in str(e.value)
    with pytest.raises(SslvitError, match="is not one"):
        MoCoV3(torch.nn.Linear(4, 4), 4, local_crops=1)


def test_bootstrap_refuses_local_crops_in_one_line():
    with pytest.raises(SslvitError, match="plain MoCo v3 only") as e:
        BootstrapMoCoV3(_dynamic_vit(), 32, MethodConfig(local_crops=2), BootstrapConfig(enabled=True))
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    "overrides, match",
    [
        (["method.local_crops=2", "aug.local_size=10"], "aug.local_size=10 must be a multiple of model.patch_size=7"),
        (["method.local_crops=2", "aug.local_size=35"], "at most model.img_size=28"),
        (["method.local_crops=2", "aug.local_crop_scale=[0.5,0.2]"], "aug.local_crop_scale"),
        (["method.local_crops=-1"], "method.local_crops must be >= 0"),
    ],
)
def test_config_errors_are_one_line(overrides, match):
    with pytest.raises(SslvitError, match=match) as e:
        load_config("smoke", overrides)
    assert "\n" not in str(e.value)


def test_local_size_is_only_checked_when_multi_crop_is_on():
    assert load_config("smoke", ["aug.local_size=10"]).method.local_crops == 0


def test_smoke_pretrain_with_two_local_crops_runs_end_to_end(tiny_cfg, tmp_path):
    cfg = apply_overrides(
        tiny_cfg, ["method.local_crops=2", "train.max_steps=3", "train.checkpoint_every=0", "log.tensorboard=false"]
    )
    summary = pretrain(cfg, tmp_path, log=lambda m: None)
    assert summary["step"] == 3 and "knn" in summary
    recs = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    losses = [r for r in recs if "train/loss" in r]
    assert len(losses) == 3 and all(math.isfinite(r["train/loss"]) and "train/ctr_local" in r for r in losses)
