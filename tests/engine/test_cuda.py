"""On a CUDA device: the MoCo v3 step, a short pretraining run and feature extraction, against the CPU.

Skipped without CUDA (``@pytest.mark.cuda``, tests/conftest.py); ``eval/bench/gpu_check.sh`` runs them on a
GPU machine. The CPU side runs fp32, the GPU side bf16 autocast (``train.precision=auto`` there), so the
comparisons use bf16 tolerances: loss to 2 %, gradients by cosine similarity per tensor.
"""

import copy
import json

import pytest
import torch
import torch.nn.functional as F

from ssl_vit.config import load_config
from ssl_vit.core.input_spec import InputSpec
from ssl_vit.core.precision import Precision
from ssl_vit.engine.optim import make_optimizer
from ssl_vit.engine.trainer import build_model

pytestmark = pytest.mark.cuda

CUDA = torch.device("cuda")
CPU = torch.device("cpu")


def _cfg(extra=()):
    return load_config(
        "smoke",
        [
            "model.img_size=32",
            "model.patch_size=4",
            "model.in_chans=3",
            "method.proj_hidden_dim=128",
            "method.pred_hidden_dim=128",
            *extra,
        ],
    )


def _pair():
    """The same weights on the CPU and on the GPU."""
    cfg = _cfg()
    torch.manual_seed(0)
    cpu = build_model(cfg, CPU)
    gpu = build_model(cfg, CUDA)
    gpu.load_state_dict(copy.deepcopy(cpu.state_dict()))
    return cfg, cpu, gpu


def _batch(n=32):
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, 3, 32, 32, generator=g), torch.randn(n, 3, 32, 32, generator=g)


def test_device_and_attention_plan_on_cuda():
    _, _, gpu = _pair()
    assert all(p.device.type == "cuda" for p in gpu.parameters())
    assert {m.fused_attn for m in gpu.modules() if hasattr(m, "fused_attn")} == {True}  # SDPA on GPUs


@pytest.fixture()
def no_tf32():
    """fp32 on the GPU means fp32: cuDNN convolutions (the patch projection) default to TF32."""
    before = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_pretrain_step_on_cuda_matches_cpu(precision, no_tf32):
    """fp32 on both: the same function to float rounding (SDPA on the GPU, the CPU's attention plan there). bf16
    autocast on the GPU against fp32 on the CPU: loss to 2 %, the whole gradient at cosine > 0.9 (a tiny
    random-init model at chance; CPU bf16 autocast gives 0.95 against CPU fp32 on this test)."""
    cfg, cpu, gpu = _pair()
    x1, x2 = _batch()
    loss_cpu = cpu(x1, x2, 0.99)
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=precision == "bf16"):
        loss_gpu = gpu(x1.to(CUDA), x2.to(CUDA), 0.99)
    assert torch.isfinite(loss_gpu)
    rel = 1e-4 if precision == "fp32" else 2e-2
    assert loss_gpu.item() == pytest.approx(loss_cpu.item(), rel=rel), (loss_gpu.item(), loss_cpu.item())
    loss_cpu.backward()
    loss_gpu.backward()
    top = max(p.grad.norm() for p in cpu.parameters() if p.grad is not None)
    ga_all, gb_all, compared = [], [], 0
    for (n, a), (_, b) in zip(cpu.named_parameters(), gpu.named_parameters()):
        if a.grad is None:
            assert b.grad is None, n
            continue
        ga, gb = a.grad.flatten(), b.grad.float().cpu().flatten()
        assert torch.isfinite(gb).all(), n
        ga_all.append(ga)
        gb_all.append(gb)
        if precision == "fp32" and ga.norm() > 1e-4 * top:  # skip ~0 gradients (e.g. biases before BatchNorm)
            assert F.cosine_similarity(ga, gb, dim=0) > 0.999, n
            compared += 1
    assert F.cosine_similarity(torch.cat(ga_all), torch.cat(gb_all), dim=0) > (0.9999 if precision == "fp32" else 0.9)
    assert precision != "fp32" or compared > 20
    # the momentum update ran on the GPU, in place, the same as on the CPU (fp32 weights on both)
    for (n, a), (_, b) in zip(cpu.momentum_backbone.named_parameters(), gpu.momentum_backbone.named_parameters()):
        assert torch.allclose(a, b.cpu(), atol=1e-6), n
    # one (fused, on CUDA) AdamW step: Adam's first step is ~lr * sign(g), so weights move by at most ~2 lr apart
    params = lambda m: [p for p in m.parameters() if p.requires_grad]  # noqa: E731
    for model in (cpu, gpu):
        make_optimizer(params(model), cfg.optim, 1e-3, next(model.parameters()).device).step()
    for a, b in zip(params(cpu.backbone), params(gpu.backbone)):
        assert torch.isfinite(b).all()
        assert (a - b.cpu()).abs().max() < 5e-3


def test_fifty_step_pretrain_on_cuda(tmp_path, tiny_overrides):
    from ssl_vit.runs import pretrain

    over = [o for o in tiny_overrides if not o.startswith(("train.max_steps", "train.checkpoint_every"))]
    cfg = load_config(
        "smoke",
        over
        + [
            "train.device=cuda",
            "train.precision=auto",
            "train.max_steps=50",
            "train.checkpoint_every=25",
            "log.tensorboard=false",
        ],
    )
    summary = pretrain(cfg, tmp_path / "run", log=lambda *_: None)
    assert summary["step"] == 50
    recs = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["train/loss"] for r in recs if "train/loss" in r]
    assert len(losses) >= 40 and all(map(lambda v: v == v, losses))  # finite, logged every step
    assert (tmp_path / "run" / "checkpoints" / "last.safetensors").exists()


def test_feature_extraction_on_cuda_matches_cpu():
    from ssl_vit.data.images import TensorImages
    from ssl_vit.evaluation.features import extract_features

    _, cpu, gpu = _pair()
    g = torch.Generator().manual_seed(2)
    n = 300  # not a multiple of the batch: the last batch is partial
    data = TensorImages(
        torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g),
        torch.zeros(n, dtype=torch.long),
        [],
        "synthetic",
        (0.5,) * 3,
        (0.25,) * 3,
    )
    input_spec = InputSpec(32, 3, (0.5,) * 3, (0.25,) * 3)
    f_cpu = extract_features(cpu.backbone, data, input_spec, batch_size=128)
    f_gpu = extract_features(
        gpu.backbone, data, input_spec, batch_size=128, precision=Precision("bf16", torch.device("cuda"))
    )
    f_gpu32 = extract_features(gpu.backbone, data, input_spec, batch_size=128)
    assert f_gpu.shape == f_cpu.shape == (n, cpu.backbone.num_features)
    assert f_gpu.device.type == "cpu" and f_gpu.dtype == torch.float32
    assert F.cosine_similarity(f_cpu, f_gpu, dim=1).min() > 0.98
    assert torch.allclose(f_cpu, f_gpu32, atol=1e-3, rtol=1e-3)  # fp32 on the GPU (TF32 off by default)
    assert gpu.backbone.training  # the train/eval mode is restored
