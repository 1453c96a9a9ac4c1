"""Contract over every registered backbone: forward, backward, no NaN, checkpoint round trip; and as a timm
model (``sslvit_<name>``) what timm's own model tests (``tests/test_models.py``: forward / backward, default
cfgs, features, FX) check: pretrained cfg and data config, num_classes / reset_classifier, forward_features /
forward_head, features_only, drop_path_rate, FX trace; unknown keywords refused."""

import pytest
import timm
import torch
from timm.layers import DropPath, create_feature_extractor, get_graph_node_names

from ssl_vit.checkpoints import load_backbone, save_backbone
from ssl_vit.config import ModelConfig, to_dict
from ssl_vit.config.schema import PatchEmbedConfig, ViTASConfig
from ssl_vit.core.input_spec import InputSpec
from ssl_vit.data import fmnist
from ssl_vit.models import backbone_names, create_backbone, resolve_model_config, stem_names
from ssl_vit.models.timm_entries import NO_FEATURES, NO_FX


@pytest.mark.parametrize(
    "name,stem",
    [(n, "patchify") for n in backbone_names()] + [("vit_micro", s) for s in stem_names() if s != "patchify"],
)
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
    input_spec = InputSpec(32, 3, (0.5,) * 3, (0.5,) * 3)
    save_backbone(path, model.state_dict(), to_dict(cfg), input_spec)
    loaded = load_backbone(path)
    assert loaded.input_spec == input_spec
    model.eval(), loaded.model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), loaded.model(x))


def test_patch_projection_frozen_by_default_and_pos_embed_fixed():
    m = create_backbone(ModelConfig(name="vit_micro", img_size=28, patch_size=7, in_chans=1))
    assert not m.patch_embed.proj.weight.requires_grad and not m.patch_embed.proj.bias.requires_grad
    assert not m.pos_embed.requires_grad
    assert torch.all(m.pos_embed[0, 0] == 0)  # CLS position is zero (MoCo v3)
    t = create_backbone(
        ModelConfig(name="vit_micro", img_size=28, patch_size=7, in_chans=1, patch_embed=PatchEmbedConfig(frozen=False))
    )
    assert t.patch_embed.proj.weight.requires_grad


def test_mocov3_vit_small_has_12_heads():
    m = create_backbone(ModelConfig(name="vit_small", img_size=32, patch_size=8, depth=1))
    assert m.blocks[0].attn.num_heads == 12


# ---- the timm contract ----------------------------------------------------------------------------------------
IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
GREY_28 = {"vit_micro", "vit_pico", "vit_nano", "vitas_super", "vitas_subnet"}  # 1x28x28 Fashion-MNIST entries
# small builds of every entry (2 blocks; the 224-px entries at 32 px), and every conv stem on vit_micro
SMALL = {
    "vitas_super": dict(depth=2, embed_dims="16,32", heads="2,4", mlp_ratios="1,2", min_depth=1),
    "vitas_subnet": dict(blocks="4:2,2:1"),
}
TIMM_CASES = [
    (n, SMALL.get(n, dict(depth=2) if n in GREY_28 else dict(depth=2, img_size=32, patch_size=8)))
    for n in backbone_names()
]
TIMM_CASES += [("vit_micro", dict(depth=2, stem=s)) for s in stem_names() if s != "patchify"]


def _ids(case):
    return case if isinstance(case, str) else ",".join(f"{k}={v}" for k, v in case.items() if k == "stem")


def _input(m, batch=2):
    return torch.randn(batch, *m.pretrained_cfg["input_size"])


@pytest.mark.parametrize("name", backbone_names())
def test_every_backbone_is_a_timm_model_with_its_pretrained_cfg(name):
    entry = f"sslvit_{name}"
    assert timm.is_model(entry) and entry not in timm.list_models(pretrained=True)  # no weights
    cfg = timm.models.get_pretrained_cfg(entry)
    grey = name in GREY_28
    assert tuple(cfg.input_size) == ((1, 28, 28) if grey else (3, 224, 224))
    assert cfg.fixed_input_size == (name == "vitas_super")  # the ViTs: dynamic_img_size
    assert (tuple(cfg.mean), tuple(cfg.std)) == ((tuple(fmnist.MEAN), tuple(fmnist.STD)) if grey else IMAGENET)
    assert cfg.num_classes == 0 and cfg.classifier == "head" and cfg.first_conv and not cfg.url


@pytest.mark.parametrize("name", sorted(GREY_28) + ["vit_tiny"])
def test_timm_data_config_is_the_entrys_own(name):
    m = timm.create_model(f"sslvit_{name}", **({"depth": 1} if name.startswith("vit_") else {})).eval()
    cfg = timm.models.get_pretrained_cfg(f"sslvit_{name}")
    dc = timm.data.resolve_data_config({}, model=m)
    assert (tuple(dc["input_size"]), tuple(dc["mean"]), tuple(dc["std"])) == (cfg.input_size, cfg.mean, cfg.std)
    assert m(torch.randn(1, *dc["input_size"])).shape == (1, m.num_features)  # the cfg's input fits the network


@pytest.mark.parametrize("name,kw", TIMM_CASES, ids=_ids)
def test_timm_contract(name, kw):
    """timm's test_model_forward / _backward / _default_cfgs_non_std / _forward_features, on sslvit_<name>."""
    entry = f"sslvit_{name}"
    torch.manual_seed(0)
    m = timm.create_model(entry, **kw).eval()
    assert m.num_classes == 0 and m.num_features > 0 and m.head_hidden_size > 0
    cfg, sd = m.default_cfg, m.state_dict()
    assert m.pretrained_cfg is cfg
    first = (cfg["first_conv"],) if isinstance(cfg["first_conv"], str) else cfg["first_conv"]
    assert all(f + ".weight" in sd for f in first)
    dc = timm.data.resolve_data_config({}, model=m)  # the network as built (32 px for the 224 ones)
    chans, size = kw.get("in_chans", cfg["input_size"][0]), kw.get("img_size", 28 if name in GREY_28 else 224)
    assert tuple(dc["input_size"]) == (chans, size, size)
    assert tuple(dc["mean"]) == (tuple(fmnist.MEAN) if chans == 1 else IMAGENET[0])
    x = _input(m)
    with torch.no_grad():
        out = m(x)
        feats = m.forward_features(x)
        pre = m.forward_head(feats, pre_logits=True)
    assert out.shape == (2, m.num_features) and torch.isfinite(out).all()
    assert feats.shape[-1 if feats.ndim == 3 else 1] == m.num_features
    assert pre.shape == (2, m.head_hidden_size) and torch.equal(pre, out)
    m.reset_classifier(0)
    assert m.num_classes == 0 and m(x).shape == pre.shape
    m.reset_classifier(5)
    assert m(x).shape == (2, 5)

    # num_classes: timm's head; every parameter trains once the random patch projection / sin-cos table are not fixed
    clf = timm.create_model(entry, num_classes=42, patch_embed_frozen=False, pos_embed="learned", **kw).train()
    assert clf.num_classes == 42 and cfg["classifier"] + ".weight" in clf.state_dict()
    logits = clf(_input(clf))
    assert logits.shape == (2, 42) and torch.isfinite(logits).all()
    logits.mean().backward()
    assert all(p.grad is not None for p in clf.parameters())
    assert timm.create_model(entry, num_classes=0, **kw).eval()(x).shape == (2, m.num_features)

    # drop_path_rate reaches the blocks; unknown keywords are refused by name, never dropped
    dp = timm.create_model(entry, drop_path_rate=0.1, **kw)
    assert max(mod.drop_prob for mod in dp.modules() if isinstance(mod, DropPath)) == pytest.approx(0.1)
    with pytest.raises(TypeError, match="not_a_timm_kwarg"):
        timm.create_model(entry, not_a_timm_kwarg=1, **kw)
    with pytest.raises(ValueError, match="out_indices"):
        timm.create_model(entry, out_indices=1, **kw)

    # features_only: timm's forward_intermediates getter, NCHW maps of the last blocks -- or a clear refusal
    if entry in NO_FEATURES:
        with pytest.raises(ValueError, match="features_only"):
            timm.create_model(entry, features_only=True, **kw)
        return
    fm = timm.create_model(entry, features_only=True, out_indices=2, **kw).eval()
    with torch.no_grad():
        maps = fm(x)
    assert fm.feature_info.channels() == [m.num_features] * 2 == [o.shape[1] for o in maps]
    r = fm.feature_info.reduction()[-1]
    assert all(o.shape[-2:] == (x.shape[-2] // r, x.shape[-1] // r) for o in maps)


@pytest.mark.parametrize("name,kw", TIMM_CASES, ids=_ids)
def test_timm_fx_trace(name, kw):
    """timm's test_model_forward_fx: the traced graph gives the module's output exactly."""
    entry = f"sslvit_{name}"
    if entry in NO_FX:
        pytest.skip(NO_FX[entry])
    m = timm.create_model(entry, **kw).eval()
    x = _input(m, 1)
    _, eval_nodes = get_graph_node_names(m)
    fx = create_feature_extractor(m, [eval_nodes[-1]])
    with torch.no_grad():
        assert torch.equal(next(iter(fx(x).values())), m(x))


@pytest.mark.parametrize(
    "name,cfg,kw",
    [
        ("vit_micro", dict(img_size=28, patch_size=7, in_chans=1), {}),
        (
            "vit_micro",
            dict(
                img_size=28,
                patch_size=7,
                in_chans=1,
                stem="conv",
                qk_norm=True,
                pos_embed="learned",
                patch_embed=PatchEmbedConfig(frozen=False, stem_channels=16),
            ),
            dict(stem="conv", qk_norm=True, pos_embed="learned", patch_embed_frozen=False, stem_channels=16),
        ),
        ("vit_small", dict(img_size=32, patch_size=8, depth=1), dict(img_size=32, patch_size=8, depth=1)),
        (
            "vitas_subnet",
            dict(img_size=28, patch_size=7, in_chans=1, vitas=ViTASConfig(blocks="4:3,2:2")),
            dict(blocks="4:3,2:2"),
        ),
        ("vitas_super", dict(img_size=28, patch_size=7, in_chans=1, depth=2), dict(depth=2)),
    ],
)
def test_timm_entry_is_the_sslvit_backbone(name, cfg, kw):
    """Same keywords, same seed: the timm entry and create_backbone hold the same weights and frozen parameters."""
    torch.manual_seed(0)
    ours = create_backbone(ModelConfig(name=name, **cfg))
    torch.manual_seed(0)
    theirs = timm.create_model(f"sslvit_{name}", **kw)
    a, b = ours.state_dict(), theirs.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert {n: p.requires_grad for n, p in ours.named_parameters()} == {
        n: p.requires_grad for n, p in theirs.named_parameters()
    }


def test_timm_data_config_follows_the_built_network():
    m = timm.create_model("sslvit_vit_micro", img_size=32, patch_size=8, in_chans=3, depth=1)
    dc = timm.data.resolve_data_config({}, model=m)
    assert tuple(dc["input_size"]) == (3, 32, 32) and (tuple(dc["mean"]), tuple(dc["std"])) == IMAGENET
    mine = timm.create_model("sslvit_vit_micro", depth=1, pretrained_cfg_overlay=dict(mean=(0.5,), std=(0.25,)))
    assert timm.data.resolve_data_config({}, model=mine)["mean"] == (0.5,)  # the caller's overlay wins
    grey = timm.create_model("sslvit_vit_small", img_size=32, patch_size=8, in_chans=1, depth=1)
    assert timm.data.resolve_data_config({}, model=grey)["std"] == tuple(fmnist.STD)


def test_timm_pretrained_loads_an_sslvit_backbone_file(tmp_path):
    cfg = ModelConfig(name="vit_micro", img_size=28, patch_size=7, in_chans=1, depth=2)
    torch.manual_seed(0)
    ours = create_backbone(cfg).eval()
    path = tmp_path / "b.safetensors"
    input_spec = InputSpec(28, 1, (0.286,), (0.353,))
    save_backbone(path, ours.state_dict(), to_dict(cfg), input_spec)
    x = torch.randn(2, 1, 28, 28)
    torch.manual_seed(1)  # other random weights, replaced by the file's
    tm = timm.create_model("sslvit_vit_micro", depth=2, pretrained=True, pretrained_cfg_overlay=dict(file=str(path)))
    clf = timm.create_model(
        "sslvit_vit_micro", depth=2, num_classes=10, pretrained=True, pretrained_cfg_overlay=dict(file=str(path))
    ).eval()
    with torch.no_grad():
        assert torch.equal(tm.eval()(x), ours(x))
        assert torch.equal(clf.forward_head(clf.forward_features(x), pre_logits=True), ours(x))
        assert clf(x).shape == (2, 10)
    with pytest.raises(ValueError, match="no hub weights"):
        timm.create_model("sslvit_vit_micro", pretrained=True)


@pytest.mark.parametrize(
    "entry,kw,match",
    [
        ("sslvit_vit_micro", dict(class_token=False), "class_token"),  # timm ViT options MoCo v3 fixes
        ("sslvit_vit_micro", dict(stem_channels=8), "stem_channels"),  # patchify has no conv layers
        ("sslvit_vit_micro", dict(pos_embed="learn"), "pos_embed"),
        ("sslvit_vitas_super", dict(global_pool="avg"), "global_pool"),
        ("sslvit_vitas_super", dict(drop_rate=0.1), "drop_rate"),
        ("sslvit_vitas_subnet", dict(qk_norm=True), "qk_norm"),
    ],
)
def test_timm_keywords_an_entry_cannot_honour_are_refused(entry, kw, match):
    with pytest.raises((TypeError, ValueError), match=match):
        timm.create_model(entry, **kw)


def test_timm_global_pool_and_num_classes_keep_timms_meaning():
    m = timm.create_model("sslvit_vit_micro", depth=1, global_pool="avg", num_classes=10).eval()
    x = torch.randn(2, 1, 28, 28)
    assert m.global_pool == "avg" and m(x).shape == (2, 10)
    assert timm.create_model("sslvit_vit_micro", depth=1, global_pool="").eval()(x).shape == (2, 17, 64)  # tokens


def test_fused_attention_auto_picks_sdpa_by_token_count_on_cpu():
    from ssl_vit.config import ModelConfig
    from ssl_vit.models import create_backbone
    from ssl_vit.models.vit import CPU_SDPA_MIN_TOKENS

    def fused(**kw):
        m = create_backbone(ModelConfig(name="vit_micro", depth=1, in_chans=1, **kw), "cpu")
        return {b.attn.fused_attn for b in m.blocks}

    assert 17 < CPU_SDPA_MIN_TOKENS <= 50
    assert fused(img_size=28, patch_size=7) == {False}  # 16 + 1 tokens: plain attention
    assert fused(img_size=28, patch_size=4) == {True}  # 49 + 1 tokens: SDPA
    assert fused(img_size=28, patch_size=7, fused_attn="true") == {True}
    m = create_backbone(ModelConfig(name="vit_micro", depth=1, in_chans=1, img_size=28, patch_size=7), "cuda")
    assert {b.attn.fused_attn for b in m.blocks} == {True}  # GPUs always use SDPA


@pytest.mark.parametrize("stem", ["patchify", "conv", "scaled_relu"])
def test_a_vit_takes_smaller_inputs_for_multi_crop(stem):
    """dynamic_img_size: a 14-px local view (2x2 patches of 7) gives features of the same width."""
    m = create_backbone(ModelConfig(name="vit_micro", img_size=28, patch_size=7, in_chans=1, stem=stem)).eval()
    with torch.no_grad():
        assert m(torch.randn(2, 1, 14, 14)).shape == m(torch.randn(2, 1, 28, 28)).shape == (2, 64)
