"""Models: backbone registry (timm ViTs with MoCo v3 choices), stems, and the ``sslvit_*`` timm entries.
Knows nothing of training."""

from ssl_vit.config.validate import register_check
from ssl_vit.models import timm_entries as _timm_entries  # noqa: E402,F401  registers the sslvit_* timm models
from ssl_vit.models import vitas as _vitas  # noqa: E402,F401  registers vitas_super, vitas_subnet
from ssl_vit.models.registry import (
    backbone_names,
    check_backbone_name,
    create_backbone,
    register_backbone,
    resolve_model_config,
)
from ssl_vit.models.stems import check_stem, get_stem, stem_names


def check_model_names(cfg) -> None:
    """``model.name`` and ``model.stem`` are known (run by ``config.validate`` before the sizes)."""
    check_backbone_name(cfg.model.name)
    get_stem(cfg.model.stem)


def check_model_stem(cfg) -> None:
    """A non-patchify stem builds with these sizes (run by ``config.validate`` after the sizes)."""
    if cfg.model.stem != "patchify":
        check_stem(cfg.model)


register_check("names", "models", check_model_names)
register_check("model", "models", check_model_stem)

__all__ = [
    "backbone_names",
    "check_backbone_name",
    "create_backbone",
    "get_stem",
    "register_backbone",
    "resolve_model_config",
    "stem_names",
]
