"""Conv stems (ssl_vit/models/stems.py): same token grid as patchify, the documented stride split and
freezing, BN statistics through checkpoints, the documented FLOPs table, a smoke pretrain per stem."""

import math
from pathlib import Path

import pytest
import torch

from ssl_vit.checkpoints import load_backbone, load_pt, save_backbone
from ssl_vit.config import ModelConfig, load_config, to_dict
from ssl_vit.config.schema import PatchEmbedConfig
from ssl_vit.core.input_spec import InputSpec
from ssl_vit.errors import SslvitError
from ssl_vit.models import create_backbone, resolve_model_config, stem_names
from ssl_vit.models import stems as stems_mod

ROOT = Path(__file__).resolve().parents[2]

CONV_STEMS = [s for s in stem_names() if s != "patchify"]
# (img_size, patch_size) where the patch divides the image: 28 px with 4 and 7, 32 px with 4
GRIDS = [(28, 4), (28, 7), (32, 4)]


def _cfg(stem, img=28, patch=7, chans=1, **pe):
    return ModelConfig(
        name="vit_micro",
        img_size=img,
        patch_size=patch,
        in_chans=chans,
        depth=1,
        stem=stem,
        patch_embed=PatchEmbedConfig(**pe),
    )


def test_every_documented_stem_is_registered():
    assert set(stem_names()) == {"patchify", "conv", "scaled_relu", "scaled_relu_no_bn", "scaled_relu_no_relu"}


@pytest.mark.parametrize("stem", CONV_STEMS)
@pytest.mark.parametrize("img,patch", GRIDS)
@pytest.mark.parametrize("chans", [1, 3])
def test_token_grid_equals_patchify(stem, img, patch, chans):
    torch.manual_seed(0)
    ref = create_backbone(_cfg("patchify", img, patch, chans))
    m = create_backbone(_cfg(stem, img, patch, chans))
    x = torch.randn(3, chans, img, img)
    tokens = m.patch_embed(x)
    g = img // patch  # NHWC tokens: timm's dynamic_img_size layout
    assert tokens.shape == ref.patch_embed(x).shape == (3, g, g, 64)
    assert m.patch_embed.grid_size == ref.patch_embed.grid_size == (img // patch, img // patch)
    assert m.pos_embed.shape == ref.pos_embed.shape
    assert torch.equal(m.pos_embed, ref.pos_embed)  # the same fixed sin-cos table
    assert m(x).shape == (3, 64)


def _convs(stem_module):
    return [m for m in stem_module.proj if isinstance(m, torch.nn.Conv2d)]


def test_stride_split_for_small_and_large_patches():
    # patch 7 (odd): no stride-2 conv fits; convs at stride 1, then a 7x7 stride-7 projection
    for stem in ("conv", "scaled_relu"):
        convs = _convs(create_backbone(_cfg(stem, 28, 7)).patch_embed)
        assert all(c.stride == (1, 1) for c in convs[:-1])
        assert convs[-1].kernel_size == convs[-1].stride == (7, 7)
    sr = _convs(create_backbone(_cfg("scaled_relu", 28, 7)).patch_embed)
    assert [c.kernel_size[0] for c in sr] == [3, 3, 3, 7]
    # patch 4: scaled_relu = 7x7 stride-2 conv, two 3x3, then a 2x2 stride-2 projection (p / 2)
    sr4 = _convs(create_backbone(_cfg("scaled_relu", 32, 4)).patch_embed)
    assert [(c.kernel_size[0], c.stride[0]) for c in sr4] == [(7, 2), (3, 1), (3, 1), (2, 2)]
    # conv at patch 4: two 3x3 stride-2 layers (D/8 = 8, then 16 channels), then 1x1
    c4 = _convs(create_backbone(_cfg("conv", 32, 4)).patch_embed)
    assert [(c.kernel_size[0], c.stride[0], c.out_channels) for c in c4] == [(3, 2, 8), (3, 2, 16), (1, 1, 64)]


def test_conv_stem_at_patch_16_has_mocov3_vit_conv_small_shapes():
    """MoCo v3 vits.py ConvStem for ViT-S (D=384): 4 x [3x3 s2 conv (no bias), BN, ReLU], 48->96->192->384,
    then a 1x1 conv with bias: keys patch_embed.proj.{0,1,3,4,6,7,9,10,12}."""
    with torch.device("meta"):
        m = create_backbone(ModelConfig(name="vit_small", img_size=224, patch_size=16, stem="conv"))
    sd = {k: tuple(v.shape) for k, v in m.state_dict().items() if k.startswith("patch_embed.")}
    want = {}
    c_in = 3
    for i, c in enumerate((48, 96, 192, 384)):
        want[f"patch_embed.proj.{3 * i}.weight"] = (c, c_in, 3, 3)
        for b in ("weight", "bias", "running_mean", "running_var"):
            want[f"patch_embed.proj.{3 * i + 1}.{b}"] = (c,)
        want[f"patch_embed.proj.{3 * i + 1}.num_batches_tracked"] = ()
        c_in = c
    want["patch_embed.proj.12.weight"], want["patch_embed.proj.12.bias"] = (384, 384, 1, 1), (384,)
    assert sd == want
    assert len(m.blocks) == 11  # one block fewer (vit_conv_small)


def test_bad_stem_stride_is_a_one_line_error():
    for stem, stride in (("scaled_relu", 3), ("conv", 3), ("conv", 8)):
        with pytest.raises(SslvitError) as e:
            create_backbone(_cfg(stem, 28, 4, stem_stride=stride))
        assert "model.patch_embed.stem_stride" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(SslvitError, match="stem_stride"):  # caught when the config is loaded
        load_config("smoke", ["model.stem=scaled_relu", "model.patch_embed.stem_stride=2"])  # patch 7


def test_conv_stem_replaces_one_block_unless_told_otherwise():
    base = dict(name="vit_micro", img_size=28, patch_size=7, in_chans=1)
    assert len(create_backbone(ModelConfig(**base, stem="patchify")).blocks) == 4
    assert len(create_backbone(ModelConfig(**base, stem="conv")).blocks) == 3
    assert (
        len(create_backbone(ModelConfig(**base, stem="conv", patch_embed=PatchEmbedConfig(reduce_depth=False))).blocks)
        == 4
    )
    assert len(create_backbone(ModelConfig(**base, stem="conv", depth=2)).blocks) == 2  # explicit depth wins
    assert len(create_backbone(ModelConfig(**base, stem="scaled_relu")).blocks) == 4
    r = resolve_model_config(ModelConfig(**base, stem="conv"))
    assert r.depth == 3 and resolve_model_config(r).depth == 3  # idempotent


@pytest.mark.parametrize("stem", CONV_STEMS)
def test_frozen_means_projection_and_stem_frozen_means_conv_layers(stem):
    pe = lambda m: m.patch_embed  # noqa: E731
    for frozen, stem_frozen in ((True, False), (False, False), (True, True), (False, True)):
        m = create_backbone(_cfg(stem, frozen=frozen, stem_frozen=stem_frozen))
        proj = stems_mod.projection(pe(m))
        assert proj is pe(m).proj[-1] and proj.out_channels == 64
        assert all(p.requires_grad != frozen for p in proj.parameters())
        body = list(stems_mod.conv_layer_params(pe(m)))
        assert body and all(p.requires_grad != stem_frozen for p in body)
    # MoCo v3's random projection init with the projection's own fan-in: U(-a, a), a = sqrt(6 / (C k k + D))
    proj = stems_mod.projection(create_backbone(_cfg(stem)).patch_embed)
    a = math.sqrt(6.0 / (proj.in_channels * proj.kernel_size[0] ** 2 + 64))
    w = proj.weight.detach()
    assert w.abs().max() <= a and w.abs().max() > 0.9 * a and torch.all(proj.bias == 0)


def test_frozen_parts_do_not_change_in_a_training_step():
    m = create_backbone(_cfg("scaled_relu", frozen=True, stem_frozen=False))
    before = {k: v.clone() for k, v in m.patch_embed.state_dict().items()}
    opt = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=1e-2)
    m(torch.randn(8, 1, 28, 28)).square().mean().backward()
    opt.step()
    after = m.patch_embed.state_dict()
    assert torch.equal(before["proj.9.weight"], after["proj.9.weight"])  # frozen projection
    assert not torch.equal(before["proj.0.weight"], after["proj.0.weight"])  # trained conv
    assert not torch.equal(before["proj.1.running_mean"], after["proj.1.running_mean"])  # BN stats move


@pytest.mark.parametrize("stem", ["conv", "scaled_relu", "scaled_relu_no_relu"])
def test_bn_running_stats_are_saved_and_restored(stem, tmp_path):
    cfg = _cfg(stem)
    torch.manual_seed(0)
    m = create_backbone(cfg).train()
    with torch.no_grad():
        for _ in range(3):  # move the running statistics
            m(torch.rand(16, 1, 28, 28) * 3 + 1)
    bn_keys = [k for k in m.state_dict() if k.startswith("patch_embed.") and "running_" in k]
    assert bn_keys and all(
        not torch.equal(m.state_dict()[k], torch.zeros_like(m.state_dict()[k])) for k in bn_keys if "running_mean" in k
    )
    path = tmp_path / "b.safetensors"
    save_backbone(path, m.state_dict(), to_dict(cfg), InputSpec(28, 1, (0.3,), (0.3,)))
    loaded = load_backbone(path)
    assert loaded.model_cfg.stem == stem
    for k in bn_keys + [k.replace("running_mean", "num_batches_tracked") for k in bn_keys if "running_mean" in k]:
        assert torch.equal(loaded.model.state_dict()[k], m.state_dict()[k]), k
    m.eval(), loaded.model.eval()
    x = torch.rand(4, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(m(x), loaded.model(x))  # eval mode uses the restored statistics


def test_conv_stem_export_to_timm_is_refused_clearly(tmp_path):
    from ssl_vit.checkpoints.export import export_timm

    cfg = _cfg("conv")
    src = tmp_path / "b.safetensors"
    save_backbone(src, create_backbone(cfg).state_dict(), to_dict(cfg), InputSpec(28, 1, (0.3,), (0.3,)))
    with pytest.raises(SslvitError, match="stem 'conv' has no timm equivalent") as e:
        export_timm(src, tmp_path / "out.safetensors")
    assert "\n" not in str(e.value)


def _documented_rows():
    doc = (ROOT / "docs" / "stems.md").read_text()
    table = doc[doc.index("<!-- stem-flops-table -->") : doc.index("<!-- /stem-flops-table -->")]
    rows = []
    for line in table.splitlines()[3:]:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        rows.append(
            {
                "setting": cells[0],
                "stem": cells[1],
                "stem_params": int(cells[2].replace(",", "")),
                "stem_flops": float(cells[3].replace(",", "")) * 1e6,
                "params": int(cells[4].replace(",", "")),
                "flops": float(cells[5].replace(",", "")) * 1e6,
                "vs": float(cells[6].rstrip("%")),
            }
        )
    return rows


def _check_rows(settings):
    from ssl_vit.models.flops import stem_cost_rows

    doc = {(r["setting"], r["stem"]): r for r in _documented_rows()}
    counted = stem_cost_rows(settings)
    assert counted
    for c in counted:
        d = doc[(c["setting"], c["stem"])]
        assert d["stem_params"] == c["stem_params"] and d["params"] == c["params"], c
        assert abs(d["stem_flops"] - c["stem_flops"]) <= 0.005e6 and abs(d["flops"] - c["flops"]) <= 0.005e6, c
        assert abs(d["vs"] - c["vs_patchify"]) <= 0.05, c
    return counted


def test_flops_table_matches_counted_values_for_the_ablation_model():
    from ssl_vit.models.flops import TABLE_SETTINGS

    counted = _check_rows(TABLE_SETTINGS[:1])
    # a hand count for patchify at 28 px / p7 / 1 channel: the projection is 16 tokens x (49 x 64) MACs
    pat = next(r for r in counted if r["stem"] == "patchify")
    assert pat["stem_flops"] == 2 * 16 * 49 * 64 and pat["stem_params"] == 49 * 64 + 64
    assert len(_documented_rows()) == len(TABLE_SETTINGS) * len(stem_names())


@pytest.mark.slow
def test_flops_table_matches_counted_values_everywhere():
    from ssl_vit.models.flops import TABLE_SETTINGS

    _check_rows(TABLE_SETTINGS)


# ~5 CPU-s each: the two ablation stems differ from scaled_relu by one layer type each, so they run with -m slow
SMOKE = [pytest.param(s, marks=pytest.mark.slow) if s.startswith("scaled_relu_") else s for s in CONV_STEMS]


@pytest.mark.parametrize("stem", SMOKE)
def test_smoke_pretrain_with_each_stem(stem, tiny_overrides, tmp_path):
    from ssl_vit.runs import pretrain

    cfg = load_config("smoke", tiny_overrides + [f"model.stem={stem}", "log.tensorboard=false"])
    summary = pretrain(cfg, tmp_path, log=lambda m: None)
    assert summary["step"] == 6 and 0 <= summary["knn"]["top1"] <= 100  # final kNN ran on the backbone
    state = load_pt(tmp_path / "checkpoints" / "last.pt")["model"]
    bn = [k for k in state if k.startswith("backbone.patch_embed.") and k.endswith("running_mean")]
    if stem != "scaled_relu_no_bn":
        assert bn and not torch.equal(state[bn[0]], torch.zeros_like(state[bn[0]]))  # trained statistics saved
    loaded = load_backbone(tmp_path)  # run dir -> last.safetensors
    assert loaded.model_cfg.stem == stem
    for k in bn:
        assert torch.equal(loaded.model.state_dict()[k[len("backbone.") :]], state[k])
    assert len(loaded.model.blocks) == 2  # the smoke recipe sets model.depth=2: kept for conv too


def test_official_mocov3_conv_stem_checkpoint_loads_with_its_stem_inferred(tmp_path):
    """An official-layout MoCo v3 vit_conv_* file (module.base_encoder.* + projector head, momentum copy,
    predictor): the conv stem and patch 16 are read off the patch_embed.proj.<i> shapes."""
    cfg = ModelConfig(
        name="vit_small",
        img_size=32,
        patch_size=16,
        in_chans=3,
        embed_dim=48,
        depth=2,
        num_heads=12,
        stem="conv",
        pos_embed="sincos",
    )
    torch.manual_seed(0)
    enc = create_backbone(cfg).train()
    with torch.no_grad():
        enc(torch.rand(8, 3, 32, 32))  # non-trivial BN statistics
    sd = {f"module.base_encoder.{k}": v for k, v in enc.state_dict().items()}
    sd["module.base_encoder.head.0.weight"] = torch.zeros(16, 48)  # the projector lives under head.*
    sd.update({f"module.momentum_encoder.{k}": v for k, v in enc.state_dict().items()})
    sd["module.predictor.0.weight"] = torch.zeros(16, 16)
    path = tmp_path / "linear-vit-conv-s.pth.tar"
    torch.save({"epoch": 3, "arch": "vit_conv_small", "state_dict": sd}, path)
    lb = load_backbone(path)
    assert lb.model_cfg.stem == "conv" and lb.model_cfg.patch_size == 16 and lb.model_cfg.img_size == 32
    assert len(lb.model.blocks) == 2 and lb.model.blocks[0].attn.num_heads == 12  # heads from the arch
    enc.eval(), lb.model.eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(enc(x), lb.model(x))
