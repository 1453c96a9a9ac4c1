"""Adapter-only checkpoints: save -> load reproduces the outputs; another backbone is refused in one line."""

import pytest
import torch
import torch.nn.functional as F
from safetensors import safe_open

from ssl_vit.adapt import build_adapted_model, load_adapter, save_adapter, state_sha256
from ssl_vit.config.loading import to_dict
from ssl_vit.config.schema import AdaptConfig
from ssl_vit.core.input_spec import InputSpec
from ssl_vit.errors import SslvitError


def _trained(vit, images, method, scale=0.1):
    cfg = AdaptConfig(dropout=0.0)
    model = build_adapted_model(vit, method, 4, cfg, scale=scale, conv_init="identity")
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=0.05)
    for _ in range(3):
        opt.zero_grad()
        F.cross_entropy(model(images), torch.tensor([0, 1, 3])).backward()
        opt.step()
    info = dict(
        method=method, scale=scale, conv_init="identity", num_classes=4, adapt_config=to_dict(cfg), checkpoint="tiny"
    )
    return model.eval(), info


@pytest.mark.parametrize("method", ["convpass", "lora", "vpt_deep", "full"])
def test_save_load_reproduces_outputs_and_holds_only_trained_tensors(tmp_path, tiny_vit, images, method):
    h = state_sha256(tiny_vit.state_dict())
    model, info = _trained(tiny_vit, images, method)
    written = save_adapter(tmp_path / "a.safetensors", model, h, info)
    trained = {n for n, p in model.named_parameters() if p.requires_grad}
    assert set(written) == trained
    if method != "full":
        assert not any(n.startswith("backbone.blocks.0.attn.qkv.weight") for n in written)
    with safe_open(str(tmp_path / "a.safetensors"), framework="pt") as f:
        assert f.metadata()["backbone_sha256"] == h and f.metadata()["method"] == method
    loaded, meta = load_adapter(tmp_path / "a.safetensors", tiny_vit)
    assert meta["scale"] == 0.1 and meta["num_classes"] == 4
    with torch.no_grad():
        assert torch.allclose(loaded(images), model(images), atol=1e-6)
        assert not torch.allclose(loaded(images), build_adapted_model(tiny_vit, method, 4, AdaptConfig())(images))


def test_wrong_backbone_hash_fails_with_one_line(tmp_path, tiny_vit, images):
    model, info = _trained(tiny_vit, images, "convpass")
    save_adapter(tmp_path / "a.safetensors", model, state_sha256(tiny_vit.state_dict()), info)
    with torch.no_grad():
        tiny_vit.blocks[1].mlp.fc1.weight[0, 0] += 1e-3  # one weight differs
    with pytest.raises(SslvitError, match="was trained on backbone sha256") as e:
        load_adapter(tmp_path / "a.safetensors", tiny_vit)
    assert "\n" not in str(e.value) and "tiny" in str(e.value)


def test_a_backbone_file_is_not_an_adapter(tmp_path, tiny_vit):
    from ssl_vit.checkpoints import save_backbone

    save_backbone(tmp_path / "b.safetensors", tiny_vit.state_dict(), {}, InputSpec(28, 1, (0.5,), (0.5,)))
    with pytest.raises(SslvitError, match="is not an sslvit adapter"):
        load_adapter(tmp_path / "b.safetensors", tiny_vit)
