"""One place that turns any supported checkpoint into a backbone. Everything else asks it.

``load_backbone(path)`` accepts a run directory, ``last.pt`` (full training state) or a
``.safetensors`` backbone file. The format is detected from the file's keys/metadata; the model is
rebuilt from the stored config (``model.*`` overrides allowed, e.g. ``model.fused_attn=true``) and
loaded with strict keys: a mismatch names the first offending key and both shapes.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Dict, Iterable, Tuple

import torch
import torch.nn as nn

from ssl_vit.checkpoints.formats import BACKBONE_FORMAT, TRAIN_FORMAT, load_pt, load_safetensors
from ssl_vit.config.loading import apply_overrides, from_dict
from ssl_vit.config.schema import Config, ModelConfig
from ssl_vit.errors import SslvitError


@dataclass
class LoadedBackbone:
    model: nn.Module
    model_cfg: ModelConfig
    data_cfg: Dict
    source: str                 # path actually read
    fmt: str                    # detected format
    config: Config | None = None  # full training config, when the file has it


def resolve_checkpoint_path(path: str | Path) -> Path:
    p = Path(path)
    if p.is_dir():
        for cand in (p / "checkpoints" / "last.safetensors", p / "last.safetensors",
                     p / "checkpoints" / "last.pt", p / "last.pt"):
            if cand.is_file():
                return cand
        raise SslvitError(f"'{p}' holds no checkpoint (looked for checkpoints/last.safetensors and last.pt); "
                          f"pass a run dir that has finished at least one checkpoint")
    if not p.exists():
        raise SslvitError(f"checkpoint '{p}' not found; pass a run dir, a .pt or a .safetensors file")
    return p


def load_state_strict(model: nn.Module, state: Dict[str, torch.Tensor], source: str) -> None:
    own = model.state_dict()
    for k, v in state.items():
        if k not in own:
            raise SslvitError(f"checkpoint '{source}' has key '{k}' that the model lacks; it was saved from another "
                              f"architecture (check model.* settings)")
        if tuple(own[k].shape) != tuple(v.shape):
            raise SslvitError(f"checkpoint '{source}' key '{k}' has shape {tuple(v.shape)}, the model expects "
                              f"{tuple(own[k].shape)}; the checkpoint is of another architecture")
    missing = [k for k in own if k not in state]
    if missing:
        raise SslvitError(f"checkpoint '{source}' lacks key '{missing[0]}' ({len(missing)} missing); it was saved "
                          f"from another architecture")
    model.load_state_dict(state, strict=True)


def _model_cfg_with_overrides(model_cfg: ModelConfig, overrides: Iterable[str]) -> ModelConfig:
    overrides = [o for o in overrides if o.split("=", 1)[0].strip().startswith("model.")]
    if not overrides:
        return model_cfg
    return apply_overrides(replace(Config(), model=model_cfg), overrides).model


def read_checkpoint(path: str | Path) -> Tuple[Dict[str, torch.Tensor], ModelConfig, Dict, str, Config | None, Path]:
    """-> (backbone state dict with timm keys, model config, data config, format, full config, path)."""
    p = resolve_checkpoint_path(path)
    if p.suffix == ".safetensors":
        tensors, meta = load_safetensors(p)
        if meta.get("format") != BACKBONE_FORMAT:
            raise SslvitError(f"'{p}' has no sslvit metadata (format={meta.get('format')!r}); export it with sslvit "
                              f"or pass the run's checkpoints/last.pt")
        model_cfg = from_dict(ModelConfig, json.loads(meta["model_config"]), "model.")
        return tensors, model_cfg, json.loads(meta["data_config"]), BACKBONE_FORMAT, None, p
    obj = load_pt(p)
    if obj.get("format") == TRAIN_FORMAT:
        cfg = from_dict(Config, obj["config"])
        sd = {k[len("backbone."):]: v for k, v in obj["model"].items() if k.startswith("backbone.")}
        return sd, cfg.model, obj["data_config"], TRAIN_FORMAT, cfg, p
    keys = list(obj)[:5]
    raise SslvitError(f"'{p}' is not an sslvit checkpoint (top-level keys: {keys}); pass a run dir, last.pt or "
                      f"last.safetensors written by sslvit")


def load_backbone(path: str | Path, overrides: Iterable[str] = (), device_type: str = "cpu") -> LoadedBackbone:
    from ssl_vit.models import create_backbone
    sd, model_cfg, data_cfg, fmt, cfg, p = read_checkpoint(path)
    model_cfg = _model_cfg_with_overrides(model_cfg, overrides)
    model = create_backbone(model_cfg, device_type)
    load_state_strict(model, sd, str(p))
    return LoadedBackbone(model, model_cfg, data_cfg, str(p), fmt, cfg)
