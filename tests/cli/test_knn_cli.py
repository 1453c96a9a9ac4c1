"""`sslvit knn` (ssl_vit/cli/knn.py): one config path. ``--k`` / ``--temperature`` / ``--dataset`` are aliases of
``eval.knn_k`` / ``eval.knn_temperature`` / ``eval.dataset``: a ``--set`` of those keys changes what the vote
uses, results.json records it, and a flag and a ``--set`` that disagree are one error line (exit 2)."""

import json

import pytest
from click.testing import CliRunner

import ssl_vit.evaluation.knn as knn_module
from ssl_vit.cli import cli


@pytest.fixture()
def spy(monkeypatch):
    """Every (k, temperature) the kNN vote is called with, and what it predicted."""
    calls = []
    real = knn_module.knn_predict

    def knn_predict(train_feats, train_labels, test_feats, k=20, temperature=0.07, num_classes=None, **kw):
        pred = real(train_feats, train_labels, test_feats, k, temperature, num_classes, **kw)
        calls.append((k, temperature, pred))
        return pred

    monkeypatch.setattr(knn_module, "knn_predict", knn_predict)
    return calls


def _knn(backbone, data, out, *extra):
    r = CliRunner().invoke(
        cli,
        [
            "knn",
            "--checkpoint",
            str(backbone),
            "--dataset",
            data,
            "--output-dir",
            str(out),
            "--set",
            "log.progress=false",
            *extra,
        ],
    )
    assert r.exit_code == 0, (r.output, r.exception)
    res = json.loads((out / "results.json").read_text())
    assert r.stdout.strip().splitlines()[-1] == f"top1={res['top1']:.2f}"
    return res


def test_set_eval_knn_k_and_temperature_take_effect_and_are_recorded(tmp_path, backbone, fmnist_dir, spy):
    data = f"fmnist:{fmnist_dir}"
    default = _knn(backbone, data, tmp_path / "default")
    one = _knn(backbone, data, tmp_path / "k1", "--set", "eval.knn_k=1")
    hot = _knn(backbone, data, tmp_path / "t", "--set", "eval.knn_temperature=0.5")
    assert [(k, t) for k, t, _ in spy] == [(20, 0.07), (1, 0.07), (20, 0.5)]  # what the vote was given
    assert (default["k"], default["temperature"]) == (20, 0.07)  # ... is what results.json says
    assert (one["k"], one["temperature"]) == (1, 0.07)
    assert (hot["k"], hot["temperature"]) == (20, 0.5)
    assert not spy[0][2].equal(spy[1][2])  # one neighbour votes differently from twenty
    assert default["n_train"] == one["n_train"] == 512 and default["n_test"] == 128


def test_flags_are_aliases_of_the_keys(tmp_path, backbone, fmnist_dir, spy):
    data = f"fmnist:{fmnist_dir}"
    by_set = _knn(backbone, data, tmp_path / "set", "--set", "eval.knn_k=3", "--set", "eval.knn_temperature=0.2")
    by_flag = _knn(backbone, data, tmp_path / "flag", "--k", "3", "--temperature", "0.2")
    both = _knn(
        backbone, data, tmp_path / "both", "--k", "3", "--set", "eval.knn_k=3", "--set", f"eval.dataset={data}"
    )  # the same value twice: fine
    assert [(k, t) for k, t, _ in spy] == [(3, 0.2), (3, 0.2), (3, 0.07)]
    assert spy[0][2].equal(spy[1][2]) and by_set["top1"] == by_flag["top1"]
    assert (by_flag["k"], by_flag["temperature"], both["k"]) == (3, 0.2, 3)


def test_k_larger_than_the_memory_bank_records_the_k_used(tmp_path, backbone, fmnist_dir, spy):
    res = _knn(backbone, f"fmnist:{fmnist_dir}", tmp_path / "o", "--set", "eval.max_train=16", "--k", "50")
    assert spy[0][0] == 50 and res["n_train"] == 16 and res["k"] == 16  # faiss returns the 16 there are


@pytest.mark.parametrize(
    "args,needle",
    [
        (
            ["--k", "5", "--set", "eval.knn_k=3"],
            "--k 5 and --set eval.knn_k=3 disagree (--k is an alias of eval.knn_k)",
        ),
        (
            ["--temperature", "0.1", "--set", "eval.knn_temperature=0.2"],
            "--temperature 0.1 and --set eval.knn_temperature=0.2 disagree",
        ),
        (
            ["--set", "eval.dataset=cifar10:/elsewhere"],
            "--dataset fmnist and --set eval.dataset=cifar10:/elsewhere disagree",
        ),
        (["--set", "eval.knn_k=0"], "eval.knn_k must be >= 1"),
        (["--set", "eval.knn_temperature=0.001"], "eval.knn_temperature must be in [0.02, 10]"),
    ],
)
def test_a_flag_and_a_set_that_disagree_exit_2_with_one_line(tmp_path, backbone, args, needle):
    r = CliRunner().invoke(
        cli, ["knn", "--checkpoint", str(backbone), "--dataset", "fmnist", "--output-dir", str(tmp_path / "o"), *args]
    )
    assert r.exit_code == 2, (r.output, r.exception)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], r.stderr
    assert not (tmp_path / "o" / "results.json").exists()
