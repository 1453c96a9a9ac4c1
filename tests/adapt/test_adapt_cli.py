"""`sslvit adapt` end to end on a tiny run dir: the contract files, the protocol (select on val200, retrain on
train800val200, test scored once), held-out val for datasets without one, one-line errors."""

import json

import pytest
import torch
from click.testing import CliRunner

from ssl_vit.checkpoints import save_backbone
from ssl_vit.cli import cli
from ssl_vit.config import to_dict
from ssl_vit.core.input_spec import InputSpec
from tests.adapt.conftest import TINY
from tests.data.trees import make_vtab_task

CONTRACT = {
    "top1",
    "dataset",
    "checkpoint",
    "n_train",
    "n_test",
    "wall_s",
    "method",
    "trainable_params",
    "trainable_share",
}
FAST = [
    "--set",
    "adapt.epochs=2",
    "--set",
    "adapt.warmup_epochs=1",
    "--set",
    "adapt.scales=0.1,10",
    "--set",
    "log.progress=false",
    "--set",
    "data.num_workers=0",
    "--set",
    "train.threads=1",
]


@pytest.fixture()
def run_dir(tmp_path):
    from ssl_vit.models import create_backbone

    torch.manual_seed(0)
    run = tmp_path / "run"
    save_backbone(
        run / "checkpoints" / "last.safetensors",
        create_backbone(TINY).state_dict(),
        to_dict(TINY),
        InputSpec(28, 1, (0.286,), (0.353,)),
    )
    return run


def test_adapt_convpass_on_a_vtab_task_writes_the_contract(tmp_path, run_dir, monkeypatch):
    import ssl_vit.adapt.train as train

    task, _ = make_vtab_task(tmp_path / "vtab-1k", "dtd", sizes={"train800": 8, "val200": 4, "test": 6})
    scored = []
    real = train.evaluate
    monkeypatch.setattr(
        train, "evaluate", lambda model, data, *a, **k: scored.append(len(data)) or real(model, data, *a, **k)
    )
    out = tmp_path / "out"
    r = CliRunner().invoke(
        cli,
        [
            "adapt",
            "--method",
            "convpass",
            "--checkpoint",
            str(run_dir),
            "--dataset",
            f"vtab:{task}",
            "--recipe",
            "vtab_cpu",
            "--output-dir",
            str(out),
            *FAST,
        ],
    )
    assert r.exit_code == 0, r.output + repr(r.exception)
    assert r.stdout.strip().splitlines()[-1].startswith("top1=")
    res = json.loads((out / "results.json").read_text())
    assert CONTRACT <= set(res) and res["method"] == "convpass" and res["dataset"] == f"vtab:{task}"
    assert abs(res["top1"] - float(r.stdout.strip().splitlines()[-1].split("=")[1])) < 0.01
    assert (res["n_select_train"], res["n_val"], res["n_train"], res["n_test"]) == (8, 4, 12, 6)
    assert res["splits"]["select_val"] == "val200" and res["splits"]["final_train"] == "train800val200"
    assert [c["scale"] for c in res["selection"]] == [0.1, 10.0] and res["scale"] in (0.1, 10.0)
    assert 1 <= res["epoch"] <= 2 and res["trainable_params_no_head"] == 4544 and 0 < res["trainable_share"] < 1
    assert scored == [4, 4, 4, 4, 6]  # val200 after each epoch of each scale; test exactly once
    for f in ("results.md", "adapter.safetensors", "metrics.jsonl", "config.yaml"):
        assert (out / f).is_file(), f
    assert any((out / "tensorboard").iterdir())
    tags = set().union(*(json.loads(line).keys() for line in (out / "metrics.jsonl").read_text().splitlines()))
    assert {"adapt/select_s0.1_xavier/val_top1", "adapt/final/loss", "adapt/test_top1"} <= tags
    # the adapter loads onto the run's backbone and reproduces the reported test accuracy
    from ssl_vit.adapt import load_adapter
    from ssl_vit.checkpoints import load_backbone
    from ssl_vit.core.precision import Precision
    from ssl_vit.data import load_dataset

    model, meta = load_adapter(out / "adapter.safetensors", load_backbone(run_dir).model)
    assert meta["scale"] == res["scale"] and meta["num_classes"] == 47  # dtd: NOAH's class count
    acc = real(
        model,
        load_dataset(f"vtab:{task}", "test"),
        InputSpec(28, 1, (0.286,), (0.353,)),
        64,
        torch.device("cpu"),
        Precision.resolve("fp32", torch.device("cpu")),
        0,
    )
    assert acc == pytest.approx(res["top1"])


def test_adapt_without_a_val_split_holds_out_part_of_train(tmp_path, run_dir, fmnist_dir):
    out = tmp_path / "lin"
    r = CliRunner().invoke(
        cli,
        [
            "adapt",
            "--method",
            "linear",
            "--checkpoint",
            str(run_dir),
            "--dataset",
            f"fmnist:{fmnist_dir}",
            "--output-dir",
            str(out),
            *FAST,
            "--set",
            "adapt.save_adapter=false",
            "--set",
            "log.tensorboard=false",
        ],
    )
    assert r.exit_code == 0, r.output + repr(r.exception)
    res = json.loads((out / "results.json").read_text())
    assert (res["n_val"], res["n_select_train"], res["n_train"], res["n_test"]) == (51, 461, 512, 128)
    assert res["scale"] is None and len(res["selection"]) == 1 and res["trainable_params"] == 32 * 10 + 10
    assert not (out / "adapter.safetensors").exists()


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--set", "adapt.scales=a,b"], "adapt.scales must be comma-separated numbers"),
        (["--set", "adapt.conv_init=kaiming"], "adapt.conv_init must be one or more of xavier, identity"),
        (["--set", "adapt.epoch=3"], "did you mean 'adapt.epochs'"),
        (["--set", "adapt.method=lorra"], "did you mean 'lora'"),
        (["--dataset", "nope:/x"], "unknown dataset 'nope'"),
    ],
)
def test_bad_input_exits_2_with_one_line(run_dir, args, needle):
    base = ["adapt", "--checkpoint", str(run_dir), "--dataset", "fmnist"]
    if args[0] == "--dataset":
        base = base[:-2]
    r = CliRunner().invoke(cli, base + args)
    assert r.exit_code == 2, (r.output, r.exception)
    assert needle in r.output and len(r.output.strip().splitlines()) == 1


def test_fewshot_selects_on_val_and_retrains_on_the_k_shots_only(tmp_path, run_dir):
    from tests.data.trees import make_fewshot_tree

    root = make_fewshot_tree(tmp_path / "fs", n_classes=3, shots=(2,), seeds=(0,), n_val=2, n_test=4)
    out = tmp_path / "fs_out"
    r = CliRunner().invoke(
        cli,
        [
            "adapt",
            "--method",
            "vpt_shallow",
            "--checkpoint",
            str(run_dir),
            "--dataset",
            f"fewshot:{root}?shots=2&seed=0",
            "--recipe",
            "fewshot_convpass",
            "--output-dir",
            str(out),
            *FAST,
            "--set",
            "log.tensorboard=false",
        ],
    )
    assert r.exit_code == 0, r.output + repr(r.exception)
    res = json.loads((out / "results.json").read_text())
    assert (res["n_select_train"], res["n_val"], res["n_train"], res["n_test"]) == (6, 6, 6, 12)
    assert res["splits"] == {"select_train": "train", "select_val": "val", "final_train": "train", "test": "test"}
    assert res["adapt_config"]["lr"] == 5e-3 and res["trainable_params_no_head"] == 10 * 32
