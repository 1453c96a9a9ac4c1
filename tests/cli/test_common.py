"""ssl_vit/cli/common.py: a flag that repeats a config key is its alias (alias_flags), and every command declares
the config it reads (Reads) so that a --set it would ignore is refused."""

import pytest

from ssl_vit.cli import adapt, diagnose, export, knn, linear_probe, pretrain, search, sweep, train
from ssl_vit.cli.common import Reads, alias_flags
from ssl_vit.config import Config, apply_overrides, valid_keys
from ssl_vit.errors import SslvitError

COMMANDS = [adapt, diagnose, export, knn, linear_probe, pretrain, search, sweep, train]


def test_a_given_flag_becomes_its_set_and_an_absent_one_nothing():
    out = alias_flags(
        ["log.progress=false"],
        ("--k", "eval.knn_k", 5),
        ("--temperature", "eval.knn_temperature", None),
        ("--dataset", "eval.dataset", "fewshot:/d?shots=1&seed=0"),
    )
    cfg = apply_overrides(Config(), out)
    assert (cfg.eval.knn_k, cfg.eval.knn_temperature, cfg.eval.dataset) == (5, 0.07, "fewshot:/d?shots=1&seed=0")
    assert out[0] == "log.progress=false" and len(out) == 3


def test_the_same_value_both_ways_is_fine_a_different_one_is_an_error():
    assert (
        apply_overrides(
            Config(), alias_flags(["eval.knn_temperature=0.10"], ("--temperature", "eval.knn_temperature", 0.1))
        ).eval.knn_temperature
        == 0.1
    )
    with pytest.raises(
        SslvitError,
        match=r"^--k 5 and --set eval.knn_k=3 disagree \(--k is an alias of eval.knn_k\); "
        r"give the value once: --k 5 or --set eval.knn_k=3$",
    ):
        alias_flags(["eval.knn_k=3"], ("--k", "eval.knn_k", 5))


def test_reads_refuses_what_a_command_does_not_read_and_leaves_typos_to_the_loader():
    r = Reads("knn", ("model", "eval.knn_k", "eval.batch_size", "train.device"))
    assert r.describe() == "model.*, eval.{knn_k,batch_size}, train.device"
    r.check_sets(["model.num_heads=6", "eval.knn_k=3", "train.device=cpu"])
    r.check_sets(["train.max_step=5"])  # unknown: the loader says 'did you mean'
    with pytest.raises(
        SslvitError,
        match=r"^sslvit knn does not read train.max_steps \(--set train.max_steps=\.\.\. "
        r"would have no effect\); it reads model.\*, eval.\{knn_k,batch_size\}, "
        r"train.device; drop --set train.max_steps$",
    ):
        r.check_sets(["train.max_steps=5"])
    with pytest.raises(SslvitError, match="drop --grid seed"):
        r.check(["seed"], how="--grid")


@pytest.mark.parametrize("module", COMMANDS, ids=[m.READS.command for m in COMMANDS])
def test_every_declared_read_is_a_config_key_or_section(module):
    keys = valid_keys()
    for r in module.READS.keys:
        assert r in keys or any(k.startswith(r + ".") for k in keys), r


@pytest.mark.parametrize(
    "command,key",
    [
        ("knn", "train.max_steps"),
        ("knn", "eval.final_knn"),
        ("knn", "seed"),
        ("linear-probe", "eval.knn_k"),
        ("linear-probe", "eval.dataset"),
        ("adapt", "probe.mode"),
        ("export", "eval.batch_size"),
        ("diagnose", "data.dataset"),
        ("pretrain", "probe.mode"),
        ("pretrain", "adapt.lr"),
        ("train", "method.temperature"),
        ("search", "probe.lr"),
        ("sweep", "adapt.lr"),
    ],
)
def test_keys_the_commands_ignore_are_not_read(command, key):
    reads = {m.READS.command: m.READS for m in COMMANDS}[command]
    assert not reads.covers(key)


@pytest.mark.parametrize(
    "command,key",
    [
        ("knn", "eval.knn_k"),
        ("knn", "eval.max_train"),
        ("knn", "log.progress"),
        ("knn", "train.threads"),
        ("knn", "model.num_heads"),
        ("linear-probe", "probe.fast_epochs"),
        ("linear-probe", "eval.cache_dir"),
        ("adapt", "train.threads"),
        ("adapt", "data.num_workers"),
        ("adapt", "log.tensorboard"),
        ("export", "model.num_heads"),
        ("diagnose", "diag.knn_dip"),
        ("pretrain", "train.max_steps"),
        ("train", "model.bootstrap.enabled"),
        ("train", "method.local_crops"),
        ("search", "search.max_gflops"),
        ("search", "train.max_steps"),
        ("sweep", "optim.warmup_steps"),
    ],
)
def test_documented_and_tested_usage_is_read(command, key):
    reads = {m.READS.command: m.READS for m in COMMANDS}[command]
    assert reads.covers(key)
