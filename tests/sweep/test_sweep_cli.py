"""`sslvit sweep` through the CLI: bad input (exit 2, one stderr line, nothing run) and one end-to-end sweep
through real `sslvit pretrain` subprocesses (a fresh run, a half-done run resumed, then a rerun that skips)."""

import json
import re

import pytest
from click.testing import CliRunner

from ssl_vit.cli import cli
from ssl_vit.sweep.grid import SweepSpec, expand, parse_grid, run_overrides, validate
from ssl_vit.sweep.records import write_spec
from tests.conftest import StopAt


def _sweep(*args):
    return CliRunner().invoke(cli, ["sweep", *args])


def _sets(overrides):
    return [a for o in overrides for a in ("--set", o)]


def _one_error_line(r):
    assert r.exit_code == 2, (r.exit_code, r.output, r.stderr)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    return lines[0]


@pytest.mark.parametrize(
    "args, msg",
    [
        (
            ["--grid", "optim.lrr=1e-3,3e-3"],
            r"--grid optim\.lrr=1e-3: unknown config key 'optim\.lrr' \(did you mean 'optim\.lr'\?\)",
        ),
        (["--grid", "optim.lr=1e-3,fast"], r"--grid optim\.lr=fast: optim\.lr: expected a number"),
        (["--grid", "model.patch_embed.frozen=false,maybe"], r"expected true or false"),
        (["--grid", "optim.lr="], r"empty grid"),
        ([], r"empty grid"),
        (["--grid", "optim.lr=1e-3", "--grid", "optim.lr=3e-3"], r"--grid optim\.lr is given twice"),
        (["--grid", "optim.lr=1e-3", "--set", "optim.lrr=1"], r"unknown config key 'optim\.lrr'"),
        (["--grid", "optim.lr=1e-3", "--set", "seed=3"], r"--seeds"),
        (["--grid", "seed=1,2"], r"--seeds"),
        (["--grid", "optim.lr=1e-3", "--seeds", "0,x"], r"--seeds '0,x' is not a list of integers"),
        (["--grid", "model.patch_size=7,5"], r"run patch_size=5_seed=0: .*does not divide"),
        (["--grid", "optim.lr=1e-3", "--jobs", "0"], r"--jobs must be >= 1"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_runs_nothing(tmp_path, args, msg):
    out = tmp_path / "sw"
    line = _one_error_line(_sweep("--recipe", "smoke", "--output-dir", str(out), *args))
    assert re.search(msg, line), line
    assert not out.exists()  # nothing created, nothing run


def test_an_output_dir_with_another_sweep_or_other_files_is_refused(tmp_path):
    out = tmp_path / "sw"
    spec = SweepSpec("smoke", parse_grid(["optim.lr=1e-3,3e-3"]), [0])
    write_spec(out, spec, validate(spec, 1), 1, 1)
    before = sorted(p.name for p in out.iterdir())
    line = _one_error_line(_sweep("--recipe", "smoke", "--grid", "optim.lr=1e-3,6e-3", "--output-dir", str(out)))
    assert "holds a different sweep (--grid optim.lr=1e-3,3e-3 -> 1e-3,6e-3)" in line and "another --output-dir" in line
    assert sorted(p.name for p in out.iterdir()) == before
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("x")
    line = _one_error_line(_sweep("--recipe", "smoke", "--grid", "optim.lr=1e-3", "--output-dir", str(other)))
    assert "not empty and holds no sweep" in line
    line = _one_error_line(_sweep("--output-dir", str(other), "--summarize-only"))
    assert "holds no sweep" in line
    assert _one_error_line(_sweep("--output-dir", str(tmp_path / "nothing"))).startswith("error: nothing to sweep")


def test_help_teaches_with_an_example():
    r = CliRunner().invoke(cli, ["sweep", "--help"])
    assert r.exit_code == 0
    assert "sslvit sweep --recipe instability_fmnist" in r.output and "--summarize-only" in r.output
    assert "tensorboard --logdir runs/sweep" in r.output


def test_end_to_end_real_pretrain_runs_resume_and_skip(tmp_path, tiny_overrides):
    from ssl_vit.config import load_config
    from ssl_vit.runs import pretrain

    out = tmp_path / "sweep"
    fixed = [o for o in tiny_overrides if not o.startswith(("train.max_steps", "train.checkpoint_every", "eval.max"))]
    fixed += ["train.max_steps=2", "train.checkpoint_every=1", "log.knn_every=1", "log.knn_subset=64"]
    grid = ["optim.lr=1e-3,3e-3"]
    args = [
        "--recipe",
        "smoke",
        *[x for g in grid for x in ("--grid", g)],
        "--seeds",
        "0",
        *_sets(fixed),
        "--output-dir",
        str(out),
        "--jobs",
        "2",
        "--threads",
        "1",
    ]
    # a sweep killed while lr=3e-3 was half-done: its spec written, a checkpoint at step 1 of 2
    spec = SweepSpec("smoke", parse_grid(grid), [0], fixed)
    write_spec(out, spec, validate(spec, 1), 2, 1)
    half = expand(spec)[1]
    assert half.name == "lr=3e-3_seed=0"
    pretrain(load_config("smoke", run_overrides(spec, half, 1)), out / half.name, hooks=[StopAt(1)], log=lambda m: None)
    assert not (out / half.name / "results.json").exists()

    r = _sweep(*args)
    assert r.exit_code == 0, (r.output, r.stderr)
    assert re.search(r"\[1/2\] started lr=1e-3_seed=0", r.stderr) and "[2/2] resuming lr=3e-3_seed=0" in r.stderr
    assert re.search(r"finished lr=3e-3_seed=0: kNN \d+\.\d\d, [\d.]+ s wall, [\d.]+ CPU-s", r.stderr)
    assert "resuming from step 1" in (out / half.name / "run.log").read_text()
    assert r.output.strip().splitlines()[-1].startswith(f"TensorBoard: tensorboard --logdir {out}")
    for name in ("lr=1e-3_seed=0", "lr=3e-3_seed=0"):
        assert (out / name / "results.json").is_file() and list((out / name / "tensorboard").glob("events.*"))
    s = json.loads((out / "sweep.json").read_text())
    assert s["status_counts"] == {"ok": 2}
    for row in s["runs"]:
        res = json.loads((out / row["name"] / "results.json").read_text())
        assert row["knn_top1"] == res["top1"] and res["n_test"] == 128  # the full (generated) test split
        assert row["rankme_last"] is not None and row["cpu_s"] > 0
    assert s["arms"][0]["n_lr"] == 2 and s["arms"][0]["lr_sensitivity"] >= 0
    assert (out / "lr_sensitivity.png").is_file()
    md = (out / "sweep.md").read_text()
    assert "| lr=3e-3_seed=0 | 3e-3 | 0 |" in md and "LR sensitivity" in md
    print(md)

    # rerun the same command: both finished, nothing runs; --summarize-only rewrites the same table
    logs = {n: (out / n / "run.log").read_text() for n in ("lr=1e-3_seed=0", "lr=3e-3_seed=0")}
    r = _sweep(*args)
    assert r.exit_code == 0 and r.stderr.count("skipped") == 2 and "nothing to run" in r.stderr
    assert logs == {n: (out / n / "run.log").read_text() for n in logs}
    r = _sweep("--output-dir", str(out), "--summarize-only")
    assert r.exit_code == 0 and (out / "sweep.md").read_text() == md
