"""Parameter-efficient transfer of frozen ViTs: Convpass and the PETL baselines, one injection mechanism
(``inject.py``), one method per file, one training loop (``train.py``), adapter-only checkpoints."""

from ssl_vit.adapt.checkpoint import load_adapter, save_adapter
from ssl_vit.adapt.inject import AdaptedBlock, VitLayout, adapt_blocks, state_sha256, vit_layout
from ssl_vit.adapt.methods import METHODS, AdaptedModel, build_adapted_model, get_method, trainable_summary

__all__ = [
    "AdaptedBlock",
    "AdaptedModel",
    "METHODS",
    "VitLayout",
    "adapt_blocks",
    "build_adapted_model",
    "get_method",
    "load_adapter",
    "save_adapter",
    "state_sha256",
    "trainable_summary",
    "vit_layout",
]
