"""`sslvit train` (supervised from scratch, optionally bootstrapped): the run contract, exact resume, errors;
and `sslvit pretrain` with the bootstrap agent."""

import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from tests.conftest import StopAt


def run_cli(*args):
    env = {**os.environ, "TQDM_DISABLE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "ssl_vit", *args], capture_output=True, text=True, env=env, timeout=300
    )


def _sets(overrides):
    return [a for o in overrides for a in ("--set", o)]


def _scalar_tags(run_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ea = EventAccumulator(str(run_dir / "tensorboard"))
    ea.Reload()
    return set(ea.Tags()["scalars"])


def test_smoke_train_bootstrapped_writes_the_contract(tmp_path, tiny_overrides):
    out = tmp_path / "run"
    r = run_cli(
        "train",
        "--recipe",
        "smoke",
        "--output-dir",
        str(out),
        *_sets(tiny_overrides),
        "--set",
        "model.bootstrap.enabled=true",
        "--set",
        "train.threads=1",
    )
    assert r.returncode == 0, r.stderr
    last = r.stdout.strip().splitlines()[-1]
    assert last.startswith("top1=")
    for f in (
        "config.yaml",
        "metrics.jsonl",
        "results.json",
        "results.md",
        "checkpoints/last.pt",
        "checkpoints/last.safetensors",
    ):
        assert (out / f).is_file(), f
    res = json.loads((out / "results.json").read_text())
    assert {"top1", "top1_agent", "knn_top1", "dataset", "checkpoint", "n_train", "n_test", "wall_s"} <= set(res)
    assert res["n_train"] == 512 and res["n_test"] == 64 and abs(res["top1"] - float(last.split("=")[1])) < 0.01
    assert res["bootstrap"] is True and res["bootstrap_mode"] == "shared"
    tags = _scalar_tags(out)
    assert {
        "train/loss",
        "train/lr",
        "train/throughput",
        "train/hint_loss",
        "train/kd_loss",
        "train/ce_vit",
        "train/ce_agent",
        "train/hint_weight",
        "eval/test_top1",
        "eval/test_top1_agent",
    } <= tags
    recs = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    weights = [rec["train/hint_weight"] for rec in recs if "train/hint_weight" in rec]
    assert weights[0] == pytest.approx(5.0) and weights == sorted(weights, reverse=True)  # linear decay
    state = torch.load(out / "checkpoints" / "last.pt", weights_only=True)
    assert state["step"] == 6 and any(k.startswith("agent.") for k in state["model"])
    with safe_open(str(out / "checkpoints" / "last.safetensors"), "pt") as f:  # the ViT backbone only
        keys = list(f.keys())
    assert "blocks.0.attn.qkv.weight" in keys and not any("agent" in k or k.startswith("head.") for k in keys)


def _train(cfg, out, hooks=None, resume=False):
    from ssl_vit.runs import train_supervised

    return train_supervised(cfg, out, resume=resume, hooks=hooks, log=lambda m: None)


@pytest.mark.parametrize("mode", ["shared", pytest.param("joint", marks=pytest.mark.slow)])
def test_train_resume_is_bit_identical(tmp_path, tiny_overrides, mode):
    from ssl_vit.config import load_config

    cfg = load_config(
        "smoke",
        tiny_overrides
        + [
            "model.bootstrap.enabled=true",
            f"model.bootstrap.mode={mode}",
            "train.threads=1",
            "eval.final_knn=false",
            "diag.enabled=false",
            "log.tensorboard=false",
            "model.patch_embed.frozen=false",
        ],
    )
    _train(cfg, tmp_path / "full")
    _train(cfg, tmp_path / "cut", hooks=[StopAt(3)])
    assert torch.load(tmp_path / "cut" / "checkpoints" / "last.pt", weights_only=True)["step"] == 3
    r = run_cli("train", "--output-dir", str(tmp_path / "cut"), "--resume")  # config.yaml as the recipe
    assert r.returncode == 0, r.stderr
    assert "resuming from step 3" in r.stderr
    a = torch.load(tmp_path / "full" / "checkpoints" / "last.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "cut" / "checkpoints" / "last.pt", weights_only=True)["model"]
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    fa = load_file(str(tmp_path / "full" / "checkpoints" / "last.safetensors"))
    fb = load_file(str(tmp_path / "cut" / "checkpoints" / "last.safetensors"))
    assert all(torch.equal(fa[k], fb[k]) for k in fa)


def test_plain_train_and_bootstrapped_pretrain_log_their_terms(tmp_path, tiny_overrides):
    from ssl_vit.config import load_config
    from ssl_vit.runs import pretrain

    base = tiny_overrides + ["train.threads=1", "train.max_steps=3", "diag.enabled=false", "eval.final_knn=false"]
    summary = _train(load_config("smoke", base), tmp_path / "plain")
    assert "top1_agent" not in summary["test"] and summary["test"]["metric"] == "test_top1"
    assert {"train/ce_vit", "eval/test_top1"} <= _scalar_tags(tmp_path / "plain")
    pretrain(load_config("smoke", base + ["model.bootstrap.enabled=true"]), tmp_path / "moco", log=lambda m: None)
    tags = _scalar_tags(tmp_path / "moco")
    assert {
        "train/loss",
        "train/momentum",
        "train/ctr_vit",
        "train/ctr_agent",
        "train/hint_loss",
        "train/hint_weight",
    } <= tags
    state = torch.load(tmp_path / "moco" / "checkpoints" / "last.pt", weights_only=True)
    assert any(k.startswith("agent_projector.") for k in state["model"])


@pytest.mark.parametrize(
    "args,needle",
    [
        (
            ["train", "--recipe", "smoke", "--set", "model.bootstrap.mode=both"],
            "model.bootstrap.mode must be shared or joint",
        ),
        (["train", "--recipe", "smoke", "--set", "model.bootstrap.hint_decay=cosine"], "model.bootstrap.hint_decay"),
        (["train", "--recipe", "smoke", "--set", "data.dataset=fmnist?subset=0"], "subset=0 must be in"),
        (["train", "--recipe", "smoke", "--set", "data.dataset=fmnist?subset=ten"], "must be integers"),
        (["train", "--resume"], "--resume needs --output-dir"),
        (["train", "--recipe", "smoke", "--force"], "--force only applies with --resume"),
    ],
)
def test_train_bad_input_exit_2_one_line(args, needle):
    from click.testing import CliRunner

    from ssl_vit.cli import cli

    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 2, (r.exit_code, r.output, r.exception)
    assert needle in r.stderr and "Traceback" not in r.stderr
