"""spikes.py: the robust z-score detector on synthetic series, and the loop's reaction (skip, rollback)."""

import json

import numpy as np
import pytest
import torch

from ssl_vit.checkpoints import load_pt
from ssl_vit.config import apply_overrides
from ssl_vit.diagnostics.spikes import RobustSpikeDetector, find_spikes
from ssl_vit.engine.hooks import Hook
from ssl_vit.runs import pretrain


def _smooth(n=500, seed=0):
    """A grad-norm-like series: fast decay, slow drift, 5 % multiplicative noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return (2.0 * np.exp(-t / 80) + 0.5 + 0.1 * np.sin(t / 60)) * np.exp(rng.normal(0, 0.05, n))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_smooth_series_has_no_spikes(seed):
    assert find_spikes(_smooth(seed=seed)) == []


def test_injected_spikes_are_flagged_and_nothing_else():
    x = _smooth()
    injected = [60, 150, 151, 300, 420]
    x[injected] *= np.array([4.0, 8.0, 6.0, 2.5, 20.0])  # 151: right after 150, during the fast decay
    assert find_spikes(x) == injected


def test_small_bumps_and_short_history_are_ignored():
    x = _smooth()
    x[250] *= 1.3  # within the min-ratio floor
    x[5] *= 50  # before min_history observations
    assert find_spikes(x) == []
    # a constant series: MAD 0 must not make every tiny wiggle a spike
    flat = np.full(200, 3.0)
    flat[120] = 3.0001
    assert find_spikes(flat) == []
    flat[150] = 6.0
    assert find_spikes(flat) == [150]


def test_detector_statistics_and_state_roundtrip():
    det = RobustSpikeDetector(window=50, min_history=10, z=6.0, min_ratio=1.5)
    for v in _smooth(100):
        det.update(float(v))
    hit = det.score(10.0)
    assert hit["ratio"] == pytest.approx(10.0 / hit["median"]) and hit["z"] > 6
    clone = RobustSpikeDetector(window=50, min_history=10)
    clone.load_state_dict(det.state_dict())
    assert list(clone.values) == list(det.values) and len(clone.values) == 50
    assert det.update(float("nan")) is None and len(det.values) == 50


# ------------------------------------------------------------------------------------ reaction in the loop
BASE = ("backbone.", "projector.", "predictor.")


class _Watch(Hook):
    """Copies the base encoder's weights before the update of watched steps, and after it."""

    name = "watch"

    def __init__(self, steps):
        self.steps, self.before, self.after, self.lr_scale, self.ckpt = steps, {}, {}, {}, {}

    def _base(self, run):
        return {k: v.detach().clone() for k, v in run.model.state_dict().items() if k.startswith(BASE)}

    def after_backward(self, run, step):
        if step in self.steps:
            self.before[step] = self._base(run)
            last = run.out_dir / "checkpoints" / "last.pt"
            if last.exists():
                self.ckpt[step] = load_pt(last)

    def after_step(self, run, step):
        if step in self.steps:
            self.after[step] = {k: v.detach().clone() for k, v in run.model.state_dict().items()}
            self.lr_scale[step] = run.lr_scale


def _inject_spike(monkeypatch, at_step, factor=100.0):
    """The loss (hence every gradient) of step index ``at_step`` is multiplied by ``factor``."""
    import ssl_vit.methods.mocov3 as mocov3

    real, calls = mocov3.contrastive_loss, {"n": 0}

    def spiky(*a, **kw):
        calls["n"] += 1  # two loss terms per step
        loss = real(*a, **kw)
        return loss * factor if (calls["n"] - 1) // 2 == at_step else loss

    monkeypatch.setattr(mocov3, "contrastive_loss", spiky)


def _cfg(tiny_cfg, action):
    return apply_overrides(
        tiny_cfg,
        [
            "train.max_steps=10",
            f"train.on_spike={action}",
            "diag.spike_min_history=3",
            "eval.final_knn=false",
            "log.tensorboard=false",
        ],
    )


def _records(out):
    return {r["step"]: r for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())}


def test_skip_leaves_the_weights_unchanged_on_a_flagged_step(tiny_cfg, tmp_path, monkeypatch):
    _inject_spike(monkeypatch, at_step=7)
    watch = _Watch({6, 7})
    pretrain(_cfg(tiny_cfg, "skip"), tmp_path, hooks=[watch], log=lambda m: None)
    rec = _records(tmp_path)[8]  # step index 7 -> record of step 8
    assert rec["diag/spike"] == 1 and rec["spike_action"] == "skip"
    assert {"loss", "grad_norm/total"} <= set(rec["spikes"])
    assert rec["spikes"]["grad_norm/total"]["ratio"] > 10
    for k, v in watch.before[7].items():  # flagged: base encoder untouched
        assert torch.equal(v, watch.after[7][k]), k
    changed = [k for k, v in watch.before[6].items() if not torch.equal(v, watch.after[6][k])]
    assert any(k.startswith("backbone.blocks.") for k in changed)  # an ordinary step does update


def test_rollback_restores_the_last_checkpoint_and_lowers_lr(tiny_cfg, tmp_path, monkeypatch):
    _inject_spike(monkeypatch, at_step=7)
    watch = _Watch({7})
    pretrain(_cfg(tiny_cfg, "rollback"), tmp_path, hooks=[watch], log=lambda m: None)
    rec = _records(tmp_path)[8]
    assert rec["spike_action"] == "rollback" and rec["rollback"]["to_step"] == 6 and rec["rollback"]["lr_scale"] == 0.5
    assert watch.lr_scale[7] == 0.5
    assert load_pt(tmp_path / "checkpoints" / "last.pt")["lr_scale"] == 0.5  # carried into later checkpoints
    ckpt = watch.ckpt[7]  # last.pt when step index 7 ran: step 6
    assert ckpt["step"] == 6
    for k, v in ckpt["model"].items():  # every weight (momentum encoder too) is the checkpoint's
        assert torch.equal(v, watch.after[7][k]), k
