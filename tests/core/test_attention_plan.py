"""model.fused_attn=auto per pass and dtype (ssl_vit/core/attention.py), applied by build_model."""

import pytest
import torch

from ssl_vit.config import load_config
from ssl_vit.core.attention import CPU_BF16_TRAIN_SDPA_MIN_TOKENS, plan_attention, sdpa_is_faster, token_count
from ssl_vit.engine.trainer import build_model


def _fused(module):
    return {m.fused_attn for m in module.modules() if hasattr(m, "fused_attn")}


def _model(precision, fused="auto", extra=()):
    cfg = load_config(
        "smoke",
        [
            "model.img_size=32",
            "model.patch_size=4",
            "model.in_chans=3",
            f"model.fused_attn={fused}",
            f"train.precision={precision}",
            *extra,
        ],
    )
    return build_model(cfg, torch.device("cpu"))


def test_rule_table():
    assert sdpa_is_faster("cuda", "bf16", 65, grad=True) is True
    assert sdpa_is_faster("cpu", "bf16", 65, grad=True) is False  # slow CPU flash backward in bf16
    assert sdpa_is_faster("cpu", "bf16", 65, grad=False) is True
    assert sdpa_is_faster("cpu", "bf16", CPU_BF16_TRAIN_SDPA_MIN_TOKENS, grad=True) is True
    assert sdpa_is_faster("cpu", "fp32", 65, grad=True) is None  # vit.py's token-count rule stays
    assert sdpa_is_faster("cpu", "bf16", 0, grad=True) is None  # unknown token count


def test_build_model_bf16_on_cpu_plain_for_the_trained_backbone_sdpa_for_the_momentum_one():
    model = _model("bf16")
    assert token_count(model.backbone) == 65
    assert _fused(model.backbone) == {False} and _fused(model.momentum_backbone) == {True}


def test_build_model_fp32_keeps_the_token_count_rule_and_explicit_settings_win():
    model = _model("fp32")  # 65 tokens >= 32: SDPA in both, as before
    assert _fused(model.backbone) == {True} and _fused(model.momentum_backbone) == {True}
    for setting in ("true", "false"):
        m = _model("bf16", fused=setting)
        assert _fused(m.backbone) == _fused(m.momentum_backbone) == {setting == "true"}


def test_plan_on_cuda_is_sdpa_everywhere_and_names_the_children():
    model = _model("bf16")
    plan = plan_attention(model, "cuda", "bf16")
    assert plan == {"backbone": True, "momentum_backbone": True}
    assert _fused(model.backbone) == {True}


@pytest.mark.parametrize("precision", ["bf16", "fp32"])
def test_auto_plan_step_matches_plain_and_sdpa_steps(precision):
    """The same weights and batch give the same loss and gradients whichever path the plan picked."""
    torch.manual_seed(0)
    auto = _model(precision, extra=["method.proj_hidden_dim=64", "method.pred_hidden_dim=64"])
    torch.manual_seed(0)
    plain = _model(precision, fused="false", extra=["method.proj_hidden_dim=64", "method.pred_hidden_dim=64"])
    g = torch.Generator().manual_seed(1)
    x1, x2 = torch.randn(8, 3, 32, 32, generator=g), torch.randn(8, 3, 32, 32, generator=g)
    la, lp = auto(x1, x2, 0.99), plain(x1, x2, 0.99)  # fp32 math: only the attention path differs
    assert torch.allclose(la, lp, atol=1e-5, rtol=1e-5)
    la.backward()
    lp.backward()
    top = max(p.grad.abs().max() for p in plain.parameters() if p.grad is not None)
    for (n, a), (_, b) in zip(auto.named_parameters(), plain.named_parameters()):
        if a.grad is not None:  # relative to the tensor's scale, floor for ~0 gradients (test_step_equivalence)
            assert (a.grad - b.grad).abs().max() <= 1e-4 * b.grad.abs().max() + 1e-6 * top, n
