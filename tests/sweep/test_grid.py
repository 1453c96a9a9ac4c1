"""`sslvit sweep` grid: parsing, expansion order, run names, spec comparison."""

import pytest

from ssl_vit.errors import SslvitError
from ssl_vit.sweep.grid import (
    SweepSpec,
    expand,
    parse_grid,
    parse_seeds,
    run_overrides,
    short_names,
    split_values,
    value_tokens,
)


def _spec(grid, seeds=(0,), sets=()):
    return SweepSpec("smoke", parse_grid(grid), list(seeds), list(sets))


def test_expansion_order_and_names_are_a_pure_function_of_grid_and_seeds():
    spec = _spec(["optim.lr=1.5e-3,1.2e-2", "model.patch_embed.frozen=false,true"], seeds=[0, 1])
    names = [p.name for p in expand(spec)]
    assert names == [
        "lr=1.5e-3_frozen=false_seed=0",
        "lr=1.5e-3_frozen=true_seed=0",
        "lr=1.2e-2_frozen=false_seed=0",
        "lr=1.2e-2_frozen=true_seed=0",
        "lr=1.5e-3_frozen=false_seed=1",
        "lr=1.5e-3_frozen=true_seed=1",
        "lr=1.2e-2_frozen=false_seed=1",
        "lr=1.2e-2_frozen=true_seed=1",
    ]
    assert names == [
        p.name for p in expand(_spec(["optim.lr=1.5e-3,1.2e-2", "model.patch_embed.frozen=false,true"], seeds=[0, 1]))
    ]
    p = expand(spec)[2]
    assert p.grid_sets == ["optim.lr=1.2e-2", "model.patch_embed.frozen=false"] and p.seed == 0
    assert p.arm("optim.lr") == "frozen=false" and expand(_spec(["optim.lr=1e-3"]))[0].arm("optim.lr") == "all"
    # every run: eval defaults, fixed sets, grid values, seed, threads (later wins)
    spec2 = _spec(["optim.lr=1e-3"], sets=["train.max_steps=2"])
    assert run_overrides(spec2, expand(spec2)[0], 1) == [
        "eval.max_train=0",
        "eval.max_test=0",
        "train.max_steps=2",
        "optim.lr=1e-3",
        "seed=0",
        "train.threads=1",
    ]


def test_names_are_filesystem_safe_and_distinct():
    assert short_names(["optim.lr", "head.lr", "a.b.c"]) == {"optim.lr": "optim.lr", "head.lr": "head.lr", "a.b.c": "c"}
    assert short_names(["data.seed"]) == {"data.seed": "data.seed"}  # never clashes with the seed suffix
    tok = value_tokens(["fmnist:/data/a b", "a/b", "a-b", "[0.2,1.0]", "x" * 80])
    assert tok["[0.2,1.0]"] == "0.2-1.0"
    assert tok["a/b"] != tok["a-b"] and tok["a/b"].startswith("a-b-")  # look-alikes get a short hash
    assert len(tok["x" * 80]) <= 48 and len(set(tok.values())) == 5
    assert all(
        set(t) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._+-") for t in tok.values()
    )
    spec = _spec(["data.dataset=fmnist:/x/y,cifar10:/z", "aug.crop_scale=[0.2,1.0],[0.5,1.0]"])
    assert [p.name for p in expand(spec)][:2] == [
        "dataset=fmnist-x-y_crop_scale=0.2-1.0_seed=0",
        "dataset=fmnist-x-y_crop_scale=0.5-1.0_seed=0",
    ]


def test_parsing_values_and_seeds():
    assert split_values('1,[0.2,1.0],"a,b", x') == ["1", "[0.2,1.0]", '"a,b"', "x"]
    assert parse_seeds("0,1") == [0, 1] and parse_seeds("0-2") == [0, 1, 2] and parse_seeds(None) is None
    for bad, msg in [("a", "not a list of integers"), ("0,0", "twice")]:
        with pytest.raises(SslvitError, match=msg):
            parse_seeds(bad)
    for grid, msg in [
        (["optim.lr"], "no '='"),
        (["optim.lr="], "empty grid"),
        (["optim.lr=1,,2"], "empty value"),
        (["optim.lr=1", "optim.lr=2"], "given twice"),
        (["optim.lr=1,1"], "twice"),
        (["seed=0,1"], "--seeds"),
        (["train.threads=1,2"], "--threads"),
    ]:
        with pytest.raises(SslvitError, match=msg):
            parse_grid(grid)


def test_spec_difference_names_what_changed():
    a = _spec(["optim.lr=1e-3,3e-3"], seeds=[0, 1])
    assert a.difference(SweepSpec.from_dict(a.to_dict())) is None
    assert "optim.lr=1e-3,3e-3 -> 1e-3" in a.difference(_spec(["optim.lr=1e-3"], seeds=[0, 1]))
    assert "--seeds 0,1 -> 0" in a.difference(_spec(["optim.lr=1e-3,3e-3"], seeds=[0]))
    assert "--set" in a.difference(_spec(["optim.lr=1e-3,3e-3"], seeds=[0, 1], sets=["train.max_steps=3"]))
