"""ssl_vit/evaluation/collect.py and its command line eval/collect_results.py: many results.json -> one table."""

import csv
import json

import yaml

from tests.scripts import load_script


def _load():
    return load_script("eval/collect_results.py")


def test_collects_runs_into_one_table(tmp_path):
    mod = _load()
    run = tmp_path / "runs" / "a"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(
        yaml.safe_dump(
            {
                "model": {"name": "vit_pico", "img_size": 28, "patch_size": 7, "in_chans": 1},
                "method": {"name": "mocov3"},
            }
        )
    )
    (run / "results.json").write_text(
        json.dumps(
            {
                "top1": 81.5,
                "dataset": "fmnist",
                "metric": "knn",
                "n_train": 60000,
                "n_test": 10000,
                "wall_s": 12.0,
                "checkpoint": "x",
            }
        )
    )
    lp = run / "lp"
    lp.mkdir()
    (lp / "results.json").write_text(
        json.dumps(
            {
                "top1": 85.25,
                "top1_best": 86.0,
                "dataset": "fmnist",
                "mode": "protocol",
                "metric": "linear_protocol",
                "features": "cls_last4",
                "backbone": "vit_pico d128 L6 h4 p7 28px",
                "params": 1234567,
                "pretrain_method": "mocov3",
                "n_train": 60000,
                "n_test": 10000,
                "wall_s": 99.0,
                "checkpoint": "x",
            }
        )
    )
    md, csv_path = tmp_path / "t.md", tmp_path / "t.csv"
    assert mod.main([str(tmp_path / "runs"), "--md", str(md), "--csv", str(csv_path)]) == 0
    text = md.read_text()
    assert text.count("\n") == 4  # header, rule, two rows
    assert "| vit_pico d128 L6 h4 p7 28px | mocov3 | fmnist | knn |  | 81.50 |" in text  # filled from config.yaml
    assert "| linear_protocol | cls_last4 | 85.25 | 86.00 | 1.23M |" in text  # which probe features
    rows = list(csv.DictReader(csv_path.open()))
    assert [r["metric"] for r in rows] == ["knn", "linear_protocol"] and rows[1]["params"] == "1234567"


def test_nothing_found_is_exit_2(tmp_path, capsys):
    assert _load().main([str(tmp_path)]) == 2
    assert "no results.json" in capsys.readouterr().err


def test_collect_rows_skips_unreadable_files_with_a_warning(tmp_path):
    from ssl_vit.evaluation.collect import collect_rows

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "results.json").write_text(json.dumps({"top1": 70.0, "dataset": "fmnist", "metric": "knn"}))
    (tmp_path / "b" / "results.json").write_text(json.dumps({"top1": 75.0, "dataset": "fmnist", "metric": "knn"}))
    (tmp_path / "c.json").write_text("{not json")
    warnings = []
    rows = collect_rows(
        [str(tmp_path / "a"), str(tmp_path / "b"), str(tmp_path / "c.json"), str(tmp_path / "nope")],
        warn=warnings.append,
    )
    assert [r["top1"] for r in rows] == [75.0, 70.0]  # top1 sorts descending
    assert len(warnings) == 2 and "neither a results.json nor a folder" in warnings[0] and "c.json" in warnings[1]
