"""VTAB table and few-shot curves from synthetic results.json files, checked against hand computations."""

import csv
import io
import json
import math

import pytest

from ssl_vit.errors import SslvitError
from ssl_vit.evaluation.vtab_table import (
    fewshot_curves,
    load_results,
    parse_dataset,
    vtab_table,
    write_fewshot_curves,
    write_vtab_table,
)


def _write(tmp_path, name, dataset, method, top1, share=0.01, backbone="vit_t"):
    d = tmp_path / "runs" / name
    d.mkdir(parents=True)
    (d / "results.json").write_text(
        json.dumps({"dataset": dataset, "method": method, "top1": top1, "trainable_share": share, "backbone": backbone})
    )


@pytest.fixture()
def runs(tmp_path):
    v = "vtab:/data/vtab-1k/"
    for i, (task, method, top1, share) in enumerate(
        [
            ("cifar", "A", 60.0, 0.01),
            ("cifar", "A", 70.0, 0.03),
            ("dtd", "A", 50.0, 0.01),
            ("eurosat", "A", 90.0, 0.01),
            ("kitti", "A", 40.0, 0.01),
            ("dsprites_loc", "A", 20.0, 0.01),
            ("cifar", "B", 80.0, 1.0),
            ("dtd", "B", 60.0, 1.0),
            ("eurosat", "B", 70.0, 1.0),
            ("dsprites_loc", "B", 10.0, 1.0),
        ]
    ):
        _write(tmp_path, f"v{i}", v + task, method, top1, share)
    for i, (k, s, top1) in enumerate([(1, 0, 10.0), (1, 1, 20.0), (1, 2, 30.0), (2, 0, 40.0), (2, 1, 50.0)]):
        _write(tmp_path, f"f{i}", f"fewshot:/data/few-shot/pets?shots={k}&seed={s}", "A", top1)
    _write(tmp_path, "other", "fmnist", "knn", 80.0)
    return load_results([tmp_path / "runs"])


def test_parse_dataset():
    assert parse_dataset("vtab:/x/vtab-1k/dtd/") == {"kind": "vtab", "task": "dtd"}
    assert parse_dataset("fewshot:/x/pets?shots=4&seed=2") == {"kind": "fewshot", "task": "pets", "shots": 4, "seed": 2}
    with pytest.raises(SslvitError, match="no integer shots"):
        parse_dataset("fewshot:/x/pets?seed=2")


def test_vtab_table_hand_computed(runs):
    t = vtab_table(runs)
    assert t["tasks"] == ["cifar", "dtd", "eurosat", "kitti", "dsprites_loc"]  # benchmark order
    assert t["groups"] == {
        "Natural": ["cifar", "dtd"],
        "Specialized": ["eurosat"],
        "Structured": ["kitti", "dsprites_loc"],
    }
    a, b = t["rows"]
    assert a["row"] == "A" and a["tasks"]["cifar"] == 65.0 and a["n"]["cifar"] == 2  # two runs averaged
    assert a["groups"] == {"Natural": 57.5, "Specialized": 90.0, "Structured": 30.0}
    assert math.isclose(a["mean_of_groups"], (57.5 + 90 + 30) / 3) and a["mean_tasks"] == 53.0
    assert math.isclose(a["trainable_share"], (0.01 * 5 + 0.03) / 6)
    assert b["groups"]["Natural"] == 70.0 and b["groups"]["Structured"] is None  # kitti missing
    assert b["mean_of_groups"] is None and b["mean_tasks"] is None


def test_written_files(runs, tmp_path):
    write_vtab_table(runs, tmp_path / "out")
    md = (tmp_path / "out" / "vtab_table.md").read_text()
    assert "| A | 65.0 | 50.0 | 90.0 | 40.0 | 20.0 | 57.5 | 90.0 | 30.0 | 59.2 | 53.0 |" in md
    rows = list(csv.DictReader(io.StringIO((tmp_path / "out" / "vtab_table.csv").read_text())))
    assert rows[0]["method"] == "A" and float(rows[0]["Structured_mean"]) == 30.0 and rows[1]["Structured_mean"] == ""
    assert json.loads((tmp_path / "out" / "vtab_table.json").read_text())["rows"][0]["groups"]["Natural"] == 57.5


def test_fewshot_curves_mean_std_and_png(runs, tmp_path):
    c = fewshot_curves(runs)["curves"]
    assert len(c) == 1 and c[0]["dataset"] == "pets" and c[0]["method"] == "A"
    p1, p2 = c[0]["points"]
    assert (p1["shots"], p1["mean"], p1["n"], p1["seeds"]) == (1, 20.0, 3, [0, 1, 2])
    assert math.isclose(p1["std"], math.sqrt(200 / 3))  # population std of 10, 20, 30
    assert (p2["mean"], p2["std"]) == (45.0, 5.0)
    write_fewshot_curves(runs, tmp_path / "out")
    assert (tmp_path / "out" / "fewshot_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "20.0 ± 8.2 (n=3)" in (tmp_path / "out" / "fewshot_curves.md").read_text()


def test_script_and_errors(runs, tmp_path, capsys):
    from tests.scripts import load_script

    mod = load_script("eval/vtab_table.py")
    assert mod.main([str(tmp_path / "runs"), "--out", str(tmp_path / "o")]) == 0
    assert (tmp_path / "o" / "vtab_table.md").is_file() and (tmp_path / "o" / "fewshot_curves.png").is_file()
    assert mod.main([str(tmp_path / "runs" / "other"), "--out", str(tmp_path / "o2")]) == 2
    assert "no vtab: or fewshot: results" in capsys.readouterr().err
    with pytest.raises(SslvitError, match="no VTAB results"):
        vtab_table([r for r in runs if r["dataset"].startswith("fewshot")])
