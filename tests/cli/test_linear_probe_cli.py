"""`sslvit linear-probe` and `sslvit knn` against the contract: results.json keys, `top1=` last, a Markdown row,
features cached across commands, exit 2 + one line for bad input."""

import json
import os
import subprocess
import sys

import pytest
import torch
from click.testing import CliRunner

from ssl_vit.checkpoints import save_backbone
from ssl_vit.config import ModelConfig, to_dict
from ssl_vit.core.input_spec import InputSpec

CONTRACT = {"top1", "dataset", "checkpoint", "n_train", "n_test", "wall_s"}


@pytest.fixture()
def backbone(tmp_path):
    cfg = ModelConfig(name="vit_micro", img_size=28, patch_size=7, in_chans=1, depth=1)
    from ssl_vit.models import create_backbone

    torch.manual_seed(0)
    p = tmp_path / "b.safetensors"
    save_backbone(p, create_backbone(cfg).state_dict(), to_dict(cfg), InputSpec(28, 1, (0.286,), (0.353,)))
    return p


def test_linear_probe_cli_writes_the_contract_and_reuses_features(tmp_path, backbone, fmnist_dir):
    cache = tmp_path / "cache"
    common = [
        "--checkpoint",
        str(backbone),
        "--dataset",
        f"fmnist:{fmnist_dir}",
        "--set",
        f"eval.cache_dir={cache}",
        "--set",
        "log.progress=false",
    ]
    env = {**os.environ, "TQDM_DISABLE": "1"}
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "ssl_vit",
            "linear-probe",
            *common,
            "--output-dir",
            str(tmp_path / "lp"),
            "--set",
            "probe.fast_epochs=5",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    last = r.stdout.strip().splitlines()[-1]
    assert last.startswith("top1=")
    res = json.loads((tmp_path / "lp" / "results.json").read_text())
    assert CONTRACT <= set(res) and abs(res["top1"] - float(last.split("=")[1])) < 0.01
    assert res["n_train"] == 512 and res["n_test"] == 128 and res["mode"] == "fast"
    assert res["features_extracted"] == ["test", "train"] and res["top1"] > 50  # bars are easy
    md = (tmp_path / "lp" / "results.md").read_text()
    assert "| linear_fast |" in md and "vit_micro" in md
    # kNN on the same backbone and data: reads the probe's features, extracts nothing
    r = CliRunner().invoke(
        __import__("ssl_vit.cli", fromlist=["cli"]).cli, ["knn", *common, "--output-dir", str(tmp_path / "knn")]
    )
    assert r.exit_code == 0, r.output
    knn = json.loads((tmp_path / "knn" / "results.json").read_text())
    assert sorted(knn["features_cached"]) == ["test", "train"] and knn["features_extracted"] == []
    assert CONTRACT <= set(knn)


@pytest.mark.parametrize("features,dim", [("cls", 64), ("cls+avgpool", 128)])
def test_linear_probe_protocol_mode_cli(tmp_path, backbone, fmnist_dir, features, dim):
    from ssl_vit.cli import cli

    dino = ["--set", "probe.avgpool_patchtokens=true"] if features != "cls" else []
    r = CliRunner().invoke(
        cli,
        [
            "linear-probe",
            "--checkpoint",
            str(backbone),
            "--dataset",
            f"fmnist:{fmnist_dir}",
            "--output-dir",
            str(tmp_path / "p"),
            "--set",
            "probe.mode=protocol",
            "--set",
            "probe.epochs=2",
            "--set",
            "probe.batch_size=128",
            "--set",
            "eval.feature_cache=false",
            "--set",
            "log.progress=false",
            *dino,
        ],
    )
    assert r.exit_code == 0, r.output
    assert r.stdout.strip().splitlines()[-1].startswith("top1=")
    res = json.loads((tmp_path / "p" / "results.json").read_text())
    assert res["mode"] == "protocol" and len(res["history"]) == 2 and res["top1"] == res["top1_last"]
    assert {"top1_best", "best_epoch", "top1_is"} <= set(res) and res["feature_cache"] == "off"
    assert (res["features"], res["feature_dim"], res["backbone_unchanged"]) == (features, dim, True)
    assert "top1_best" in (tmp_path / "p" / "results.md").read_text()


def test_linear_probe_dino_features_cli(tmp_path, backbone, fmnist_dir):
    """probe.avgpool_patchtokens: CLS + patch-token mean, twice as wide, its own cache entries, named in results."""
    from ssl_vit.cli import cli

    common = [
        "linear-probe",
        "--checkpoint",
        str(backbone),
        "--dataset",
        f"fmnist:{fmnist_dir}",
        "--set",
        f"eval.cache_dir={tmp_path / 'cache'}",
        "--set",
        "log.progress=false",
        "--set",
        "probe.fast_epochs=5",
    ]
    r = CliRunner().invoke(cli, [*common, "--output-dir", str(tmp_path / "cls")])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(
        cli, [*common, "--output-dir", str(tmp_path / "dino"), "--set", "probe.avgpool_patchtokens=true"]
    )
    assert r.exit_code == 0, r.output
    cls = json.loads((tmp_path / "cls" / "results.json").read_text())
    dino = json.loads((tmp_path / "dino" / "results.json").read_text())
    assert (cls["features"], cls["feature_dim"]) == ("cls", 64)
    assert (dino["features"], dino["feature_dim"]) == ("cls+avgpool", 128)
    assert dino["features_extracted"] == ["test", "train"]  # not the CLS entries of the first run
    assert "| cls+avgpool |" in (tmp_path / "dino" / "results.md").read_text()


@pytest.mark.parametrize(
    "sets,needle",
    [
        (["probe.mode=slow"], "probe.mode must be fast or protocol"),
        (["probe.n_last_blocks=0"], "probe.n_last_blocks must be >= 1"),
        (["probe.n_last_blocks=3"], "probe.n_last_blocks=3 but the backbone has 1 blocks"),
        (["probe.fast_lrs=a,b"], "probe.fast_lrs must be comma-separated numbers"),
        (["probe.epoch=3"], "did you mean 'probe.epochs'"),
        (["model.num_heads=5"], "does not divide"),
    ],
)
def test_linear_probe_bad_input_exit_2_one_line(backbone, sets, needle):
    from ssl_vit.cli import cli

    args = ["linear-probe", "--checkpoint", str(backbone), "--dataset", "fmnist"]
    for s in sets:
        args += ["--set", s]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 2, (r.exit_code, r.output, r.exception)
    assert needle in r.stderr and "Traceback" not in r.stderr
    assert len([l for l in r.stderr.strip().splitlines() if l.startswith("error:")]) == 1
