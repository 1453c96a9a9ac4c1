"""Checkpoints: file formats (atomic, weights-only) and the one loader that turns any of them into a backbone."""
from ssl_vit.checkpoints.formats import load_pt, load_safetensors, save_backbone, save_train_state
from ssl_vit.checkpoints.load import LoadedBackbone, load_backbone, load_state_strict, read_checkpoint

__all__ = ["LoadedBackbone", "load_backbone", "load_pt", "load_safetensors", "load_state_strict",
           "read_checkpoint", "save_backbone", "save_train_state"]
