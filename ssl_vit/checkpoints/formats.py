"""sslvit checkpoint files.

* ``checkpoints/last.pt`` -- the full training state (model incl. momentum encoder and heads,
  optimizer, step, config, data config, hook states, RNG), a dict of tensors and plain Python values
  that loads with ``torch.load(weights_only=True)`` (nothing in it can run code).
* ``checkpoints/last.safetensors`` -- the backbone alone, timm key names, with the model config and
  data config as JSON in the metadata, so the file describes itself (a run's file also holds the run's whole
  config as ``config``, which evaluation starts from, as it does from last.pt's).
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path
from typing import Any, Dict, Tuple

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from ssl_vit.core.atomic import atomic_save
from ssl_vit.core.input_spec import InputSpec
from ssl_vit.errors import SslvitError

TRAIN_FORMAT = "sslvit.train.v1"
BACKBONE_FORMAT = "sslvit.backbone.v1"


def save_train_state(path: Path, state: Dict[str, Any]) -> None:
    atomic_save(Path(path), lambda tmp: torch.save({"format": TRAIN_FORMAT, **state}, tmp))


ZIP_MAGIC = b"PK\x03\x04"


def sniff(path: Path) -> str:
    """What a file's first bytes say it is: 'zip' (torch.save), 'pickle', 'safetensors', 'empty' or 'unknown'."""
    with open(path, "rb") as f:
        head = f.read(16)
    if not head:
        return "empty"
    if head.startswith(ZIP_MAGIC):
        return "zip"
    if head[0] == 0x80 and 2 <= head[1] <= 5:
        return "pickle"
    if len(head) >= 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < 100_000_000:
        return "safetensors"
    return "unknown"


def _unloadable(path: Path, e: Exception) -> SslvitError:
    """torch.load's failure -> the real cause, one line: code in the pickle, not a checkpoint, or corrupt."""
    kind, text = sniff(path), str(e)
    code = re.search(r"GLOBAL (\S+)", text) or re.search(
        r"(?:unsupported|unrecognized) (?:class|function) (\S+)", text, re.IGNORECASE
    )
    if code:
        return SslvitError(
            f"refusing to load '{path}': it names the Python callable {code.group(1).rstrip('.')}, "
            f"which could run code; only weights-only checkpoints are loaded, never code"
        )
    if kind == "empty":
        return SslvitError(f"checkpoint '{path}' is empty (0 bytes); use an earlier checkpoint or re-download it")
    if kind == "pickle":
        return SslvitError(
            f"refusing to load '{path}': it is a raw Python pickle, not a torch.save checkpoint; only "
            f"weights-only checkpoints are loaded, never code (re-save it with torch.save)"
        )
    if kind == "safetensors":
        return SslvitError(f"'{path}' is a safetensors file with another suffix; rename it to .safetensors")
    if kind == "zip":
        return SslvitError(
            f"checkpoint '{path}' is truncated or corrupt ({type(e).__name__}); use an earlier "
            f"checkpoint or re-download it"
        )
    return SslvitError(
        f"'{path}' is not a PyTorch checkpoint (neither a torch.save zip nor a pickle: corrupt or "
        f"another kind of file); pass a run dir, a .pt/.pth or a .safetensors file"
    )


def load_pt(path: Path) -> Dict[str, Any]:
    """``torch.load(weights_only=True)``: refuses pickles that would run code, with a one-line error naming the
    real cause (code, a raw pickle, a corrupt or foreign file). torch's warnings are not shown."""
    path = Path(path)
    if not path.is_file():
        raise SslvitError(f"checkpoint '{path}' not found; pass a run dir, a .pt or a .safetensors file")
    try:
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4": our error says it all
            warnings.simplefilter("ignore")
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - a corrupt file can fail anywhere in the unpickler (struct, zip, EOF)
        raise _unloadable(path, e) from None
    if not isinstance(obj, dict):
        raise SslvitError(
            f"checkpoint '{path}' holds a {type(obj).__name__}, not a state dict; it is not a "
            f"checkpoint sslvit can read"
        )
    return obj


def save_backbone(
    path: Path,
    state_dict: Dict[str, torch.Tensor],
    model_cfg: Dict,
    input_spec: InputSpec,
    extra: Dict[str, str] | None = None,
) -> None:
    """Backbone tensors + metadata: format, ``model_config``, ``data_config`` (the :class:`InputSpec` as a
    mapping) and ``extra``."""
    tensors = {k: v.detach().contiguous().cpu() for k, v in state_dict.items()}
    meta = {
        "format": BACKBONE_FORMAT,
        "model_config": json.dumps(model_cfg),
        "data_config": json.dumps(input_spec.to_dict()),
        **(extra or {}),
    }
    atomic_save(Path(path), lambda tmp: save_file(tensors, str(tmp), metadata=meta))


def load_safetensors(path: Path) -> Tuple[Dict[str, torch.Tensor], Dict[str, str]]:
    path = Path(path)
    if not path.is_file():
        raise SslvitError(f"checkpoint '{path}' not found; pass a run dir, a .pt or a .safetensors file")
    kind = sniff(path)
    if kind in ("zip", "pickle"):
        what = "a PyTorch zip checkpoint (torch.save)" if kind == "zip" else "a Python pickle"
        raise SslvitError(
            f"'{path}' is not a safetensors file but {what}; rename it to .pt (it is then read weights-only, never run)"
        )
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        return load_file(str(path)), meta
    except (SafetensorError, OSError, ValueError) as e:
        why = (
            "it may be truncated: use an earlier checkpoint"
            if kind == "safetensors"
            else "it is corrupt or another kind of file"
        )
        raise SslvitError(
            f"'{path}' is not a readable safetensors file ({str(e).splitlines()[0][:120]}); {why}"
        ) from None
