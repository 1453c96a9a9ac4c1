"""What every evaluation command shares: checkpoint -> backbone, config with --set, device, precision,
feature cache, and the columns that describe the backbone in results.json."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterable

import yaml

from ssl_vit.checkpoints import load_backbone
from ssl_vit.config import apply_overrides
from ssl_vit.config.schema import Config
from ssl_vit.config.validate import validate_probe
from ssl_vit.core.precision import Precision, resolve_device
from ssl_vit.data import parse_spec
from ssl_vit.evaluation.cache import FeatureCache
from ssl_vit.models.vit import SIZES, resolve


@dataclass
class EvalSetup:
    loaded: object  # LoadedBackbone
    cfg: object  # Config
    device: object
    precision: object
    cache: FeatureCache


def prepare_eval(
    checkpoint, dataset: str, overrides: Iterable[str] = (), log: Callable[[str], None] = lambda m: None
) -> EvalSetup:
    """Load the backbone (``model.*`` overrides), apply the other overrides to its config, pick device/precision."""

    overrides = list(overrides)
    parse_spec(dataset)
    rest = [o for o in overrides if not o.split("=", 1)[0].strip().startswith("model.")]
    apply_overrides(Config(), rest)  # bad keys fail before the (slow) checkpoint load
    loaded = load_backbone(checkpoint, overrides)
    for note in loaded.notes:
        log(f"note: {note}")
    cfg = apply_overrides(loaded.config or Config(), rest)
    validate_probe(cfg)
    device = resolve_device(cfg.train.device)
    precision = Precision.resolve(cfg.train.precision, device)
    loaded.model.to(device)
    return EvalSetup(loaded, cfg, device, precision, FeatureCache.from_config(cfg.eval))


def backbone_label(m) -> str:
    """'vit_pico d128 L6 h4 p7 28px' (+ the stem when it is not patchify)."""
    r = resolve(m) if m.name in SIZES else m
    return f"{m.name} d{r.embed_dim} L{r.depth} h{r.num_heads} p{m.patch_size} {m.img_size}px" + (
        f" {m.stem}" if m.stem != "patchify" else ""
    )


def describe_backbone(loaded) -> Dict:
    """results.json columns naming the backbone (for tables across runs)."""
    method = (
        loaded.config.method.name
        if loaded.config is not None
        else _run_dir_method(loaded.source) or {"mocov3.official": "mocov3"}.get(loaded.fmt, "unknown")
    )
    return {
        "backbone": backbone_label(loaded.model_cfg),
        "params": int(sum(p.numel() for p in loaded.model.parameters())),
        "pretrain_method": method,
        "checkpoint_format": loaded.fmt,
    }


def _run_dir_method(source: str):
    """A run's checkpoints/last.safetensors: the method is in the run's config.yaml."""
    cfg = Path(source).parent.parent / "config.yaml"
    try:
        return (yaml.safe_load(cfg.read_text()) or {}).get("method", {}).get("name")
    except (OSError, yaml.YAMLError, AttributeError):
        return None
