"""Export to timm: timm alone (create_model + pretrained_cfg_overlay file) rebuilds the same network."""

import json

import pytest
import timm
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from ssl_vit.checkpoints import load_backbone, save_backbone
from ssl_vit.checkpoints.export import export_timm
from ssl_vit.config import ModelConfig, to_dict
from ssl_vit.core.input_spec import InputSpec
from ssl_vit.errors import SslvitError
from ssl_vit.models import create_backbone
from ssl_vit.models.vit import set_fused_attn, sincos_pos_embed

INPUT_SPEC = InputSpec(28, 1, (0.286,), (0.353,))


def _backbone_file(tmp_path, **kw):
    cfg = ModelConfig(name="vit_micro", img_size=28, patch_size=7, in_chans=1, depth=2, **kw)
    torch.manual_seed(0)
    m = create_backbone(cfg)
    with torch.no_grad():
        for n, p in m.named_parameters():
            if n != "pos_embed":
                p.add_(torch.randn_like(p) * 0.02)
    p = tmp_path / "b.safetensors"
    save_backbone(p, m.state_dict(), to_dict(cfg), INPUT_SPEC)
    return p, m.eval()


def _timm_from_export(out, **overlay):
    spec = json.loads(out.with_suffix(".json").read_text())
    return timm.create_model(
        spec["model_name"],
        pretrained=True,
        num_classes=0,
        pretrained_cfg_overlay={"file": str(out), **overlay},
        **spec["model_kwargs"],
    ).eval(), spec


def test_export_timm_round_trip_identical_features(tmp_path):
    src, model = _backbone_file(tmp_path)
    out = tmp_path / "export" / "vit_micro_fmnist.safetensors"
    export_timm(src, out)
    tm, spec = _timm_from_export(out)
    assert type(tm) is timm.models.VisionTransformer  # timm's own class, not an sslvit builder
    file_keys = set(load_file(str(out)))
    assert file_keys == set(tm.state_dict())  # strict: nothing missing, nothing extra
    assert torch.equal(tm.pos_embed.detach(), sincos_pos_embed((4, 4), 64))  # fixed sin-cos survived
    x = torch.randn(3, 1, 28, 28)
    set_fused_attn(tm, "false"), set_fused_attn(model, "false")
    with torch.no_grad():
        assert torch.equal(tm(x), model(x))
    # with the exported data config merged in, timm itself loads with strict=True and knows the input config
    tm2, _ = _timm_from_export(out, **spec["pretrained_cfg"])
    dc = timm.data.resolve_data_config({}, model=tm2)
    assert tuple(dc["input_size"]) == (1, 28, 28) and tuple(dc["mean"]) == (0.286,)
    # and the exported file is still an sslvit backbone file
    assert load_backbone(out).model_cfg.name == "vit_micro"


def test_export_of_an_official_mocov3_checkpoint(tmp_path):
    from tests.checkpoints.test_interop import _moco_v3_file, _tiny_timm_vit

    enc = _tiny_timm_vit(heads=12)
    src = tmp_path / "moco.pth.tar"
    _moco_v3_file(src, enc)
    out = tmp_path / "moco_timm.safetensors"
    export_timm(src, out)
    tm, spec = _timm_from_export(out)
    assert spec["model_kwargs"]["num_heads"] == 12
    set_fused_attn(tm, "false"), set_fused_attn(enc, "false")
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(tm(x), enc(x))


def test_non_patchify_stem_cannot_be_exported(tmp_path, monkeypatch):
    from timm.layers import PatchEmbed

    from ssl_vit.models import stems

    class OtherStem(PatchEmbed):
        pass

    monkeypatch.setitem(stems._STEMS, "other_stem", OtherStem)
    src, _ = _backbone_file(tmp_path, stem="other_stem")
    with pytest.raises(SslvitError, match="stem 'other_stem' has no timm equivalent"):
        export_timm(src, tmp_path / "o.safetensors")


def test_export_cli(tmp_path):
    from ssl_vit.cli import cli

    src, _ = _backbone_file(tmp_path)
    r = CliRunner().invoke(cli, ["export", str(src), "--to", "timm", str(tmp_path / "t.safetensors")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "t.json").is_file() and "exported:" in r.stdout
    bad = CliRunner().invoke(cli, ["export", str(src), "--to", "timm", str(tmp_path / "t.pt")])
    assert bad.exit_code == 2 and "must end in .safetensors" in bad.stderr
