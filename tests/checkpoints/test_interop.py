"""Foreign checkpoints (official MoCo v3, DeiT-style, plain timm) load into the same network, with the
architecture read off the shapes; position embeddings follow a new image size; mismatches name key + shapes."""

import pytest
import timm
import torch
import torch.nn as nn
from safetensors.torch import save_file
from timm.layers import resample_abs_pos_embed

from ssl_vit.checkpoints import load_backbone, save_backbone
from ssl_vit.config import ModelConfig, to_dict
from ssl_vit.core.input_spec import InputSpec
from ssl_vit.errors import SslvitError
from ssl_vit.models import create_backbone
from ssl_vit.models.vit import set_fused_attn, sincos_pos_embed


def _tiny_timm_vit(heads=12, seed=0):
    """A MoCo-v3-ViT-S-shaped miniature: 48-d, 2 blocks, patch 8, 32 px; MoCo v3's ViT-S has 12 heads."""
    torch.manual_seed(seed)
    m = timm.create_model(
        "vit_small_patch16_224",
        pretrained=False,
        img_size=32,
        patch_size=8,
        embed_dim=48,
        depth=2,
        num_heads=heads,
        num_classes=0,
    )
    with torch.no_grad():  # non-trivial values everywhere (timm zero-inits some)
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    return m.eval()


def _moco_v3_file(path, encoder, arch="vit_small"):
    """The official layout: base_encoder with its projector under head.*, a momentum copy, a predictor."""
    sd = {}
    proj = nn.Sequential(
        nn.Linear(48, 64, bias=False),
        nn.BatchNorm1d(64),
        nn.ReLU(),
        nn.Linear(64, 32, bias=False),
        nn.BatchNorm1d(32, affine=False),
    )
    pred = nn.Sequential(nn.Linear(32, 64, bias=False), nn.BatchNorm1d(64), nn.ReLU(), nn.Linear(64, 32, bias=False))
    for k, v in encoder.state_dict().items():
        sd[f"module.base_encoder.{k}"] = v.clone()
        sd[f"module.momentum_encoder.{k}"] = v.clone() + 1.0
    for k, v in proj.state_dict().items():
        sd[f"module.base_encoder.head.{k}"] = v
        sd[f"module.momentum_encoder.head.{k}"] = v
    for k, v in pred.state_dict().items():
        sd[f"module.predictor.{k}"] = v
    opt = torch.optim.AdamW(encoder.parameters())
    torch.save({"epoch": 300, "arch": arch, "state_dict": sd, "optimizer": opt.state_dict()}, path)
    return sd


def _same_attention(*models):
    for m in models:
        set_fused_attn(m, "false")


def test_official_mocov3_checkpoint_gives_the_original_features(tmp_path):
    enc = _tiny_timm_vit(heads=12)
    path = tmp_path / "vit-s-300ep.pth.tar"
    _moco_v3_file(path, enc)
    loaded = load_backbone(path)
    assert loaded.fmt == "mocov3.official"
    r = loaded.model_cfg
    assert (r.embed_dim, r.depth, r.patch_size, r.in_chans, r.img_size, r.num_heads) == (48, 2, 8, 3, 32, 12)
    assert loaded.input_spec.img_size == 32 and loaded.input_spec.in_chans == 3
    assert any("arch 'vit_small'" in n for n in loaded.notes)
    own = set(loaded.model.state_dict())
    assert not any(k.startswith("head") for k in own)  # projector dropped, not loaded as a classifier
    x = torch.randn(4, 3, 32, 32)
    _same_attention(enc, loaded.model)
    loaded.model.eval()
    with torch.no_grad():
        assert torch.equal(loaded.model(x), enc(x))  # base encoder, not the momentum copy


def test_heads_cannot_come_from_shapes_but_can_be_overridden(tmp_path):
    enc = _tiny_timm_vit(heads=3)
    path = tmp_path / "plain.pth"
    torch.save({**enc.state_dict(), "head.weight": torch.randn(10, 48), "head.bias": torch.zeros(10)}, path)
    x = torch.randn(2, 3, 32, 32)
    default = load_backbone(path)  # 48 // 64 -> 1 head: wrong, and said so
    assert default.fmt == "timm" and default.model_cfg.num_heads == 1
    assert any("--set model.num_heads" in n for n in default.notes)
    fixed = load_backbone(path, ["model.num_heads=3"])
    _same_attention(enc, default.model, fixed.model)
    with torch.no_grad():
        assert torch.equal(fixed.model.eval()(x), enc(x))
        assert not torch.allclose(default.model.eval()(x), enc(x), atol=1e-4)


def test_deit_style_and_timm_safetensors(tmp_path):
    enc = _tiny_timm_vit(heads=3)
    deit = tmp_path / "deit.pth"
    torch.save(
        {
            "model": {**enc.state_dict(), "head.weight": torch.randn(5, 48), "head.bias": torch.zeros(5)},
            "epoch": 299,
            "args": {"lr": 5e-4},
        },
        deit,
    )
    st = tmp_path / "model.safetensors"  # a hub-style timm file: no sslvit metadata
    save_file({k: v.contiguous() for k, v in enc.state_dict().items()}, str(st))
    x = torch.randn(2, 3, 32, 32)
    for path, fmt in ((deit, "deit"), (st, "timm")):
        lb = load_backbone(path, ["model.num_heads=3"])
        assert lb.fmt == fmt
        _same_attention(enc, lb.model)
        with torch.no_grad():
            assert torch.equal(lb.model.eval()(x), enc(x))


def test_learned_pos_embed_is_resampled_to_a_new_image_size(tmp_path):
    enc = _tiny_timm_vit(heads=12)
    path = tmp_path / "m.pth.tar"
    _moco_v3_file(path, enc)
    lb = load_backbone(path, ["model.img_size=48"])
    want = resample_abs_pos_embed(enc.pos_embed.detach(), [6, 6], [4, 4], num_prefix_tokens=1)
    assert torch.equal(lb.model.pos_embed.detach(), want)
    assert lb.input_spec.img_size == 48  # evaluation resizes inputs to the new size
    assert lb.model(torch.randn(1, 3, 48, 48)).shape == (1, 48)


def test_sincos_pos_embed_is_regenerated_exactly(tmp_path):
    cfg = ModelConfig(name="vit_micro", img_size=28, patch_size=7, in_chans=1, depth=1)
    p = tmp_path / "b.safetensors"
    save_backbone(p, create_backbone(cfg).state_dict(), to_dict(cfg), InputSpec(28, 1, (0.3,), (0.3,)))
    lb = load_backbone(p, ["model.img_size=42"])
    assert torch.equal(lb.model.pos_embed.detach(), sincos_pos_embed((6, 6), 64))


def test_wrong_shape_official_checkpoint_names_key_and_shapes(tmp_path):
    enc = _tiny_timm_vit(heads=12)
    path = tmp_path / "bad.pth.tar"
    sd = _moco_v3_file(path, enc)
    sd["module.base_encoder.blocks.1.mlp.fc1.weight"] = torch.zeros(100, 48)
    torch.save({"epoch": 1, "arch": "vit_small", "state_dict": sd}, path)
    with pytest.raises(SslvitError) as e:
        load_backbone(path)
    msg = str(e.value)
    assert "key 'blocks.1.mlp.fc1.weight' has shape (100, 48), the model expects (192, 48)" in msg
    assert "module.base_encoder." in msg and "\n" not in msg


def test_unsupported_foreign_checkpoints_are_refused_clearly(tmp_path):
    enc = _tiny_timm_vit(heads=3)
    conv = tmp_path / "conv.pth.tar"
    sd = {f"module.base_encoder.{k}": v for k, v in enc.state_dict().items() if not k.startswith("patch_embed")}
    sd["module.base_encoder.patch_embed.proj.0.weight"] = torch.zeros(24, 3, 3, 3)
    torch.save({"arch": "vit_conv_small", "state_dict": sd}, conv)
    with pytest.raises(SslvitError, match="conv-stem ViT"):
        load_backbone(conv)
    dist = tmp_path / "deit_distilled.pth"
    torch.save({"model": {**enc.state_dict(), "dist_token": torch.zeros(1, 1, 48)}}, dist)
    with pytest.raises(SslvitError, match="distilled DeiT"):
        load_backbone(dist)
    with pytest.raises(SslvitError, match="does not divide"):
        load_backbone(_plain(tmp_path, enc), ["model.num_heads=5"])


def _plain(tmp_path, enc):
    p = tmp_path / "plain2.pth"
    torch.save(enc.state_dict(), p)
    return p
