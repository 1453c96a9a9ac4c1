"""eval/reproduce/vitas_long_report.py: the ViTAS issue-24 tables from runs on disk."""

import json

from ssl_vit.config import load_config
from ssl_vit.config.loading import dump_yaml
from ssl_vit.models.flops import count_gflops
from ssl_vit.models.registry import create_backbone
from tests.scripts import load_script


def _retrain_run(root, name, top1, overrides):
    d = root / name
    d.mkdir(parents=True)
    dump_yaml(load_config("vitas_fmnist", overrides), d / "config.yaml")
    (d / "results.json").write_text(json.dumps({"top1": top1}))


def test_retrain_rows_group_seeds_and_count_flops(tmp_path):
    report = load_script("eval/reproduce/vitas_long_report.py")
    hand = ["model.name=vit_micro", "model.embed_dim=48", "model.depth=4", "model.num_heads=3", "model.mlp_ratio=4"]
    hand += ["model.vitas.blocks=", "train.max_steps=1500"]
    _retrain_run(tmp_path, "retrain_hand_s0", 77.0, hand)
    _retrain_run(tmp_path, "retrain_hand_s1", 78.0, hand)
    _retrain_run(tmp_path, "retrain_hand_s2", 77.9, hand)
    (tmp_path / "retrain_hand_s3").mkdir()  # unfinished: no results.json, not counted
    (tmp_path / "super_cyclic").mkdir()  # not a retraining run
    (row,) = report.retrain_rows(tmp_path)
    assert row["arm"] == "hand" and row["seeds"] == {0: 77.0, 1: 78.0, 2: 77.9}
    assert abs(row["mean"] - (77.0 + 78.0 + 77.9) / 3) < 1e-9 and (row["min"], row["max"]) == (77.0, 78.0)
    cfg = load_config("vitas_fmnist", hand)
    assert row["gflops"] == count_gflops(create_backbone(cfg.model), img_size=28, in_chans=1)
    assert row["steps"] == 1500 and row["model"] == "48-d, 4 blocks x 3 heads, MLP 4"
    table = report.retrain_table([row])
    assert (
        "| hand | 48-d, 4 blocks x 3 heads, MLP 4 |" in table
        and "77.00, 78.00, 77.90 | **77.63** | 77.00–78.00 |" in table
    )


def test_superformer_table_one_row_per_run():
    report = load_script("eval/reproduce/vitas_long_report.py")
    stats = {"final_mean_last20": 2.1, "std_around_rolling_mean": 0.0922, "mean_abs_step_change": 0.105}
    summary = {
        "settings": {"cyclic": {"sharing": "cyclic", "identity_shifting": True}},
        "loss": {"cyclic": stats},
        "usage": {"cyclic": {"min_over_max": 0.97, "cv": 0.012}},
        "subnets": {"cyclic": {"mean": 73.79, "std": 0.89}},
    }
    lines = report.superformer_table(summary).splitlines()
    assert len(lines) == 3
    assert lines[2] == "| cyclic | cyclic | on | 2.100 | 0.0922 | 0.1050 | 0.97 | 0.012 | 73.79 ± 0.89 % |"
