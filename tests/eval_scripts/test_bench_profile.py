"""eval/bench/bench_step.py --profile: op categories and the MFU ceiling."""

import pytest
import torch

from tests.scripts import load_script


def _bench():
    return load_script("eval/bench/bench_step.py")


def test_categories():
    b = _bench()
    assert b._category("aten::addmm") == "GEMM"
    assert b._category("aten::native_layer_norm_backward") == "LayerNorm / BatchNorm"
    assert b._category("aten::_fused_adamw_") == "optimizer"
    assert b._category("aten::copy_") == "copies / layout"
    assert b._category("aten::gelu") == "GELU"
    assert b._category("aten::_scaled_dot_product_flash_attention_for_cpu") == "attention (SDPA kernels)"
    assert b._category("aten::mul") == "elementwise / reductions / other"


def test_profile_step_shares_and_ceiling():
    b = _bench()
    a = torch.randn(128, 128)

    def step():
        return (torch.relu(a @ a) + 1).sum()

    flops = 2 * 128**3
    prof = b.profile_step(step, flops, peak_gflops=5000.0, n=4)  # a peak the GEMM is far below
    assert sum(prof["share"].values()) == pytest.approx(1.0, abs=0.02)
    assert prof["share"]["GEMM"] > 0 and prof["gemm_gflops"] > 0
    # the ceiling replaces only the GEMM time, so it is at least the measured MFU and at most 1
    measured = flops / prof["wall_s"] / 5000e9
    assert measured < prof["mfu_ceiling"] <= 1.0
    # a peak below what the GEMM already reaches: the ceiling is the measured MFU (GEMMs are not slowed down)
    low = b.profile_step(step, flops, peak_gflops=1e-3, n=2)
    assert low["mfu_ceiling"] == pytest.approx(flops / low["wall_s"] / 1e6, rel=1e-6)
