"""sslvit checkpoint files.

* ``checkpoints/last.pt`` -- the full training state (model incl. momentum encoder and heads,
  optimizer, step, config, data config, hook states, RNG), a dict of tensors and plain Python values
  that loads with ``torch.load(weights_only=True)`` (nothing in it can run code).
* ``checkpoints/last.safetensors`` -- the backbone alone, timm key names, with the model config and
  data config as JSON in the metadata, so the file describes itself.
"""
from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any, Dict, Tuple

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from safetensors import safe_open

from ssl_vit.engine.atomic import atomic_save
from ssl_vit.errors import SslvitError

TRAIN_FORMAT = "sslvit.train.v1"
BACKBONE_FORMAT = "sslvit.backbone.v1"


def save_train_state(path: Path, state: Dict[str, Any]) -> None:
    atomic_save(Path(path), lambda tmp: torch.save({"format": TRAIN_FORMAT, **state}, tmp))


def load_pt(path: Path) -> Dict[str, Any]:
    """``torch.load(weights_only=True)``: refuses pickles that would run code, with a one-line error."""
    path = Path(path)
    if not path.is_file():
        raise SslvitError(f"checkpoint '{path}' not found; pass a run dir, a .pt or a .safetensors file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).splitlines()[0] if str(e) else "unsafe content"
        raise SslvitError(f"refusing to load '{path}': it is not a plain-tensor checkpoint ({first[:160]}); "
                          f"only weights-only files are loaded, never code") from None
    except Exception as e:  # noqa: BLE001 - a corrupt file can fail anywhere in the unpickler (struct, zip, EOF)
        raise SslvitError(f"checkpoint '{path}' is truncated or corrupt ({type(e).__name__}); use an earlier "
                          f"checkpoint or re-download it") from None
    if not isinstance(obj, dict):
        raise SslvitError(f"checkpoint '{path}' holds a {type(obj).__name__}, not a state dict; it is not a "
                          f"checkpoint sslvit can read")
    return obj


def save_backbone(path: Path, state_dict: Dict[str, torch.Tensor], model_cfg: Dict, data_cfg: Dict,
                  extra: Dict[str, str] | None = None) -> None:
    tensors = {k: v.detach().contiguous().cpu() for k, v in state_dict.items()}
    meta = {"format": BACKBONE_FORMAT, "model_config": json.dumps(model_cfg), "data_config": json.dumps(data_cfg),
            **(extra or {})}
    atomic_save(Path(path), lambda tmp: save_file(tensors, str(tmp), metadata=meta))


def load_safetensors(path: Path) -> Tuple[Dict[str, torch.Tensor], Dict[str, str]]:
    path = Path(path)
    if not path.is_file():
        raise SslvitError(f"checkpoint '{path}' not found; pass a run dir, a .pt or a .safetensors file")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        return load_file(str(path)), meta
    except (SafetensorError, OSError, ValueError) as e:
        raise SslvitError(f"'{path}' is not a readable safetensors file ({str(e).splitlines()[0][:120]}); "
                          f"it may be truncated: use an earlier checkpoint") from None
