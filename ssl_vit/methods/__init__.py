"""Methods: modules whose ``forward`` returns the loss. Know nothing of the loop."""
from ssl_vit.methods.losses import contrastive_loss
from ssl_vit.methods.mocov3 import MoCoV3, build_mocov3

METHODS = {"mocov3": build_mocov3}

__all__ = ["METHODS", "MoCoV3", "build_mocov3", "contrastive_loss"]
