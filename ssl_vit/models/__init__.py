"""Models: backbone registry (timm ViTs with MoCo v3 choices), stems, and the ``sslvit_*`` timm entries.
Knows nothing of training."""
from ssl_vit.models.registry import (backbone_names, check_backbone_name, create_backbone, register_backbone,
                                     resolve_model_config)
from ssl_vit.models.stems import get_stem, stem_names
from ssl_vit.models import vitas as _vitas  # noqa: E402,F401  registers vitas_super, vitas_subnet
from ssl_vit.models import timm_entries as _timm_entries  # noqa: E402,F401  registers the sslvit_* timm models

__all__ = ["backbone_names", "check_backbone_name", "create_backbone", "get_stem", "register_backbone",
           "resolve_model_config", "stem_names"]
