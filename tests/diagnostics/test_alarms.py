"""Live alarms: each rule fires on a series built to trip it and stays silent on a healthy one; the early
spike rule catches a jump at step 3; train.on_alarm=stop checkpoints and stops with the message; the max
attention logit against a hand computation; qk_norm and the patch-embedding lr group."""

import math

import pytest
import torch
import torch.nn.functional as F

from ssl_vit.checkpoints import load_pt
from ssl_vit.config import Config, ModelConfig, apply_overrides
from ssl_vit.diagnostics.alarms import Ceiling, ChanceLoss, Collapse, EarlySpike, message
from ssl_vit.diagnostics.representation import attention_logits, max_attention_logit
from ssl_vit.engine.optim import param_groups, set_lr
from ssl_vit.engine.trainer import build_model
from ssl_vit.errors import RunStopped
from ssl_vit.models import create_backbone
from ssl_vit.runs import pretrain


def _first_hit(rule, series, **kw):
    for i, v in enumerate(series):
        if rule.update(v, **kw) if kw else rule.update(v):
            return i
    return None


def test_chance_loss_fires_at_chance_after_the_grace_period_only():
    chance = 4 * 0.2 * math.log(256)  # MoCo v3, tau 0.2, batch 256: 4.436
    stuck, healthy = ChanceLoss(chance, 0.93, window=5, start_step=10), ChanceLoss(chance, 0.93, 5, 10)
    hits = [stuck.update(s, 4.3) for s in range(1, 20)]
    assert hits.index(next(h for h in hits if h)) == 9  # step 10: the first step it may fire
    assert hits[9] == pytest.approx((4.3, chance, 0.93 * chance))
    falling = [4.4 * 0.9**s for s in range(1, 40)]  # starts at chance, learns
    assert not any(healthy.update(s, v) for s, v in enumerate(falling, 1))


def test_rankme_collapse_against_the_early_value_and_the_floor():
    # the measured collapse: RankMe 13.3 at step 2 -> 2.2 by step 22
    rule = Collapse("rankme", frac=0.25, floor=3.0, early_obs=3)
    assert _first_hit(rule, [13.3, 12.0, 9.0, 6.0, 3.2, 2.9]) == 4  # 3.2 < 0.25 * 13.3 = 3.325
    assert Collapse("rankme", 0.25, 3.0, 3).update(2.5) == (2.5, 2.5, 3.0)  # the floor holds from the start
    healthy = Collapse("rankme", 0.25, 3.0, 3)
    assert _first_hit(healthy, [23.2, 20.0, 12.0, 7.4, 8.0, 9.1, 9.5]) is None  # a healthy run's 23 -> 7 -> 9


def test_default_rankme_rule_spares_a_healthy_low_rank_run_and_catches_collapse():
    # measured (stability study, 200 steps): the scaled-ReLU stem at 3e-3, the best run (77.3 %), went
    # 21.3 -> 4.75, which the old 0.25 fraction flagged; the default 0.2 does not, the floor still catches 2.9
    d = Config().diag
    healthy = Collapse("rankme", d.alarm_rankme_frac, d.alarm_rankme_floor, d.alarm_early_obs)
    assert _first_hit(healthy, [21.3, 20.0, 18.1, 16.0, 14.2, 9.8, 6.1, 5.0, 4.75, 4.83]) is None
    collapsed = Collapse("rankme", d.alarm_rankme_frac, d.alarm_rankme_floor, d.alarm_early_obs)
    assert _first_hit(collapsed, [13.8, 13.0, 11.0, 8.2, 6.0, 4.1, 3.3, 2.9]) == 7


def test_feature_std_collapse_uses_the_width_scaled_floor():
    rule = Collapse("feature_std", 0.25, 0.1, early_obs=2)
    floor = 0.1 / math.sqrt(64)
    assert _first_hit(rule, [0.052, 0.05, 0.03, 0.0117], floor=floor) == 3
    assert _first_hit(Collapse("feature_std", 0.25, 0.1, 2), [0.06, 0.05, 0.045, 0.04], floor=floor) is None


def test_attention_entropy_and_over_smoothing():
    assert _first_hit(Collapse("attn_entropy", 0.25, 0.15, 2), [0.41, 0.40, 0.3, 0.142]) == 3
    assert _first_hit(Collapse("attn_entropy", 0.25, 0.15, 2), [0.9, 0.85, 0.8, 0.77]) is None
    assert _first_hit(Ceiling(0.97), [0.5, 0.93, 0.96, 0.985]) == 3
    assert _first_hit(Ceiling(0.97), [0.5, 0.93, 0.96, 0.93]) is None


def test_early_spike_flags_a_jump_at_step_3_and_stops_after_the_history():
    rule = EarlySpike(ratio=4.0, until=20)
    assert rule.update(2.0) is None and rule.update(2.2) is None
    assert rule.update(10.0) == (10.0, 2.1, 8.4)  # step 3: 4.8x the median of 2.0, 2.2
    healthy = EarlySpike(4.0, 20)
    assert _first_hit(healthy, [109, 60, 40, 30, 25, 50, 20, 13]) is None  # the smoke run's falling norms
    late = EarlySpike(4.0, until=3)
    assert _first_hit(late, [1.0, 1.0, 1.0, 100.0]) is None  # the robust detector's job from then on


def test_message_names_step_value_and_fix():
    m = message("rankme", 22, 2.2, 13.3, 3.325)
    assert "step 22" in m and "2.20" in m and "13.30" in m and "optim.lr" in m and "\n" not in m


def test_on_alarm_stop_checkpoints_then_stops_with_the_message(tiny_cfg, tmp_path):
    # a RankMe floor no representation can clear: the alarm fires at the first diagnostics step
    cfg = apply_overrides(
        tiny_cfg,
        [
            "train.on_alarm=stop",
            "diag.alarm_rankme_floor=1000",
            "log.diag_every=2",
            "eval.final_knn=false",
            "log.tensorboard=false",
        ],
    )
    with pytest.raises(RunStopped) as e:
        pretrain(cfg, tmp_path, log=lambda m: None)
    assert "alarm rankme at step 2" in str(e.value) and "\n" not in str(e.value)
    assert load_pt(tmp_path / "checkpoints" / "last.pt")["step"] == 2
    events = [l for l in (tmp_path / "metrics.jsonl").read_text().splitlines() if '"alarm"' in l]
    assert events and '"rankme"' in events[0]


def test_healthy_tiny_run_raises_no_alarm(tiny_cfg, tmp_path):
    cfg = apply_overrides(tiny_cfg, ["eval.final_knn=false", "log.tensorboard=false", "log.diag_every=1"])
    msgs = []
    pretrain(cfg, tmp_path, log=msgs.append)
    assert not [m for m in msgs if "alarm" in m]
    assert '"event": "alarm"' not in (tmp_path / "metrics.jsonl").read_text()


def test_max_attention_logit_against_a_hand_computation():
    torch.manual_seed(0)
    vit = create_backbone(ModelConfig(name="vit_micro", img_size=28, patch_size=7, in_chans=1, depth=2))
    x = torch.randn(2, 17, vit.embed_dim)
    for blk in vit.blocks:
        a = blk.attn
        h, d = a.num_heads, a.head_dim
        qkv = x @ a.qkv.weight.T + a.qkv.bias  # (B, N, 3 * H * d)
        q = qkv[..., : h * d].reshape(2, 17, h, d).transpose(1, 2)  # (B, H, N, d)
        k = qkv[..., h * d : 2 * h * d].reshape(2, 17, h, d).transpose(1, 2)
        hand = torch.einsum("bhnd,bhmd->bhnm", q, k) / math.sqrt(d)  # (B, H, N, N)
        got = attention_logits(a, x)
        assert torch.allclose(got, hand, atol=1e-5)
        assert max_attention_logit(got) == pytest.approx(hand.max().item(), abs=1e-5)
        # the logits are those the module turns into attention
        assert torch.allclose(
            got.softmax(-1) @ qkv[..., 2 * h * d :].reshape(2, 17, h, d).transpose(1, 2),
            F.scaled_dot_product_attention(q, k, qkv[..., 2 * h * d :].reshape(2, 17, h, d).transpose(1, 2)),
            atol=1e-5,
        )
        x = blk(x)


def test_qk_norm_normalises_queries_and_keys():
    cfg = dict(name="vit_micro", img_size=28, patch_size=7, in_chans=1, depth=1)
    plain, normed = create_backbone(ModelConfig(**cfg)), create_backbone(ModelConfig(**cfg, qk_norm=True))
    assert isinstance(normed.blocks[0].attn.q_norm, torch.nn.LayerNorm)
    assert isinstance(plain.blocks[0].attn.q_norm, torch.nn.Identity)
    normed.load_state_dict({**plain.state_dict(), **{k: v for k, v in normed.state_dict().items() if "_norm." in k}})
    x = torch.randn(1, 17, plain.embed_dim) * 10
    assert not torch.allclose(attention_logits(plain.blocks[0].attn, x), attention_logits(normed.blocks[0].attn, x))


def test_patch_embed_lr_mult_puts_the_projection_in_its_own_group(tiny_cfg):
    cfg = apply_overrides(tiny_cfg, ["model.patch_embed.frozen=false"])
    model = build_model(cfg, torch.device("cpu"))
    assert len(param_groups(model, 1.0)) == 1
    groups = param_groups(model, 0.2)
    assert [g["name"] for g in groups] == ["default", "patch_embed"]
    pe = dict(model.named_parameters())["backbone.patch_embed.proj.weight"]
    assert any(p is pe for p in groups[1]["params"]) and not any(p is pe for p in groups[0]["params"])
    opt = torch.optim.AdamW(groups, lr=1.0)
    set_lr(opt, 1e-3)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([1e-3, 2e-4])
    frozen = build_model(apply_overrides(tiny_cfg, ["model.patch_embed.frozen=true"]), torch.device("cpu"))
    assert len(param_groups(frozen, 0.2)) == 1  # nothing of it is trained
