"""A short pretraining run emits every diagnostic tag (shared/README sec. 3), one metrics record per
step, the TensorBoard layout; `sslvit diagnose` reports on it, also when metrics.jsonl ends mid-line."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from ssl_vit.config import load_config
from ssl_vit.runs import pretrain

REQUIRED = {
    "diag/grad_norm/total",
    "diag/grad_norm/patch_embed",
    "diag/spike",
    "diag/knn_top1",
    "diag/rankme",
    "diag/feature_std",
    "diag/token_diversity",
}


@pytest.fixture(scope="module")
def run_dir(fmnist_dir, tmp_path_factory):
    """The smoke recipe (diagnostics every step) on the generated data, kNN monitor every 3 of 6 steps.
    Same overrides as tests/conftest.py ``tiny_overrides`` (function-scoped; this run is shared)."""
    cfg = load_config(
        "smoke",
        [
            f"data.dataset=fmnist:{fmnist_dir}",
            "train.max_steps=6",
            "train.batch_size=32",
            "train.checkpoint_every=3",
            "log.every=1",
            "log.progress=false",
            "eval.max_train=256",
            "eval.max_test=64",
            "log.tensorboard=true",
            "log.knn_every=3",
            "log.knn_subset=128",
        ],
    )
    out = tmp_path_factory.mktemp("diag_run")
    pretrain(cfg, out, log=lambda m: None)
    return out


def _records(d):
    return [json.loads(l) for l in (d / "metrics.jsonl").read_text().splitlines()]


def test_every_diag_tag_in_tensorboard_and_metrics(run_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.custom_scalar import layout_pb2

    ea = EventAccumulator(str(run_dir / "tensorboard"))
    ea.Reload()
    tb = set(ea.Tags()["scalars"])
    depth = 2  # smoke: vit_micro with depth 2
    blocks = {f"diag/grad_norm/block_{i}" for i in range(depth)} | {
        f"diag/attn_entropy/block_{i}" for i in range(depth)
    }
    assert REQUIRED | blocks | {"diag/grad_norm/projector", "diag/grad_norm/predictor"} <= tb
    assert "diag/grad_norm/block_2" not in tb
    assert [e.step for e in ea.Scalars("diag/knn_top1")] == [3, 6]
    # the custom-scalars page: first layer vs blocks on one chart
    layout = layout_pb2.Layout()
    layout.ParseFromString(ea.Tensors("custom_scalars__config__")[0].tensor_proto.string_val[0])
    charts = {c.title: list(c.multiline.tag) for cat in layout.category for c in cat.chart}
    assert any("patch_embed" in " ".join(t) and "block_" in " ".join(t) for t in charts.values())

    recs = _records(run_dir)
    assert set(recs[-1]) == {"step", "eval/knn_top1"}  # the loop's final kNN record
    recs = recs[:-1]
    assert [r["step"] for r in recs] == list(range(1, 7))  # one object per step
    for r in recs:  # smoke: diagnostics every step
        assert REQUIRED - {"diag/knn_top1"} <= set(r), r["step"]
        assert r["diag/grad_norm/patch_embed"] > 0  # frozen projection, gradient still measured
        assert 1 <= r["diag/rankme"] <= 64 and 0 < r["diag/token_diversity"] <= 1
        assert "diag/update_ratio/patch_embed" not in r  # frozen: never updated
    assert 0 <= recs[-1]["diag/knn_top1"] <= 100


def _cli(*args):
    """The real command line, in a fresh interpreter."""
    env = {**os.environ, "TQDM_DISABLE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "ssl_vit", *args], capture_output=True, text=True, env=env, timeout=300
    )


def _cli_here(*args):
    """The same command in this process (no interpreter start-up: seconds saved per call)."""
    from click.testing import CliRunner

    from ssl_vit.cli import cli

    r = CliRunner().invoke(cli, list(args), prog_name="sslvit")
    return subprocess.CompletedProcess(args, r.exit_code, r.stdout, r.stderr)


def test_diagnose_writes_report_and_plots(run_dir, tmp_path):
    r = _cli("diagnose", str(run_dir))
    assert r.returncode == 0, r.stderr
    for f in ("report.md", "diag_training.png", "diag_representation.png"):
        assert (run_dir / f).stat().st_size > 500, f
    md = (run_dir / "report.md").read_text()
    assert "## Verdict" in md and "| spike steps / episodes |" in md and "final kNN" in md
    assert (run_dir / "diag_training.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_diagnose_on_a_run_cut_mid_line_and_a_comparison(run_dir, tmp_path):
    cut = tmp_path / "cut"
    shutil.copytree(run_dir, cut, ignore=shutil.ignore_patterns("checkpoints", "tensorboard", "*.png", "report.md"))
    text = (cut / "metrics.jsonl").read_text()
    lines = text.splitlines(keepends=True)
    (cut / "metrics.jsonl").write_text("".join(lines[:4]) + lines[4][: len(lines[4]) // 2])  # killed mid-write
    r = _cli_here("diagnose", str(cut), str(run_dir), "--output-dir", str(tmp_path / "cmp"))
    assert r.returncode == 0, r.stderr
    md = (cut / "report.md").read_text()
    assert "ends mid-line" in md and "4 of 6" in md and "in progress" in md
    assert (cut / "diag_training.png").is_file()
    cmp = (tmp_path / "cmp" / "report.md").read_text()
    assert "# Stability comparison" in cmp and cmp.count("(patch proj. frozen)") >= 2
    for f in ("compare.png", "compare_first_vs_last.png"):
        assert (tmp_path / "cmp" / f).stat().st_size > 500
    assert r.stdout.strip().splitlines()[-1] == f"comparison: {tmp_path / 'cmp' / 'report.md'}"


@pytest.mark.parametrize(
    "setup,needle",
    [
        ("missing", "not found"),
        ("empty_dir", "has no metrics.jsonl"),
        ("no_records", "no complete records"),
        ("bad_set", "unknown config key"),
    ],
)
def test_diagnose_errors_are_one_line_exit_2(tmp_path, run_dir, setup, needle):
    d = tmp_path / "run"
    args = []
    if setup != "missing":
        d.mkdir()
    if setup == "no_records":
        (d / "metrics.jsonl").write_text('{"step": 1, "train/lo')
    if setup == "bad_set":
        d = run_dir
        args = ["--set", "diag.knn_dipp=1"]
    r = _cli_here("diagnose", str(d), *args)
    assert r.returncode == 2 and needle in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
