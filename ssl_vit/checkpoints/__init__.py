"""Checkpoints: file formats (atomic, weights-only), the one loader that turns any of them (sslvit, official
MoCo v3, DeiT, timm) into a backbone, and the export to timm."""

from ssl_vit.checkpoints.formats import load_pt, load_safetensors, save_backbone, save_train_state
from ssl_vit.checkpoints.load import (
    CheckpointContents,
    LoadedBackbone,
    inspect_checkpoint,
    load_backbone,
    load_state_strict,
    read_checkpoint,
)

__all__ = [
    "CheckpointContents",
    "LoadedBackbone",
    "inspect_checkpoint",
    "load_backbone",
    "load_pt",
    "load_safetensors",
    "load_state_strict",
    "read_checkpoint",
    "save_backbone",
    "save_train_state",
]
