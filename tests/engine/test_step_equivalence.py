"""Speed never silently changes the math: sslvit's optimised MoCo v3 step against the straightforward
lightly + timm reference step of eval/bench/bench_step.py, on the same weights, batch and seed."""

import copy

import pytest
import torch

from ssl_vit.config import load_config
from ssl_vit.engine.trainer import build_model, make_optimizer
from tests.scripts import load_script


def _bench():
    return load_script("eval/bench/bench_step.py")


def _pair(fused_attn="false", ref_fused_attn=True):
    cfg = load_config(
        "smoke",
        [
            "model.img_size=28",
            "model.patch_size=7",
            "model.in_chans=1",
            f"model.fused_attn={fused_attn}",
            "method.proj_hidden_dim=64",
            "method.pred_hidden_dim=64",
            "method.out_dim=32",
        ],
    )
    torch.manual_seed(0)
    ours = build_model(cfg, torch.device("cpu"))
    ref_backbone = copy.deepcopy(ours.backbone)
    for m in ref_backbone.modules():  # the reference runs timm's default attention (SDPA)
        if hasattr(m, "fused_attn"):
            m.fused_attn = ref_fused_attn
    ref = _bench().ReferenceMoCoV3(
        ref_backbone, copy.deepcopy(ours.projector), copy.deepcopy(ours.predictor), cfg.method.temperature
    )
    return cfg, ours, ref


def _grads(model, prefix_map):
    out = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            for a, b in prefix_map.items():
                if name.startswith(a):
                    out[b + name[len(a) :]] = p.grad
    return out


@pytest.mark.parametrize("fused_attn", ["false", "true"])
def test_optimised_step_matches_reference_loss_grads_and_update(fused_attn):
    cfg, ours, ref = _pair(fused_attn)
    g = torch.Generator().manual_seed(1)
    x1, x2 = torch.randn(16, 1, 28, 28, generator=g), torch.randn(16, 1, 28, 28, generator=g)

    loss_ours = ours(x1, x2, 0.9)
    loss_ref = ref(x1, x2, 0.9)
    assert torch.allclose(loss_ours, loss_ref, atol=1e-5, rtol=1e-5), (loss_ours.item(), loss_ref.item())

    loss_ours.backward()
    loss_ref.backward()
    go = _grads(ours, {"backbone.": "b.", "projector.": "p.", "predictor.": "q."})
    gr = _grads(ref, {"backbone.": "b.", "projector.": "p.", "predictor.": "q."})
    assert go.keys() == gr.keys() and len(go) > 20
    top = max(g.abs().max() for g in gr.values())
    for k in go:  # relative to the tensor's own scale, with a floor for gradients that are ~0 (e.g. biases before BN)
        assert (go[k] - gr[k]).abs().max() <= 1e-4 * gr[k].abs().max() + 1e-6 * top, k
    assert "b.patch_embed.proj.weight" not in go  # frozen in both

    # momentum branches were updated identically (before the keys, as the official code)
    for (n1, a), (n2, b) in zip(
        ours.momentum_backbone.state_dict().items(), ref.backbone_momentum.state_dict().items()
    ):
        assert n1 == n2 and torch.allclose(a, b, atol=1e-7), n1

    # one optimizer step on the same gradients: sslvit's (fused) AdamW against the plain one (Adam's first
    # step is ~lr * sign(g), so gradients that are ~0 up to round-off, e.g. the key bias, must be shared)
    for a, b in zip(
        [p for p in ours.parameters() if p.requires_grad], [p for p in ref.parameters() if p.requires_grad]
    ):
        b.grad = a.grad.clone()
    opt_ours = make_optimizer([p for p in ours.parameters() if p.requires_grad], cfg.optim, 1e-3, torch.device("cpu"))
    opt_ref = torch.optim.AdamW(
        [p for p in ref.parameters() if p.requires_grad],
        lr=1e-3,
        betas=tuple(cfg.optim.betas),
        weight_decay=cfg.optim.weight_decay,
    )
    opt_ours.step()
    opt_ref.step()
    for (n1, a), (_n2, b) in zip(ours.backbone.named_parameters(), ref.backbone.named_parameters()):
        assert torch.allclose(a, b, atol=1e-6), n1


def test_flop_counts_of_both_steps_agree():
    """The benchmark divides by counted FLOPs: both variants do the same matmul work. (FlopCounterMode does
    not count CPU SDPA kernels, so the reference is counted with timm's non-fused attention here.)"""
    from torch.utils.flop_counter import FlopCounterMode

    _, ours, ref = _pair("false", ref_fused_attn=False)
    x1, x2 = torch.randn(8, 1, 28, 28), torch.randn(8, 1, 28, 28)
    counts = []
    for model in (ours, ref):
        with FlopCounterMode(display=False) as fc:
            model(x1, x2, 0.99).backward()
        counts.append(fc.get_total_flops())
    assert counts[0] > 0 and counts[0] == counts[1], counts


@pytest.mark.slow
def test_compiled_backbone_gives_the_same_loss_and_keys():
    """train.compile=true: same state-dict keys (checkpoints stay interchangeable), same loss and gradients."""
    cfg_c = load_config("smoke", ["train.compile=true"])
    cfg_e = load_config("smoke", [])
    torch.manual_seed(0)
    compiled = build_model(cfg_c, torch.device("cpu"))
    torch.manual_seed(0)
    eager = build_model(cfg_e, torch.device("cpu"))
    assert list(compiled.state_dict()) == list(eager.state_dict())
    x1, x2 = torch.randn(16, 1, 28, 28), torch.randn(16, 1, 28, 28)
    lc, le = compiled(x1, x2, 0.99), eager(x1, x2, 0.99)
    assert torch.allclose(lc, le, atol=1e-4)
    lc.backward()
    le.backward()
    for (n, a), (_, b) in zip(compiled.named_parameters(), eager.named_parameters()):
        if a.grad is not None:
            assert torch.allclose(a.grad, b.grad, atol=1e-3, rtol=1e-2), n
