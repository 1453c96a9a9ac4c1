"""The bf16 path, on any CPU: the pretrain step and feature extraction for kNN and the probe.

``train.precision=auto`` means bf16 on every CPU with AVX-512 BF16 / AMX (and on CUDA), so this is the
path most users run. These tests pin ``bf16`` explicitly, so they exercise it on machines without bf16
hardware too, where it is emulated (~100x slower per GEMM): the models are tiny to keep that cheap.
Exact resume under bf16 is ``test_trainer.py::test_resume_is_bit_identical[bf16]``, the 2-rank vs 1-rank
check under bf16 ``test_distributed.py::test_two_ranks_equal_one_rank[bf16]``.
"""

import json

import pytest
import torch
import torch.nn.functional as F

from ssl_vit.checkpoints import load_pt
from ssl_vit.config import ModelConfig, apply_overrides
from ssl_vit.config.schema import ProbeConfig
from ssl_vit.core.input_spec import InputSpec
from ssl_vit.core.precision import Precision
from ssl_vit.data.specs import load_dataset
from ssl_vit.engine.hooks import Hook
from ssl_vit.evaluation.features import extract_features
from ssl_vit.evaluation.knn import knn_top1
from ssl_vit.evaluation.linear_probe import fast_probe
from ssl_vit.models import create_backbone
from ssl_vit.runs import pretrain

pytestmark = pytest.mark.bf16


def _cfg(tiny_cfg, precision, steps=4):
    return apply_overrides(
        tiny_cfg,
        [
            f"train.precision={precision}",
            f"train.max_steps={steps}",
            "eval.final_knn=false",
            "log.tensorboard=false",
            "train.checkpoint_every=2",
        ],
    )


class _Dtypes(Hook):
    """Records the start weights and the dtype of one attention projection's output in the training forward."""

    name = "dtypes"

    def on_start(self, run):
        self.start = {k: v.detach().clone() for k, v in run.model.backbone.state_dict().items()}
        self.seen = []
        qkv = run.model.backbone.blocks[0].attn.qkv
        qkv.register_forward_hook(lambda mod, inp, out: self.seen.append(out.dtype))


def _losses(run_dir):
    return [
        json.loads(l)["train/loss"]
        for l in (run_dir / "metrics.jsonl").read_text().splitlines()
        if "train/loss" in json.loads(l)
    ]


def test_bf16_step_computes_in_bf16_and_keeps_fp32_weights(tiny_cfg, tmp_path):
    rec = _Dtypes()
    pretrain(_cfg(tiny_cfg, "bf16"), tmp_path / "bf16", hooks=[rec], log=lambda m: None)
    assert rec.seen and set(rec.seen) == {torch.bfloat16}  # the GEMMs ran under bf16 autocast
    end = load_pt(tmp_path / "bf16" / "checkpoints" / "last.pt")["model"]
    for k, v in end.items():
        if v.is_floating_point():
            assert v.dtype == torch.float32 and torch.isfinite(v).all(), k  # master weights stay fp32
    assert not torch.equal(rec.start["blocks.0.attn.qkv.weight"], end["backbone.blocks.0.attn.qkv.weight"])
    # the same steps in fp32 (same init, same batches): the bf16 loss agrees to bf16 precision
    pretrain(_cfg(tiny_cfg, "fp32"), tmp_path / "fp32", log=lambda m: None)
    a, b = _losses(tmp_path / "bf16"), _losses(tmp_path / "fp32")
    assert len(a) == len(b) == 4
    assert abs(a[0] - b[0]) <= 0.02 * abs(b[0]), (a, b)  # step 1: identical weights, rounding only
    assert all(abs(x - y) <= 0.05 * abs(y) for x, y in zip(a, b)), (a, b)


@pytest.fixture()
def bars(fmnist_dir):
    """The generated Fashion-MNIST-format set (class = position of a bright bar): train and test splits."""
    return (load_dataset(f"fmnist:{fmnist_dir}", "train"), load_dataset(f"fmnist:{fmnist_dir}", "test"))


def test_bf16_features_match_fp32_for_knn_and_probe(bars):
    train, test = bars
    torch.manual_seed(0)
    model = create_backbone(ModelConfig(name="vit_micro", img_size=28, patch_size=7, in_chans=1, depth=2))
    input_spec = InputSpec(28, 1, (0.3,), (0.3,))
    feats = {}
    for name in ("fp32", "bf16"):
        precision = Precision(name, torch.device("cpu"))
        feats[name] = [
            extract_features(model, d, input_spec, batch_size=128, precision=precision) for d in (train, test)
        ]
    for a, b in zip(feats["fp32"], feats["bf16"]):
        assert b.dtype == torch.float32 and b.shape == a.shape and torch.isfinite(b).all()
        assert not torch.equal(a, b)  # bf16 did run
        assert F.cosine_similarity(a, b, dim=1).min() > 0.99  # ... and agrees to its precision
    knn = {n: knn_top1(f[0], train.targets, f[1], test.targets, k=20, temperature=0.07) for n, f in feats.items()}
    assert knn["fp32"] > 30 and abs(knn["bf16"] - knn["fp32"]) <= 5.0, knn  # 128 test images: 1 image = 0.8 pt
    cfg = ProbeConfig(fast_epochs=10)
    probe = {n: fast_probe(f[0], train.targets, f[1], test.targets, cfg)["top1"] for n, f in feats.items()}
    assert probe["fp32"] > 30 and abs(probe["bf16"] - probe["fp32"]) <= 5.0, probe
