import pytest

from ssl_vit.config import apply_overrides, available_recipes, load_config, to_dict
from ssl_vit.config.loading import from_dict
from ssl_vit.config.schema import Config
from ssl_vit.errors import SslvitError


def test_all_shipped_recipes_load_and_validate():
    names = available_recipes()
    assert {"smoke", "fmnist_vit_tiny", "cifar10_vit_small", "imagenet_vit_small", "imagenet_vit_base"} <= set(names)
    for n in names:
        load_config(n)


def test_set_types_and_nested_keys():
    cfg = load_config("smoke", ["train.max_steps=3", "model.patch_embed.frozen=false", "optim.lr=2e-3",
                                "aug.crop_scale=[0.3, 1.0]", "train.max_steps=5"])
    assert cfg.train.max_steps == 5 and cfg.model.patch_embed.frozen is False
    assert cfg.optim.lr == 2e-3 and cfg.aug.crop_scale == (0.3, 1.0)
    assert apply_overrides(cfg, ["train.max_steps=null"]).train.max_steps is None


@pytest.mark.parametrize("item,match", [
    ("train.max_step=3", "unknown config key 'train.max_step' \\(did you mean 'train.max_steps'\\?\\); valid keys under train:"),
    ("train.batch_size=abc", "train.batch_size: expected an integer"),
    ("model.patch_embed.frozen=maybe", "expected true or false"),
    ("train.max_steps", "has no '='"),
    ("model=3", "is a section"),
    ("optim.lr=-1", "optim.lr must be > 0"),
    ("train.batch_size=0", "train.batch_size must be > 0"),
    ("model.patch_size=5", "does not divide model.img_size=28"),
    ("model.name=vit_hyper", "unknown backbone 'vit_hyper'"),
    ("model.stem=foo", "unknown stem 'foo'"),
    ("method.name=simclr", "unknown method 'simclr'"),
    ("data.dataset=mnist", "unknown dataset 'mnist'"),
])
def test_bad_overrides_are_one_line_errors(item, match):
    with pytest.raises(SslvitError, match=match) as e:
        load_config("smoke", [item])
    assert "\n" not in str(e.value)


def test_bad_yaml_and_unknown_recipe(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("train:\n  max_steps: [1,\n")
    with pytest.raises(SslvitError, match="not valid YAML at line"):
        load_config(str(p))
    p.write_text("train:\n  nope: 1\n")
    with pytest.raises(SslvitError, match="unknown config key 'train.nope'"):
        load_config(str(p))
    with pytest.raises(SslvitError, match="unknown recipe 'smok' \\(did you mean 'smoke'\\?\\)"):
        load_config("smok")


def test_dict_roundtrip():
    cfg = load_config("fmnist_vit_tiny")
    assert from_dict(Config, to_dict(cfg)) == cfg
