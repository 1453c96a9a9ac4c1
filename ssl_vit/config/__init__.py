"""Config: dataclasses per section (schema), YAML + ``--set`` loading, validation."""

from ssl_vit.config.loading import (
    apply_overrides,
    available_recipes,
    config_from_dict,
    dump_yaml,
    find_recipe,
    load_config,
    to_dict,
    valid_keys,
)
from ssl_vit.config.schema import (
    AugConfig,
    Config,
    DataConfig,
    EvalConfig,
    LogConfig,
    MethodConfig,
    ModelConfig,
    OptimConfig,
    TrainConfig,
)

__all__ = [
    "AugConfig",
    "Config",
    "DataConfig",
    "EvalConfig",
    "LogConfig",
    "MethodConfig",
    "ModelConfig",
    "OptimConfig",
    "TrainConfig",
    "apply_overrides",
    "available_recipes",
    "config_from_dict",
    "dump_yaml",
    "find_recipe",
    "load_config",
    "to_dict",
    "valid_keys",
]
