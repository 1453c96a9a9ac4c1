"""grad_norms.py: parameter groups of the MoCo v3 module and per-group gradient norms."""

import pytest
import torch

from ssl_vit.config import ModelConfig
from ssl_vit.config.schema import MethodConfig
from ssl_vit.diagnostics.grad_norms import group_grad_norms, group_of, param_groups
from ssl_vit.methods.mocov3 import build_mocov3
from ssl_vit.models import create_backbone


@pytest.mark.parametrize(
    "name,group",
    [
        ("backbone.patch_embed.proj.weight", "patch_embed"),
        ("backbone.blocks.0.attn.qkv.weight", "block_0"),
        ("backbone.blocks.11.mlp.fc2.bias", "block_11"),
        ("backbone.cls_token", "backbone_other"),
        ("backbone.norm.weight", "backbone_other"),
        ("projector.0.weight", "projector"),
        ("predictor.3.weight", "predictor"),
        ("momentum_backbone.blocks.0.attn.qkv.weight", None),
    ],
)
def test_group_of(name, group):
    assert group_of(name) == group


def _model(frozen=True):
    cfg = ModelConfig(name="vit_micro", img_size=28, patch_size=7, in_chans=1, depth=2)
    cfg.patch_embed.frozen = frozen
    torch.manual_seed(0)
    return build_mocov3(create_backbone(cfg), 64, MethodConfig(proj_hidden_dim=32, pred_hidden_dim=32, out_dim=16))


def test_group_norms_match_a_direct_computation():
    model = _model(frozen=False)
    x = torch.randn(4, 1, 28, 28)
    model(x, x.flip(-1), 0.99).backward()
    groups = param_groups(model)
    assert {"patch_embed", "block_0", "block_1", "projector", "predictor"} <= set(groups)
    assert not any(g.startswith("momentum") for g in groups)
    norms = group_grad_norms(groups)
    for g, params in groups.items():
        direct = torch.linalg.vector_norm(torch.cat([p.grad.flatten() for p in params if p.grad is not None]))
        assert norms[g] == pytest.approx(float(direct), rel=1e-5), g


def test_frozen_patch_projection_is_listed_only_on_request():
    model = _model(frozen=True)
    assert "patch_embed" in param_groups(model)  # measured on diag steps
    assert "patch_embed" not in param_groups(model, include_frozen_patch_embed=False)
    x = torch.randn(4, 1, 28, 28)
    model(x, x, 0.99).backward()
    assert "patch_embed" not in group_grad_norms(param_groups(model))  # frozen: no gradient, left out
