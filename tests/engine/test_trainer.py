"""The loop: frozen patch projection stays bit-identical, exact resume, non-finite handling."""

import json

import pytest
import torch

from ssl_vit.checkpoints import load_pt
from ssl_vit.config import apply_overrides
from ssl_vit.engine.hooks import Hook
from ssl_vit.errors import SslvitError
from ssl_vit.runs import pretrain
from tests.conftest import StopAt


class _Record(Hook):
    name = "record"

    def on_start(self, run):
        self.start = {k: v.detach().clone() for k, v in run.model.backbone.state_dict().items()}


def _no_knn(cfg):
    return apply_overrides(cfg, ["eval.final_knn=false", "log.tensorboard=false"])


@pytest.mark.parametrize("frozen", [True, False])
def test_patch_projection_frozen_vs_trained(tiny_cfg, tmp_path, frozen):
    cfg = _no_knn(apply_overrides(tiny_cfg, [f"model.patch_embed.frozen={str(frozen).lower()}"]))
    rec = _Record()
    pretrain(cfg, tmp_path, hooks=[rec], log=lambda m: None)
    end = load_pt(tmp_path / "checkpoints" / "last.pt")["model"]
    w0, w1 = rec.start["patch_embed.proj.weight"], end["backbone.patch_embed.proj.weight"]
    assert torch.equal(w0, w1) == frozen
    assert not torch.equal(rec.start["blocks.0.attn.qkv.weight"], end["backbone.blocks.0.attn.qkv.weight"])


# auto: what this machine (or --auto-precision) resolves; bf16 pinned, so the bf16 path is proven on any CPU;
# multi-crop: the local views come from the same (seed, step) stream as the global ones
@pytest.mark.parametrize(
    "overrides",
    [
        ["train.precision=auto"],
        pytest.param(["train.precision=bf16"], marks=pytest.mark.bf16),
        ["method.local_crops=2"],
    ],
    ids=["auto", "bf16", "multicrop"],
)
def test_resume_is_bit_identical(tiny_cfg, tmp_path, overrides):
    cfg = _no_knn(apply_overrides(tiny_cfg, overrides))
    pretrain(cfg, tmp_path / "full", log=lambda m: None)
    pretrain(cfg, tmp_path / "cut", hooks=[StopAt(4)], log=lambda m: None)
    assert load_pt(tmp_path / "cut" / "checkpoints" / "last.pt")["step"] == 4
    pretrain(cfg, tmp_path / "cut", resume=True, log=lambda m: None)
    a = load_pt(tmp_path / "full" / "checkpoints" / "last.pt")
    b = load_pt(tmp_path / "cut" / "checkpoints" / "last.pt")
    assert a["step"] == b["step"] == 6
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    # metrics.jsonl holds each step once after the resume
    steps = [json.loads(l)["step"] for l in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps))


def test_resume_refuses_changed_model_without_force(tiny_cfg, tmp_path):
    cfg = _no_knn(tiny_cfg)
    pretrain(cfg, tmp_path, hooks=[StopAt(2)], log=lambda m: None)
    changed = apply_overrides(cfg, ["model.depth=1"])
    with pytest.raises(SslvitError, match="model.depth"):
        pretrain(changed, tmp_path, resume=True, log=lambda m: None)


def test_resume_accepts_checkpoint_written_before_new_config_keys(tiny_cfg, tmp_path, monkeypatch):
    """A key added to the config since the checkpoint was written takes its default: no --force needed."""
    import ssl_vit.engine.trainer as trainer

    real = trainer.to_dict

    def older_version(cfg):  # the checkpoint's config lacks model.fused_attn
        d = real(cfg)
        if "model" in d:
            d["model"].pop("fused_attn")
        return d

    cfg = _no_knn(tiny_cfg)
    monkeypatch.setattr(trainer, "to_dict", older_version)
    pretrain(cfg, tmp_path, hooks=[StopAt(2)], log=lambda m: None)
    monkeypatch.setattr(trainer, "to_dict", real)
    msgs = []
    out = pretrain(cfg, tmp_path, resume=True, log=msgs.append)
    assert out["step"] == 6 and any("resuming from step 2" in m for m in msgs)


def test_resume_without_checkpoint_starts_fresh(tiny_cfg, tmp_path):
    msgs = []
    out = pretrain(_no_knn(tiny_cfg), tmp_path, resume=True, log=msgs.append)
    assert out["step"] == 6 and any("starting fresh" in m for m in msgs)


def test_nonfinite_loss_is_skipped_then_stops_with_checkpoint(tiny_cfg, tmp_path, monkeypatch):
    """Steps 3.. return NaN: the updates are skipped, and after max_nonfinite in a row the run stops
    with a checkpoint whose weights are those of step 2 (finite)."""
    import ssl_vit.methods.mocov3 as mocov3

    real, calls = mocov3.contrastive_loss, {"n": 0}

    def poisoned(*a, **kw):
        calls["n"] += 1
        loss = real(*a, **kw)
        return loss * float("nan") if calls["n"] > 4 else loss  # two loss terms per step

    monkeypatch.setattr(mocov3, "contrastive_loss", poisoned)
    cfg = _no_knn(apply_overrides(tiny_cfg, ["train.max_nonfinite=2"]))
    with pytest.raises(SslvitError, match="2 consecutive non-finite"):
        pretrain(cfg, tmp_path, log=lambda m: None)
    state = load_pt(tmp_path / "checkpoints" / "last.pt")
    assert state["step"] == 3  # steps 1-2 applied; the update of step 3 was skipped, step 4 stopped the run
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    events = [l for l in (tmp_path / "metrics.jsonl").read_text().splitlines() if "nonfinite" in l]
    assert len(events) == 2
