"""Methods: modules whose ``forward`` returns the loss, subclasses of :class:`~ssl_vit.methods.base.Method`.
Know nothing of the loop."""
from ssl_vit.methods.base import Method
from ssl_vit.methods.losses import contrastive_loss
from ssl_vit.methods.mocov3 import MoCoV3, build_mocov3

METHODS = {"mocov3": build_mocov3}

__all__ = ["METHODS", "Method", "MoCoV3", "build_mocov3", "contrastive_loss"]
