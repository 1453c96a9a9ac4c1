import os

import pytest
import torch

from ssl_vit.checkpoints import load_backbone, load_pt, save_backbone
from ssl_vit.config import ModelConfig, apply_overrides, to_dict
from ssl_vit.core.input_spec import InputSpec
from ssl_vit.errors import SslvitError
from ssl_vit.models import create_backbone
from ssl_vit.runs import pretrain

INPUT_SPEC = InputSpec(28, 1, (0.3,), (0.3,))


def _save(tmp_path, **kw):
    cfg = ModelConfig(name="vit_micro", img_size=28, patch_size=7, in_chans=1, **kw)
    m = create_backbone(cfg)
    p = tmp_path / "b.safetensors"
    save_backbone(p, m.state_dict(), to_dict(cfg), INPUT_SPEC)
    return p, m


def test_wrong_shape_names_key_and_shapes(tmp_path):
    p, m = _save(tmp_path)
    sd = m.state_dict()
    sd["blocks.0.attn.qkv.weight"] = torch.zeros(3, 3)
    save_backbone(p, sd, to_dict(ModelConfig(name="vit_micro", img_size=28, patch_size=7, in_chans=1)), INPUT_SPEC)
    with pytest.raises(
        SslvitError, match=r"key 'blocks.0.attn.qkv.weight' has shape \(3, 3\), the model expects \(192, 64\)"
    ):
        load_backbone(p)


def test_model_override_mismatch_is_clear(tmp_path):
    p, _ = _save(tmp_path)
    with pytest.raises(SslvitError, match="lacks key 'blocks.4"):
        load_backbone(p, ["model.depth=5"])


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch /tmp/sslvit_pwned_marker",))


def test_pickle_that_runs_code_is_refused(tmp_path):
    marker = "/tmp/sslvit_pwned_marker"
    if os.path.exists(marker):
        os.remove(marker)
    p = tmp_path / "evil.pt"
    torch.save({"format": "sslvit.train.v1", "x": _Evil()}, p)
    with pytest.raises(SslvitError, match="refusing to load"):
        load_pt(p)
    assert not os.path.exists(marker)


def test_truncated_checkpoint(tmp_path):
    p = tmp_path / "t.pt"
    torch.save({"a": torch.zeros(1000)}, p)
    p.write_bytes(p.read_bytes()[:200])
    with pytest.raises(SslvitError, match="truncated or corrupt"):
        load_pt(p)
    s, _ = _save(tmp_path)
    s.write_bytes(s.read_bytes()[:100])
    with pytest.raises(SslvitError, match="not a readable safetensors"):
        load_backbone(s)


def test_foreign_files(tmp_path):
    p = tmp_path / "x.pt"
    torch.save({"weights": torch.zeros(1)}, p)
    with pytest.raises(SslvitError, match="not an sslvit checkpoint"):
        load_backbone(p)
    with pytest.raises(SslvitError, match="not found"):
        load_backbone(tmp_path / "missing.pt")
    with pytest.raises(SslvitError, match="holds no checkpoint"):
        load_backbone(tmp_path)


def test_a_run_dir_gives_the_runs_config_like_last_pt(tiny_cfg, tmp_path):
    """A run dir resolves to last.safetensors; its metadata carries the run's whole config, so `sslvit knn` /
    `linear-probe` start from the run's eval and probe settings whichever file they are given."""
    cfg = apply_overrides(
        tiny_cfg,
        ["train.max_steps=2", "eval.final_knn=false", "log.tensorboard=false", "probe.n_last_blocks=2"],
    )
    pretrain(cfg, tmp_path, log=lambda m: None)
    from_dir, from_pt = load_backbone(tmp_path), load_backbone(tmp_path / "checkpoints" / "last.pt")
    assert from_dir.source.endswith("last.safetensors")
    assert from_dir.config is not None and from_dir.config.probe.n_last_blocks == 2
    assert to_dict(from_dir.config) == to_dict(from_pt.config)


def test_backbone_file_config_metadata(tmp_path):
    """A backbone file without a run config (an export, an older run) has none; a broken one is one clear line."""
    p, m = _save(tmp_path, embed_dim=32, depth=1, num_heads=2)
    plain = load_backbone(p)
    assert plain.config is None
    bad = tmp_path / "bad.safetensors"
    save_backbone(
        bad, m.state_dict(), to_dict(plain.model_cfg), INPUT_SPEC, {"config": '{"train": {"epochs": "many"}}'}
    )
    with pytest.raises(SslvitError, match="metadata 'config' is invalid") as e:
        load_backbone(bad)
    assert "\n" not in str(e.value)
