"""`sslvit data build-vtab / build-fewshot`, and VTAB / few-shot bad input through the CLI (exit 2, one line)."""

from click.testing import CliRunner

from ssl_vit.cli import cli
from ssl_vit.data import load_dataset
from tests.conftest import make_fmnist
from tests.data.trees import make_fewshot_tree, make_vtab_task


def _bad_input(args, needle):
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 2, (r.exit_code, r.output, r.exception)
    assert r.stderr.startswith("error: ") and needle in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    return r


def test_build_vtab_then_read_back(tmp_path):
    src = make_fmnist(tmp_path / "fm", n_train=1050, n_test=60)
    r = CliRunner().invoke(
        cli,
        [
            "data",
            "build-vtab",
            "--root",
            str(tmp_path / "vtab"),
            "--tasks",
            "fmnist,fmnist_rot",
            "--data-dir",
            str(src),
            "--test-size",
            "40",
            "--seed",
            "1",
        ],
    )
    assert r.exit_code == 0, r.output
    assert "fmnist: train800 800, val200 200, train800val200 1000, test 40; 10 classes" in r.stdout
    assert "fmnist_rot: train800 800, val200 200, train800val200 1000, test 40; 4 classes" in r.stdout
    counts = {
        s: len(load_dataset(f"vtab:{tmp_path / 'vtab' / 'fmnist_rot'}", s))
        for s in ("train800", "val200", "train800val200", "test")
    }
    assert counts == {"train800": 800, "val200": 200, "train800val200": 1000, "test": 40}
    _bad_input(
        ["data", "build-vtab", "--root", str(tmp_path / "vtab"), "--tasks", "fmnist", "--data-dir", str(src)],
        "already exists; pass --overwrite",
    )
    _bad_input(
        ["data", "build-vtab", "--root", str(tmp_path / "v2"), "--tasks", "dsprites_loc"],
        "'dsprites_loc' is not in torchvision",
    )


def test_build_fewshot_cli(tmp_path, fmnist_dir):
    r = CliRunner().invoke(
        cli,
        [
            "data",
            "build-fewshot",
            "--root",
            str(tmp_path / "fs"),
            "--data-dir",
            str(fmnist_dir),
            "--shots",
            "1,4",
            "--seeds",
            "0,2",
            "--val-per-class",
            "2",
            "--test-size",
            "30",
        ],
    )
    assert r.exit_code == 0, r.output
    assert len(load_dataset(f"fewshot:{tmp_path / 'fs'}?shots=4&seed=2", "train")) == 40
    _bad_input(
        ["data", "build-fewshot", "--root", str(tmp_path / "x"), "--shots", "1,two"], "--shots takes comma-separated"
    )


def test_vtab_bad_split_line_via_cli(tmp_path, backbone):
    folder, written = make_vtab_task(tmp_path, task="dtd")
    rows = [f"{p} {y}" for p, y in written["train800val200"]]
    rows[4] = f"{written['train800val200'][4][0]} 3x"
    (folder / "train800val200.txt").write_text("\n".join(rows) + "\n")
    _bad_input(
        ["knn", "--checkpoint", str(backbone), "--dataset", f"vtab:{folder}"],
        f"{folder / 'train800val200.txt'}:5: label '3x' is not an integer",
    )


def test_vtab_missing_image_via_cli(tmp_path, backbone):
    folder, written = make_vtab_task(tmp_path, task="dtd")
    (folder / written["test"][2][0]).unlink()
    _bad_input(
        ["knn", "--checkpoint", str(backbone), "--dataset", f"vtab:{folder}"],
        f"{folder / 'test.txt'}:3: image 'images/test/000002.jpg' file not found",
    )


def test_fewshot_unknown_class_via_cli(tmp_path, backbone):
    root = make_fewshot_tree(tmp_path / "fs", n_classes=3)
    lst = root / "annotations" / "test_meta.list"
    lst.write_text(lst.read_text() + "test/class 0/img_0.png 5\n")
    _bad_input(
        ["knn", "--checkpoint", str(backbone), "--dataset", f"fewshot:{root}?shots=1&seed=0"],
        f"{lst}:13: label 5 is not a class of this few-shot set (unknown class",
    )


def test_knn_runs_on_a_vtab_task(tmp_path, backbone):
    folder, _ = make_vtab_task(tmp_path, task="my_task", sizes={"train800": 6, "val200": 3, "test": 5})
    r = CliRunner().invoke(
        cli,
        [
            "knn",
            "--checkpoint",
            str(backbone),
            "--dataset",
            f"vtab:{folder}",
            "--k",
            "3",
            "--output-dir",
            str(tmp_path / "o"),
            "--set",
            "log.progress=false",
        ],
    )
    assert r.exit_code == 0, (r.output, r.exception)
    assert r.stdout.strip().splitlines()[-1].startswith("top1=")
    import json

    res = json.loads((tmp_path / "o" / "results.json").read_text())
    assert res["n_train"] == 9 and res["n_test"] == 5
