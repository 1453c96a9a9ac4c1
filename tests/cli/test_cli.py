"""The CLI contract (shared/README sec. 3): files written, `top1=` last, exit codes, no tracebacks."""

import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors import safe_open

from ssl_vit.core.input_spec import InputSpec


def run_cli(*args, cwd=None):
    env = {**os.environ, "TQDM_DISABLE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "ssl_vit", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=300
    )


def test_smoke_pretrain_writes_the_contract_then_knn(tmp_path, tiny_overrides):
    out = tmp_path / "run"
    sets = [a for o in tiny_overrides for a in ("--set", o)]
    r = run_cli("pretrain", "--recipe", "smoke", "--output-dir", str(out), *sets)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1].startswith("top1=")
    for f in ("config.yaml", "metrics.jsonl", "results.json", "checkpoints/last.pt", "checkpoints/last.safetensors"):
        assert (out / f).is_file(), f
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    recs = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    assert {"train/loss", "train/lr", "train/momentum", "train/throughput"} <= set(recs[0])
    state = torch.load(out / "checkpoints" / "last.pt", weights_only=True)
    assert state["step"] == 6 and state["config"]["train"]["max_steps"] == 6
    with safe_open(str(out / "checkpoints" / "last.safetensors"), "pt") as f:
        meta = f.metadata()
        assert json.loads(meta["model_config"])["name"] == "vit_micro" and "patch_embed.proj.weight" in f.keys()
    # tensorboard tags
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ea = EventAccumulator(str(out / "tensorboard"))
    ea.Reload()
    assert {"train/loss", "train/lr", "train/momentum", "train/throughput"} <= set(ea.Tags()["scalars"])
    # kNN from the safetensors file alone: it carries the run's config, so the run's eval.max_train / max_test hold
    dataset = [o for o in tiny_overrides if o.startswith("data.dataset=")][0].split("=", 1)[1]
    r2 = run_cli(
        "knn",
        "--checkpoint",
        str(out / "checkpoints" / "last.safetensors"),
        "--dataset",
        dataset,
        "--output-dir",
        str(tmp_path / "knn"),
    )
    assert r2.returncode == 0, r2.stderr
    top1 = float(r2.stdout.strip().splitlines()[-1].split("=")[1])
    res = json.loads((tmp_path / "knn" / "results.json").read_text())
    assert abs(res["top1"] - top1) < 0.01 and res["n_train"] == 256 and res["n_test"] == 64
    assert {"top1", "dataset", "checkpoint", "n_train", "n_test", "wall_s"} <= set(res)


@pytest.mark.parametrize(
    "args,needle",
    [
        (["pretrain", "--recipe", "nope"], "unknown recipe 'nope'"),
        (["pretrain", "--recipe", "smoke", "--set", "train.max_step=1"], "did you mean 'train.max_steps'"),
        (["pretrain", "--recipe", "smoke", "--set", "model.name=vit_x"], "unknown backbone"),
        (["pretrain", "--recipe", "smoke", "--set", "data.dataset=cifar10:/does/not/exist"], "does not exist"),
        (["pretrain", "--recipe", "smoke", "--set", "train.batch_size=zero"], "expected an integer"),
        (["pretrain", "--recipe", "smoke", "--set", "noequals"], "has no '='"),
        (["pretrain", "--resume"], "--resume needs --output-dir"),
        (["pretrain", "--recipe", "smoke", "--force"], "--force only applies with --resume"),
        (["pretrain", "--recipe", "smoke", "--set", "optim.lr=-0.1"], "optim.lr must be > 0"),
        (["pretrain", "--recipe", "smoke", "--set", "model.stem=hexagon"], "unknown stem"),
        (["pretrain", "--recipe", "smoke", "--set", "method.name=dino"], "unknown method"),
        (["pretrain", "--recipe", "smoke", "--set", "data.dataset=imagefolder:/nonexistent"], "does not exist"),
        (["knn", "--checkpoint", "/nope.pt", "--dataset", "fmnist"], "not found"),
        (["knn", "--checkpoint", "/nope.pt", "--dataset", "bogus:1"], "unknown dataset"),
    ],
)
def test_bad_input_exit_2_one_line(args, needle):
    from click.testing import CliRunner

    from ssl_vit.cli import cli

    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 2, (r.exit_code, r.output, r.exception)
    assert needle in r.stderr and "Traceback" not in r.stderr
    assert len([l for l in r.stderr.strip().splitlines() if l.startswith("error:")]) == 1


def test_bad_input_in_a_real_process_has_no_traceback():
    r = run_cli("pretrain", "--recipe", "smoke", "--set", "model.patch_size=5")
    assert (
        r.returncode == 2
        and r.stderr.startswith("error: model.patch_size=5 does not divide")
        and "Traceback" not in r.stderr
    )


def test_unwritable_output_dir(tmp_path, tiny_overrides):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    if os.access(ro, os.W_OK):  # root ignores permissions: use a path under a file instead
        target = tmp_path / "afile"
        target.write_text("x")
        out = target / "run"
    else:
        out = ro / "run"
    sets = [a for o in tiny_overrides for a in ("--set", o)]
    r = run_cli("pretrain", "--recipe", "smoke", "--output-dir", str(out), *sets)
    assert r.returncode == 2 and "output" in r.stderr and "Traceback" not in r.stderr


def test_help_teaches():
    r = run_cli("pretrain", "--help")
    assert r.returncode == 0
    for needle in ("--recipe", "--set", "--resume", "smoke", "vit_pico", "patchify", "fmnist", "Examples"):
        assert needle in r.stdout


def test_empty_and_corrupt_data_dirs(tmp_path):
    from click.testing import CliRunner

    from ssl_vit.cli import cli

    (tmp_path / "empty").mkdir()
    r = CliRunner().invoke(
        cli,
        [
            "pretrain",
            "--recipe",
            "smoke",
            "--output-dir",
            str(tmp_path / "o"),
            "--set",
            f"data.dataset=imagefolder:{tmp_path / 'empty'}",
            "--set",
            "model.in_chans=3",
        ],
    )
    assert r.exit_code == 2 and "has no 'train/' folder" in r.stderr
    (tmp_path / "fm").mkdir()
    (tmp_path / "fm" / "train-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b garbage")
    (tmp_path / "fm" / "train-labels-idx1-ubyte.gz").write_bytes(b"\x1f\x8b garbage")
    r = CliRunner().invoke(
        cli,
        [
            "pretrain",
            "--recipe",
            "smoke",
            "--output-dir",
            str(tmp_path / "o2"),
            "--set",
            f"data.dataset=fmnist:{tmp_path / 'fm'}",
        ],
    )
    assert r.exit_code == 2 and "cannot read IDX file" in r.stderr
    assert not (tmp_path / "o2" / "checkpoints" / "last.pt").exists()


def test_checkpoint_of_another_architecture_for_knn(tmp_path, fmnist_dir):
    from click.testing import CliRunner

    from ssl_vit.checkpoints import save_backbone
    from ssl_vit.cli import cli
    from ssl_vit.config import ModelConfig, to_dict
    from ssl_vit.models import create_backbone

    cfg = ModelConfig(name="vit_micro", img_size=28, patch_size=7, in_chans=1)
    sd = create_backbone(cfg).state_dict()
    sd["blocks.0.mlp.fc1.weight"] = torch.zeros(100, 64)  # saved from another MLP width
    save_backbone(tmp_path / "b.safetensors", sd, to_dict(cfg), InputSpec(28, 1, (0.3,), (0.3,)))
    r = CliRunner().invoke(
        cli, ["knn", "--checkpoint", str(tmp_path / "b.safetensors"), "--dataset", f"fmnist:{fmnist_dir}"]
    )
    assert r.exit_code == 2 and "blocks.0.mlp.fc1.weight" in r.stderr and "(100, 64)" in r.stderr
