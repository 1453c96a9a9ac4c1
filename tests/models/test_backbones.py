"""Contract over every registered backbone: forward, backward, no NaN, checkpoint round trip."""
import pytest
import torch

from ssl_vit.checkpoints import load_backbone, save_backbone
from ssl_vit.config import ModelConfig, to_dict
from ssl_vit.config.schema import PatchEmbedConfig
from ssl_vit.models import backbone_names, create_backbone, resolve_model_config, stem_names


@pytest.mark.parametrize("name,stem", [(n, "patchify") for n in backbone_names()]
                         + [("vit_micro", s) for s in stem_names() if s != "patchify"])
def test_backbone_contract(name, stem, tmp_path):
    # depth 1 keeps the large sizes cheap; width and heads are the registered ones; every stem on vit_micro
    cfg = ModelConfig(name=name, img_size=32, patch_size=8, in_chans=3, depth=1, stem=stem)
    torch.manual_seed(0)
    model = create_backbone(cfg)
    x = torch.randn(2, 3, 32, 32)
    f = model(x)
    assert f.shape == (2, resolve_model_config(cfg).embed_dim)
    assert torch.isfinite(f).all()
    f.square().mean().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
    # round trip through the self-describing safetensors file
    path = tmp_path / "b.safetensors"
    data_cfg = {"img_size": 32, "in_chans": 3, "mean": [0.5] * 3, "std": [0.5] * 3}
    save_backbone(path, model.state_dict(), to_dict(cfg), data_cfg)
    loaded = load_backbone(path)
    assert loaded.data_cfg == data_cfg
    model.eval(), loaded.model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), loaded.model(x))


def test_patch_projection_frozen_by_default_and_pos_embed_fixed():
    m = create_backbone(ModelConfig(name="vit_micro", img_size=28, patch_size=7, in_chans=1))
    assert not m.patch_embed.proj.weight.requires_grad and not m.patch_embed.proj.bias.requires_grad
    assert not m.pos_embed.requires_grad
    assert torch.all(m.pos_embed[0, 0] == 0)          # CLS position is zero (MoCo v3)
    t = create_backbone(ModelConfig(name="vit_micro", img_size=28, patch_size=7, in_chans=1,
                                    patch_embed=PatchEmbedConfig(frozen=False)))
    assert t.patch_embed.proj.weight.requires_grad


def test_mocov3_vit_small_has_12_heads():
    m = create_backbone(ModelConfig(name="vit_small", img_size=32, patch_size=8, depth=1))
    assert m.blocks[0].attn.num_heads == 12


def test_timm_create_model_builds_registered_backbones():
    import timm
    m = timm.create_model("sslvit_vit_micro", img_size=28, patch_size=7, in_chans=1)
    assert m(torch.randn(1, 1, 28, 28)).shape == (1, 64)


def test_fused_attention_auto_picks_sdpa_by_token_count_on_cpu():
    from ssl_vit.config import ModelConfig
    from ssl_vit.models import create_backbone
    from ssl_vit.models.vit import CPU_SDPA_MIN_TOKENS

    def fused(**kw):
        m = create_backbone(ModelConfig(name="vit_micro", depth=1, in_chans=1, **kw), "cpu")
        return {b.attn.fused_attn for b in m.blocks}

    assert 17 < CPU_SDPA_MIN_TOKENS <= 50
    assert fused(img_size=28, patch_size=7) == {False}                  # 16 + 1 tokens: plain attention
    assert fused(img_size=28, patch_size=4) == {True}                   # 49 + 1 tokens: SDPA
    assert fused(img_size=28, patch_size=7, fused_attn="true") == {True}
    m = create_backbone(ModelConfig(name="vit_micro", depth=1, in_chans=1, img_size=28, patch_size=7), "cuda")
    assert {b.attn.fused_attn for b in m.blocks} == {True}              # GPUs always use SDPA
