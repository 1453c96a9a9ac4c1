"""Methods: modules whose ``forward`` returns the loss, subclasses of :class:`~ssl_vit.methods.base.Method`.
Know nothing of the loop."""

from ssl_vit.config.validate import register_check
from ssl_vit.errors import SslvitError
from ssl_vit.methods.base import Method
from ssl_vit.methods.losses import contrastive_loss
from ssl_vit.methods.mocov3 import MoCoV3, build_mocov3

METHODS = {"mocov3": build_mocov3}


def check_method_name(cfg) -> None:
    """``method.name`` is known (run by ``config.validate``)."""
    if cfg.method.name not in METHODS:
        raise SslvitError(f"unknown method '{cfg.method.name}'; valid: {', '.join(sorted(METHODS))}")


register_check("names", "methods", check_method_name)

__all__ = ["METHODS", "Method", "MoCoV3", "build_mocov3", "contrastive_loss"]
