"""report.py on a synthetic run: spike episodes and who led them, dips, warnings, files written."""

import json

import numpy as np
import pytest

from ssl_vit.config import Config, apply_overrides, dump_yaml
from ssl_vit.diagnostics.report import read_run, summarize, write_comparison, write_run_report


def _spike(v, median):
    return {"value": v, "median": median, "ratio": v / median, "z": 9.0}


def _write_run(d, frozen=False, spikes=True):
    d.mkdir()
    dump_yaml(
        apply_overrides(
            Config(), ["log.diag_every=1", "train.max_steps=100", f"model.patch_embed.frozen={str(frozen).lower()}"]
        ),
        d / "config.yaml",
    )
    rng = np.random.default_rng(0)
    lines = []
    for step in range(1, 101):
        r = {
            "step": step,
            "train/loss": 4 - step / 50 + rng.normal(0, 0.01),
            "epoch": step / 1000,
            "diag/grad_norm/total": 1.0,
            "diag/grad_norm/patch_embed": 0.2,
            "diag/grad_norm/block_0": 0.1,
            "diag/rankme": 20.0 if step < 90 else 2.5,
            "diag/feature_std": 0.05,
            "diag/token_diversity": 0.5,
            "diag/spike": 0.0,
        }
        if spikes and step == 40:
            r.update(
                {
                    "diag/grad_norm/patch_embed": 2.0,
                    "diag/spike": 1.0,
                    "spike_action": "log",
                    "spikes": {"grad_norm/patch_embed": _spike(2.0, 0.2)},
                }
            )
        if spikes and step == 42:
            r.update(
                {
                    "diag/grad_norm/block_0": 0.5,
                    "diag/spike": 1.0,
                    "spike_action": "log",
                    "spikes": {"grad_norm/block_0": _spike(0.5, 0.1), "grad_norm/patch_embed": _spike(0.9, 0.2)},
                }
            )
        if spikes and step == 80:
            r.update({"diag/spike": 1.0, "spike_action": "skip", "spikes": {"grad_norm/total": _spike(3.0, 1.0)}})
        if step % 20 == 0:
            r["diag/knn_top1"] = {20: 60.0, 40: 65.0, 60: 61.5, 80: 66.0, 100: 67.0}[step]
        lines.append(json.dumps(r))
    lines.append(json.dumps({"step": 100, "eval/knn_top1": 70.25}))
    (d / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    return d


def test_summary_of_a_spiky_run(tmp_path):
    sm = summarize(read_run(_write_run(tmp_path / "a")))
    assert sm.spike_steps == [40, 42, 80] and len(sm.episodes) == 2  # 40 and 42 are one episode
    assert sm.episodes[0]["lead"] == ["grad_norm/patch_embed"] and sm.episodes[1]["lead"] == ["grad_norm/total"]
    assert (sm.first_layer_first_spike, sm.first_layer_led, sm.first_layer_led_alone) == (40, 1, 1)
    assert sm.largest["signal"] == "grad_norm/patch_embed" and sm.largest["step"] == 40
    assert sm.largest["ratio"] == pytest.approx(10.0)
    assert [d["step"] for d in sm.dips] == [60] and sm.dips[0]["drop"] == pytest.approx(3.5)
    assert sm.final_knn == 70.25 and sm.final_knn_source.startswith("full") and not sm.in_progress
    assert any("RankMe fell to 2.5 from its early value 20.0 at step 90" in w for w in sm.warnings)
    assert "unstable" in sm.verdict and "spiked first in 1 of 2" in sm.verdict


def test_report_files_and_threshold_override(tmp_path):
    run = read_run(_write_run(tmp_path / "a"), ["diag.knn_dip=5"])
    assert summarize(run).dips == []  # 3.5-point drop < 5
    paths = write_run_report(run)
    assert [p.name for p in paths] == ["report.md", "diag_training.png", "diag_representation.png"]
    md = paths[0].read_text()
    assert "| 40 | grad_norm/patch_embed: 2 (10.0x, z 9.0) | log |" in md
    assert "| 80 | grad_norm/total: 3 (3.0x, z 9.0) | skip |" in md


def test_comparison_names_the_stabler_run(tmp_path):
    a = read_run(_write_run(tmp_path / "trainable", frozen=False))
    b = read_run(_write_run(tmp_path / "frozen", frozen=True, spikes=False))
    assert summarize(b).excursion is not None and summarize(b).events == []
    paths = write_comparison([a, b], tmp_path / "cmp")
    md = paths[0].read_text()
    assert "frozen (patch proj. frozen) was the most stable, trainable (patch proj. trainable) the least" in md
    assert md.count("| spike steps / episodes | 3 / 2 | 0 / 0 |") == 1
    assert all(p.stat().st_size > 1000 for p in paths[1:])


def test_collapse_is_judged_against_early_values_and_live_alarms_are_reported(tmp_path):
    # the case: RankMe 13.3 early -> 1.8; a late "peak" of 2.7 must not be the reference
    d = tmp_path / "c"
    d.mkdir()
    dump_yaml(apply_overrides(Config(), ["log.diag_every=2", "train.max_steps=60"]), d / "config.yaml")
    lines = []
    for step in range(2, 61, 2):
        rk = 13.3 if step <= 4 else max(1.8, 13.3 - step) if step < 20 else (2.7 if step == 30 else 1.8)
        lines.append(json.dumps({"step": step, "train/loss": 4.3, "diag/rankme": rk, "diag/feature_std": 0.05}))
    for kind in ("rankme", "feature_std"):  # two alarms on one step: both must survive
        lines.append(
            json.dumps(
                {
                    "step": 12,
                    "event": "alarm",
                    "alarm": kind,
                    "diag/alarm/" + kind: 1.0,
                    "message": f"alarm {kind} at step 12: ...",
                }
            )
        )
    (d / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    sm = summarize(read_run(d))
    assert sm.rankme_early == 13.3
    # first value <= max(3.0 floor, 0.2 * 13.3): 13.3 - 12 = 1.3 -> clipped 1.8 at step 12 (step 10: 3.3 > 3.0)
    assert sm.collapse["rankme"] == pytest.approx({"step": 12, "value": 1.8, "reference": 13.3, "bound": 3.0})
    assert "feature_std" not in sm.collapse  # constant std: no collapse
    assert [(a["kind"], a["step"]) for a in sm.alarms] == [("rankme", 12), ("feature_std", 12)]
    assert any("RankMe fell to 1.8 from its early value 13.3 at step 12" in w for w in sm.warnings)
    assert "Live alarms: rankme at step 12, feature_std at step 12" in sm.verdict


def test_comparison_names_the_sweep_when_run_names_collide(tmp_path):
    (tmp_path / "sweep_a").mkdir()
    (tmp_path / "sweep_b").mkdir()
    a = read_run(_write_run(tmp_path / "sweep_a" / "lr=2.4e-2_seed=0"))
    b = read_run(_write_run(tmp_path / "sweep_b" / "lr=2.4e-2_seed=0", frozen=True, spikes=False))
    md = write_comparison([a, b], tmp_path / "cmp")[0].read_text()
    assert "| sweep_a/lr=2.4e-2_seed=0 (patch proj. trainable) | sweep_b/lr=2.4e-2_seed=0 (patch proj. frozen) |" in md
