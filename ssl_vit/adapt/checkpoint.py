"""Adapter-only checkpoints: the trained tensors of an adapted model, nothing of the frozen backbone.

``adapter.safetensors`` holds the tensors that trained (the method's modules and the head; for ``full``
every backbone tensor) under their names in :class:`~ssl_vit.adapt.methods.AdaptedModel`, and in its
metadata: the backbone's sha256 (:func:`~ssl_vit.adapt.inject.state_sha256` of the backbone's state
before injection), the method, the chosen scale / conv init, the number of classes, the ``adapt``
config, the backbone's model and data config and where it came from. Loading rebuilds the method on
the given backbone and refuses (one line) a backbone whose hash differs.

Example::

    save_adapter(out / "adapter.safetensors", model, backbone_hash, info)
    model, meta = load_adapter(out / "adapter.safetensors", load_backbone("runs/fm").model)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, Tuple

import torch.nn as nn
from safetensors.torch import save_file

from ssl_vit.adapt.inject import state_sha256
from ssl_vit.adapt.methods import build_adapted_model
from ssl_vit.checkpoints.formats import load_safetensors
from ssl_vit.config.loading import from_dict
from ssl_vit.config.schema import AdaptConfig
from ssl_vit.core.atomic import atomic_save
from ssl_vit.errors import SslvitError

ADAPTER_FORMAT = "sslvit.adapter.v1"
RAW_KEYS = ("format", "backbone_sha256", "method")  # plain strings; every other metadata value is JSON


def save_adapter(path: Path, model: nn.Module, backbone_sha256: str, info: Dict) -> Dict[str, int]:
    """Write the trainable tensors + metadata (``info``: method, scale, conv_init, num_classes, adapt_config,
    model_config, data_config, checkpoint). -> {name: numel} of what was written."""
    tensors = {n: p.detach().contiguous().cpu() for n, p in model.named_parameters() if p.requires_grad}
    meta = {
        **{k: json.dumps(v) for k, v in info.items() if k not in RAW_KEYS},
        "format": ADAPTER_FORMAT,
        "backbone_sha256": backbone_sha256,
        "method": str(info["method"]),
    }
    atomic_save(Path(path), lambda tmp: save_file(tensors, str(tmp), metadata=meta))
    return {n: t.numel() for n, t in tensors.items()}


def load_adapter(path: Path, backbone: nn.Module) -> Tuple[nn.Module, Dict]:
    """Rebuild the adapted model on ``backbone`` (not modified) and load the adapter's tensors.

    Raises :class:`SslvitError` (one line) when the file is not an adapter or the backbone is another one."""

    tensors, meta = load_safetensors(Path(path))
    if meta.get("format") != ADAPTER_FORMAT:
        raise SslvitError(
            f"'{path}' is not an sslvit adapter (format={meta.get('format')!r}); pass the "
            f"adapter.safetensors written by `sslvit adapt`"
        )
    want, have = meta["backbone_sha256"], state_sha256(backbone.state_dict())
    if want != have:
        source = json.loads(meta["checkpoint"]) if "checkpoint" in meta else "see its metadata"
        raise SslvitError(
            f"adapter '{path}' was trained on backbone sha256 {want[:16]}, this backbone is "
            f"{have[:16]}; load it onto the checkpoint it was trained on ({source})"
        )
    cfg = from_dict(AdaptConfig, json.loads(meta["adapt_config"]), "adapt.")
    model = build_adapted_model(
        backbone,
        meta["method"],
        int(json.loads(meta["num_classes"])),
        cfg,
        float(json.loads(meta["scale"])),
        json.loads(meta["conv_init"]),
    )
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    if trainable != set(tensors):
        extra = sorted(set(tensors) - trainable) or sorted(trainable - set(tensors))
        raise SslvitError(
            f"adapter '{path}' does not match method '{meta['method']}' on this backbone "
            f"(first differing tensor: {extra[0]}); it was written by another version or model"
        )
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    assert not unexpected, unexpected
    return model.eval(), {k: (v if k in RAW_KEYS else json.loads(v)) for k, v in meta.items()}
