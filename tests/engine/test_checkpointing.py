"""Crash-proof checkpoints: periodic/best/manifest, truncated-file fallback, SIGTERM, SIGKILL soak."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from ssl_vit.core.input_spec import InputSpec
from ssl_vit.engine.checkpointing import CheckpointManager
from ssl_vit.errors import SslvitError
from ssl_vit.runs import pretrain

ROOT = Path(__file__).resolve().parents[2]
SPEC = InputSpec(28, 1, (0.5,), (0.5,))


def _state(step):
    return {"step": step, "model": {"w": torch.full((3,), float(step))}, "config": {}, "optimizer": {}}


def test_manager_keeps_last_k_best_and_manifest(tmp_path):
    m = CheckpointManager(tmp_path, keep_last=2)
    for step, mon in ((2, 50.0), (4, 70.0), (6, 60.0)):
        m.save(_state(step), {"w": torch.zeros(1)}, {}, SPEC, periodic=True, monitor=mon)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert "step_00000002.pt" not in names and {"step_00000004.pt", "step_00000006.pt", "best.pt", "last.pt"} <= set(
        names
    )
    man = json.loads((tmp_path / "manifest.json").read_text())
    assert man["last"]["step"] == 6 and man["best"]["step"] == 4 and man["best"]["monitor"] == 70.0
    assert [p["step"] for p in man["periodic"]] == [4, 6]
    assert torch.load(tmp_path / "best.pt", weights_only=True)["step"] == 4


def test_truncated_last_falls_back_to_periodic(tmp_path):
    m = CheckpointManager(tmp_path, keep_last=3)
    m.save(_state(2), {"w": torch.zeros(1)}, {}, SPEC, periodic=True)
    m.save(_state(4), {"w": torch.zeros(1)}, {}, SPEC, periodic=False)
    last = tmp_path / "last.pt"
    last.write_bytes(last.read_bytes()[:100])
    msgs = []
    state = CheckpointManager(tmp_path).load_latest(msgs.append)  # said once, on the log (no UserWarning too)
    assert state["step"] == 2 and len(msgs) == 1 and "falling back" in msgs[0] and "last.pt" in msgs[0]
    (tmp_path / "step_00000002.pt").write_bytes(b"junk")
    with pytest.raises(SslvitError, match="no usable checkpoint"):
        CheckpointManager(tmp_path).load_latest(lambda m: None)


def test_disk_full_on_checkpoint_write_keeps_previous(tmp_path, monkeypatch):
    m = CheckpointManager(tmp_path)
    m.save(_state(2), {"w": torch.zeros(1)}, {}, SPEC)
    import errno

    real_save = torch.save

    def full(obj, f, *a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(SslvitError, match="disk full"):
        m.save(_state(4), {"w": torch.zeros(1)}, {}, SPEC)
    monkeypatch.setattr(torch, "save", real_save)
    assert torch.load(tmp_path / "last.pt", weights_only=True)["step"] == 2
    assert not list(tmp_path.glob(".*.tmp"))


def _cli(out, overrides, resume=False):
    cmd = [sys.executable, "-m", "ssl_vit", "pretrain", "--recipe", "smoke", "--output-dir", str(out)]
    cmd += [a for o in overrides for a in ("--set", o)] + (["--resume"] if resume else [])
    return cmd


def test_sigterm_checkpoints_and_resume_is_exact(tmp_path, tiny_overrides):
    ov = tiny_overrides + [
        "train.max_steps=40",
        "train.checkpoint_every=5",
        "eval.final_knn=false",
        "log.tensorboard=false",
    ]
    env = {**os.environ, "TQDM_DISABLE": "1"}
    p = subprocess.Popen(_cli(tmp_path / "cut", ov), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (tmp_path / "cut" / "checkpoints" / "last.pt").exists() and time.time() < deadline:
        time.sleep(0.2)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 128 + signal.SIGTERM, err
    assert "Resume with: sslvit pretrain --output-dir" in err
    step = torch.load(tmp_path / "cut" / "checkpoints" / "last.pt", weights_only=True)["step"]
    assert 0 < step <= 40
    cfg_overrides = ov
    from ssl_vit.config import load_config

    pretrain(load_config("smoke", cfg_overrides), tmp_path / "full", log=lambda m: None)
    r = subprocess.run(_cli(tmp_path / "cut", ov, resume=True), env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    a = torch.load(tmp_path / "full" / "checkpoints" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "cut" / "checkpoints" / "last.pt", weights_only=True)
    assert a["step"] == b["step"] == 40
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])


def test_sigkill_soak_small(tmp_path, fmnist_dir):
    from tests.scripts import load_script

    soak = load_script("eval/soak_resume.py")
    extra = [f"data.dataset=fmnist:{fmnist_dir}", "train.batch_size=32", "log.tensorboard=false"]
    res = soak.soak(tmp_path, kills=3, steps=12, extra=extra, log=lambda m: None)
    assert res["kills"] == 3 and res["unusable_checkpoints"] == 0 and res["bit_identical"]
