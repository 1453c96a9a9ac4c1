"""ViTAS search: NSGA-II selection, the FLOPs budget, resuming from the state file, `sslvit search` smoke."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

from ssl_vit.config.schema import ModelConfig, SearchConfig, ViTASConfig
from ssl_vit.models import create_backbone
from ssl_vit.models.flops import count_gflops
from ssl_vit.models.vitas import export_subnet
from ssl_vit.models.vitas_space import SubNet
from ssl_vit.search.evolution import EvolutionarySearch
from ssl_vit.search.nsga2 import crowding_distance, non_dominated_fronts, nsga2_select


def test_non_dominated_fronts_and_crowding_by_hand():
    # (-top1, gflops): 0 and 1 trade off, 2 is dominated by 1, 3 by everything
    objs = [(-80.0, 1.0), (-85.0, 2.0), (-84.0, 3.0), (-70.0, 4.0)]
    assert non_dominated_fronts(objs) == [[0, 1], [2], [3]]
    # a 3-point front: the middle one's crowding = sum of normalised neighbour gaps = 1 + 1
    d = crowding_distance([(0.0, 2.0), (1.0, 1.0), (2.0, 0.0)], [0, 1, 2])
    assert d[0] == d[2] == float("inf") and d[1] == pytest.approx(2.0)
    assert nsga2_select(objs, 3) == [0, 1, 2]


def _superformer():
    v = ViTASConfig(embed_dims="16,24,32", heads="2,4", mlp_ratios="1,2", patch_sizes="7,14", min_depth=1)
    torch.manual_seed(0)
    return create_backbone(
        ModelConfig(name="vitas_super", img_size=28, patch_size=7, in_chans=1, depth=3, vitas=v)
    ).eval()


def _search(sf, calls, **kw):
    cfg = replace(SearchConfig(max_gflops=0.0006, min_gflops=0.0001, population=4, generations=3, offspring=4), **kw)

    def flops_fn(net):
        sf.set_subnet(net)
        return count_gflops(sf, 28, 1)

    def score_fn(net):  # a cheap deterministic stand-in for kNN: prefers wide, deep nets
        calls.append(net.key())
        return float(net.embed_dim + 5 * net.depth + sum(b[1] for b in net.blocks if b is not None))

    return EvolutionarySearch(
        sf.space, cfg, 0, flops_fn, score_fn, canon=lambda n: n.canonical(True), fingerprint={"test": 1}, progress=False
    )


def test_search_stays_within_the_budget_and_flops_match_the_exported_nets(tmp_path):
    sf, calls = _superformer(), []
    state = _search(sf, calls).run(tmp_path / "state.json")
    ev = state["evaluated"]
    assert len(ev) == 4 + 2 * 4 == len(calls) == len(set(calls))  # each candidate evaluated once
    assert all(0.0001 <= v["gflops"] <= 0.0006 for v in ev.values())
    # the budget binds: the space holds bigger networks than the search ever evaluated
    sf.set_subnet(sf.space.largest())
    assert count_gflops(sf, 28, 1) > 0.0006
    # search FLOPs == FLOPs of the stand-alone exported ViT
    for key in list(ev)[:3]:
        net = SubNet.from_dict(ev[key]["subnet"])
        sf.set_subnet(net)
        assert count_gflops(export_subnet(sf, net), 28, 1) == ev[key]["gflops"]
    # canonical encodings only (identity shifting: identities at the end)
    assert all(SubNet.from_dict(v["subnet"]).canonical(True) == SubNet.from_dict(v["subnet"]) for v in ev.values())
    # NSGA-II keeps the population size, and the best score never gets worse
    bests = [h["best_top1"] for h in state["history"]]
    assert len(state["population"]) == 4 and bests == sorted(bests)


def test_search_resumes_from_its_state_file(tmp_path):
    sf = _superformer()
    full = _search(sf, []).run(tmp_path / "a.json")
    # an interrupted search: stopped after generation 1, then resumed with the full length
    _search(sf, [], generations=2).run(tmp_path / "b.json")
    saved = json.loads((tmp_path / "b.json").read_text())
    assert saved["generation"] == 1
    calls = []
    resumed = _search(sf, calls).run(tmp_path / "b.json")
    assert len(calls) == 4  # only generation 2's children were evaluated
    assert resumed["evaluated"] == full["evaluated"] and resumed["population"] == full["population"]
    assert resumed["history"] == full["history"]


def test_resuming_a_different_search_is_refused(tmp_path):
    from ssl_vit.errors import SslvitError

    sf = _superformer()
    _search(sf, [], generations=1).run(tmp_path / "s.json")
    other = _search(sf, [])
    other.fingerprint = {"test": 2}
    with pytest.raises(SslvitError, match="different search"):
        other.run(tmp_path / "s.json")


def test_too_small_budget_is_a_one_line_error(tmp_path):
    from ssl_vit.errors import SslvitError

    with pytest.raises(SslvitError, match="raise search.max_gflops"):
        _search(_superformer(), [], max_gflops=1e-6, min_gflops=0.0).run(tmp_path / "s.json")


@pytest.mark.slow
def test_sslvit_search_smoke_writes_a_retrainable_recipe(tmp_path, fmnist_dir):
    from click.testing import CliRunner

    from ssl_vit.cli import cli
    from ssl_vit.config import load_config

    out = tmp_path / "search"
    sets = ["--set", f"data.dataset=fmnist:{fmnist_dir}", "--set", "train.threads=1"]
    r = CliRunner().invoke(cli, ["search", "--recipe", "vitas_smoke", "--output-dir", str(out), *sets])
    assert r.exit_code == 0, r.output
    assert r.output.strip().splitlines()[-1].startswith("top1=")
    for f in (
        "search_state.json",
        "history.jsonl",
        "pareto.json",
        "pareto.md",
        "pareto.png",
        "results.json",
        "best_0.yaml",
        "best_0.safetensors",
        "supernet/checkpoints/last.pt",
    ):
        assert (out / f).is_file(), f
    res = json.loads((out / "results.json").read_text())
    assert all(p["gflops"] <= 0.0015 for p in res["pareto"])
    cfg = load_config(str(out / "best_0.yaml"), [f"data.dataset=fmnist:{fmnist_dir}"])
    assert cfg.model.name in ("vit_micro", "vitas_subnet")
    # the recipe retrains from scratch
    r2 = CliRunner().invoke(
        cli,
        [
            "pretrain",
            "--recipe",
            str(out / "best_0.yaml"),
            "--output-dir",
            str(tmp_path / "re"),
            *sets,
            "--set",
            "train.max_steps=2",
            "--set",
            "eval.max_train=64",
            "--set",
            "eval.max_test=32",
        ],
    )
    assert r2.exit_code == 0, r2.output
    # a second invocation resumes the finished search: nothing is re-evaluated
    r3 = CliRunner().invoke(cli, ["search", "--recipe", "vitas_smoke", "--output-dir", str(out), *sets])
    assert r3.exit_code == 0 and json.loads((out / "results.json").read_text())["best"] == res["best"]
