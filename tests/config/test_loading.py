from dataclasses import replace

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
    cfg = load_config(
        "smoke",
        [
            "train.max_steps=3",
            "model.patch_embed.frozen=false",
            "optim.lr=2e-3",
            "aug.crop_scale=[0.3, 1.0]",
            "train.max_steps=5",
        ],
    )
    assert cfg.train.max_steps == 5 and cfg.model.patch_embed.frozen is False
    assert cfg.optim.lr == 2e-3 and cfg.aug.crop_scale == (0.3, 1.0)
    assert apply_overrides(cfg, ["train.max_steps=null"]).train.max_steps is None


@pytest.mark.parametrize(
    "item,match",
    [
        (
            "train.max_step=3",
            "unknown config key 'train.max_step' \\(did you mean 'train.max_steps'\\?\\); valid keys under train:",
        ),
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
    ],
)
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


# ---- choices as Literal[...] and lists as tuples, both checked once by the coercer ------------------------------
@pytest.mark.parametrize(
    "item,message",
    [
        ("train.on_alarm=stp", "train.on_alarm must be log or stop, not 'stp' (did you mean 'stop'?)"),
        ("train.precision=bf61", "train.precision must be auto, bf16, fp16 or fp32, not 'bf61' (did you mean 'bf16'?)"),
        (
            "train.on_spike=rollbak",
            "train.on_spike must be log, skip or rollback, not 'rollbak' (did you mean 'rollback'?)",
        ),
        ("data.on_bad_image=skp", "data.on_bad_image must be fail or skip, not 'skp' (did you mean 'skip'?)"),
        ("model.pos_embed=learnt", "model.pos_embed must be sincos or learned, not 'learnt' (did you mean 'learned'?)"),
        ("model.vitas.sampling=sandwhich", "model.vitas.sampling must be uniform or sandwich, not 'sandwhich'"),
        ("optim.name=sgd", "optim.name must be adamw, not 'sgd'"),
        ("adapt.method=lorra", "(did you mean 'lora'?)"),
        (
            "adapt.conv_init=xavier,identty",
            "adapt.conv_init must be one or more of xavier, identity (comma-separated), "
            "got 'xavier,identty' (did you mean 'identity'?)",
        ),
        ("probe.fast_lrs=0.1,fast", "probe.fast_lrs must be comma-separated numbers like 0.01,0.1, got '0.1,fast'"),
        ("adapt.scales=", "adapt.scales needs at least one value"),
    ],
)
def test_a_bad_choice_or_list_is_one_line_from_the_coercer(item, message):
    with pytest.raises(SslvitError) as e:
        apply_overrides(Config(), [item])
    assert message in str(e.value) and "\n" not in str(e.value)


def test_every_literal_default_is_one_of_its_choices():
    import dataclasses
    import typing

    from ssl_vit.config.loading import _hints

    def walk(obj, prefix):
        for f in dataclasses.fields(obj):
            t, v = _hints(type(obj))[f.name], getattr(obj, f.name)
            if dataclasses.is_dataclass(t):
                yield from walk(v, prefix + f.name + ".")
            elif typing.get_origin(t) is typing.Literal:
                yield prefix + f.name, v, typing.get_args(t)

    found = list(walk(Config(), ""))
    assert {"train.on_alarm", "train.precision", "probe.mode", "adapt.method", "model.fused_attn"} <= {
        k for k, _, _ in found
    }
    for key, value, choices in found:
        assert value in choices, key


def test_lists_are_tuples_from_a_string_a_yaml_list_or_one_value_and_dump_as_lists():
    cfg = apply_overrides(
        Config(),
        [
            "probe.fast_lrs=0.5,1e-3",
            "adapt.scales=10",
            "adapt.conv_init=xavier,identity",
            "probe.fast_weight_decays=[0, 0.1]",
            "model.fused_attn=true",
        ],
    )
    assert cfg.probe.fast_lrs == (0.5, 0.001) and cfg.adapt.scales == (10.0,)
    assert cfg.adapt.conv_init == ("xavier", "identity") and cfg.probe.fast_weight_decays == (0.0, 0.1)
    assert cfg.model.fused_attn == "true"  # a YAML boolean is the choice of that name
    d = to_dict(cfg)
    assert d["probe"]["fast_lrs"] == [0.5, 0.001] and d["adapt"]["conv_init"] == ["xavier", "identity"]
    assert from_dict(Config, d) == cfg


def test_configs_written_with_comma_strings_still_load():
    """Checkpoints, config.yaml and adapter files written before lists were tuples hold '0.01,0.1,0.3'."""
    d = to_dict(Config())
    d["probe"].update(fast_lrs="0.01,0.1,0.3", fast_weight_decays="0,0.001,0.01")
    d["adapt"].update(scales="0.01,0.1,1,10,100", conv_init="xavier")
    d["model"]["fused_attn"] = True
    assert from_dict(Config, d) == replace(Config(), model=replace(Config().model, fused_attn="true"))
    assert load_config("vtab_convpass").adapt.conv_init == ("xavier", "identity")  # recipes keep their strings


def test_adapt_choices_are_the_registries():
    import typing

    from ssl_vit.adapt.convpass import CONV_INITS
    from ssl_vit.adapt.methods import METHODS
    from ssl_vit.cli.adapt import METHOD_NAMES
    from ssl_vit.config.schema import AdaptMethodName, ConvInit

    assert list(typing.get_args(AdaptMethodName)) == METHOD_NAMES and set(METHOD_NAMES) == set(METHODS)
    assert CONV_INITS == typing.get_args(ConvInit) == ("xavier", "identity")
