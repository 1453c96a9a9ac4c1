"""One place that turns any supported checkpoint into a backbone. Everything else asks it.

``load_backbone(path)`` accepts

* an sslvit run directory, ``checkpoints/last.pt`` (full training state) or a ``.safetensors`` backbone
  (model + data config in its metadata);
* an official MoCo v3 ``.pth.tar``, a DeiT-style file (``model`` key) or a plain timm state dict
  (``.pth`` / ``.bin`` / ``.safetensors``): see :mod:`ssl_vit.checkpoints.foreign`.

The format is detected from the file's keys/metadata; ``.pt``-style files are read with
``torch.load(weights_only=True)`` only. The model is rebuilt from the stored (or inferred) config
with ``model.*`` overrides (``--set model.num_heads=12``, ``model.img_size=32``: position embeddings
are then regenerated (fixed sin-cos) or resampled (learned, timm ``resample_abs_pos_embed``)), and
loaded with strict keys: a mismatch names the first offending key and both shapes.

Example::

    loaded = load_backbone("moco_v3_vit_small.pth.tar", ["model.img_size=112"])
    feats = loaded.model(x)                       # (B, 384)
    loaded.input_spec                             # InputSpec(img_size=112, in_chans=3, mean=(...), std=(...))
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple

import torch
import torch.nn as nn
from timm.layers import resample_abs_pos_embed, resample_patch_embed

from ssl_vit.checkpoints import foreign
from ssl_vit.checkpoints.formats import BACKBONE_FORMAT, TRAIN_FORMAT, load_pt, load_safetensors
from ssl_vit.config.loading import apply_overrides, diff_configs, from_dict, to_dict
from ssl_vit.config.schema import Config, ModelConfig
from ssl_vit.config.validate import validate
from ssl_vit.core.input_spec import InputSpec
from ssl_vit.errors import SslvitError
from ssl_vit.models import create_backbone
from ssl_vit.models.vit import SIZES, resolve, sincos_pos_embed

_REMAKE = (
    "re-export it from its run (sslvit export RUN --to timm OUT.safetensors) or pass the run's checkpoints/last.pt"
)


@dataclass
class LoadedBackbone:
    model: nn.Module
    model_cfg: ModelConfig
    input_spec: InputSpec  # what the backbone takes as input
    source: str  # path actually read
    fmt: str  # detected format
    config: Config | None = None  # full training config, when the file has it
    notes: List[str] = field(default_factory=list)  # what was inferred or assumed (for the user)
    weights_hash: str = ""  # content hash of the loaded weights + model config (feature-cache key)


@dataclass
class CheckpointContents:
    state: Dict[str, torch.Tensor]  # backbone state dict, timm key names
    model_cfg: ModelConfig
    input_spec: InputSpec
    fmt: str
    config: Optional[Config]
    path: Path
    notes: List[str] = field(default_factory=list)
    key_prefix: str = ""  # how the keys were named in the file (for error messages)


def resolve_checkpoint_path(path: str | Path) -> Path:
    p = Path(path)
    if p.is_dir():
        for cand in (
            p / "checkpoints" / "last.safetensors",
            p / "last.safetensors",
            p / "checkpoints" / "last.pt",
            p / "last.pt",
        ):
            if cand.is_file():
                return cand
        raise SslvitError(
            f"'{p}' holds no checkpoint (looked for checkpoints/last.safetensors and last.pt); "
            f"pass a run dir that has finished at least one checkpoint"
        )
    if not p.exists():
        raise SslvitError(f"checkpoint '{p}' not found; pass a run dir, a .pt or a .safetensors file")
    return p


def load_state_strict(model: nn.Module, state: Dict[str, torch.Tensor], source: str) -> None:
    own = model.state_dict()
    for k, v in state.items():
        if k not in own:
            raise SslvitError(
                f"checkpoint '{source}' has key '{k}' that the model lacks; it was saved from another "
                f"architecture (check model.* settings)"
            )
        if tuple(own[k].shape) != tuple(v.shape):
            raise SslvitError(
                f"checkpoint '{source}' key '{k}' has shape {tuple(v.shape)}, the model expects "
                f"{tuple(own[k].shape)}; the checkpoint is of another architecture"
            )
    missing = [k for k in own if k not in state]
    if missing:
        raise SslvitError(
            f"checkpoint '{source}' lacks key '{missing[0]}' ({len(missing)} missing); it was saved "
            f"from another architecture"
        )
    model.load_state_dict(state, strict=True)


def _model_cfg_with_overrides(model_cfg: ModelConfig, overrides: Iterable[str]) -> ModelConfig:
    overrides = [o for o in overrides if o.split("=", 1)[0].strip().startswith("model.")]
    if not overrides:
        return model_cfg
    return apply_overrides(replace(Config(), model=model_cfg), overrides).model


def _meta_json(meta: Dict[str, str], key: str, p: Path) -> Dict:
    if key not in meta:
        raise SslvitError(f"'{p}' has sslvit metadata without '{key}'; {_REMAKE}")
    try:
        val = json.loads(meta[key])
    except ValueError as e:
        raise SslvitError(f"'{p}' metadata '{key}' is not valid JSON ({getattr(e, 'msg', e)}); {_REMAKE}") from None
    if not isinstance(val, dict):
        raise SslvitError(f"'{p}' metadata '{key}' must be a JSON object, got a {type(val).__name__}; {_REMAKE}")
    return val


def _run_config(raw: Dict, p: Path, where: str) -> Config:
    """A run's stored whole config (last.pt's entry, a run's last.safetensors metadata) -> :class:`Config`."""
    try:
        cfg = from_dict(Config, raw)
    except SslvitError as e:
        raise SslvitError(f"'{p}' {where} is invalid: {e}") from None
    checked_model_config(to_dict(cfg.model), p, where)
    return cfg


def checked_model_config(raw, p: Path, where: str) -> ModelConfig:
    """A stored model config -> :class:`ModelConfig`, with the same checks as a recipe's (sizes, divisibility,
    names); a problem is one line naming the file and the field."""
    if not isinstance(raw, dict):
        raise SslvitError(f"'{p}' {where} must be a mapping, got a {type(raw).__name__}; {_REMAKE}")
    try:
        model_cfg = from_dict(ModelConfig, raw, "model.")
        validate(replace(Config(), model=model_cfg), need=("data", "models"))  # the rest are defaults
    except SslvitError as e:
        raise SslvitError(f"'{p}' {where} is invalid: {e}") from None
    return model_cfg


def _number_list(v) -> bool:
    return (
        isinstance(v, (list, tuple))
        and len(v) > 0
        and all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in v)
    )


def check_data_config(d, p: Path, where: str = "data_config") -> InputSpec:
    """The input a backbone expects, from a file's mapping: ``img_size`` > 0, ``in_chans`` 1 or 3, ``mean`` /
    ``std`` lists of 1 or ``in_chans`` finite numbers, ``std`` > 0 (images are divided by it)."""

    def bad(msg: str) -> SslvitError:
        return SslvitError(f"'{p}' {where}: {msg}; {_REMAKE}")

    if not isinstance(d, dict):
        raise bad(f"must be a mapping, got a {type(d).__name__}")
    for k in ("img_size", "in_chans", "mean", "std"):
        if k not in d:
            raise bad(f"'{k}' is missing")
    size, chans = d["img_size"], d["in_chans"]
    if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
        raise bad(f"img_size must be a positive integer, got {size!r}")
    if chans not in (1, 3) or isinstance(chans, bool):
        raise bad(f"in_chans must be 1 or 3, got {chans!r}")
    for k in ("mean", "std"):
        if not _number_list(d[k]) or len(d[k]) not in (1, chans):
            raise bad(f"{k} must be a list of {'1' if chans == 1 else '1 or 3'} finite number(s), got {d[k]!r}")
    if any(s <= 0 for s in d["std"]):
        raise bad(f"std must be > 0 (images are divided by it), got {d['std']!r}")
    return InputSpec.from_dict(d)


def _finite_or_error(sd: Dict[str, torch.Tensor], source: str) -> None:
    for k, v in sd.items():
        if isinstance(v, torch.Tensor) and v.is_floating_point() and not bool(torch.isfinite(v).all()):
            n = int((~torch.isfinite(v)).sum())
            raise SslvitError(
                f"checkpoint '{source}' holds non-finite weights ({n} NaN/inf values in '{k}'); the run "
                f"diverged: use an earlier checkpoint (checkpoints/step_*.pt) or retrain with a lower "
                f"optim.lr"
            )


def inspect_checkpoint(path: str | Path) -> CheckpointContents:
    """Read any supported file -> backbone state dict (timm keys) + model/data config, without building a model.
    sslvit metadata (model and data config) is validated here: one line naming the file and the field."""
    p = resolve_checkpoint_path(path)
    if p.suffix == ".safetensors":
        tensors, meta = load_safetensors(p)
        if meta.get("format") == BACKBONE_FORMAT:
            model_cfg = checked_model_config(_meta_json(meta, "model_config", p), p, "metadata 'model_config'")
            input_spec = check_data_config(_meta_json(meta, "data_config", p), p, "metadata 'data_config'")
            cfg = _run_config(_meta_json(meta, "config", p), p, "metadata 'config'") if "config" in meta else None
            return CheckpointContents(tensors, model_cfg, input_spec, BACKBONE_FORMAT, cfg, p)
        found = foreign.detect(tensors)
        if found is None:
            raise SslvitError(
                f"'{p}' has no sslvit metadata (format={meta.get('format')!r}) and is not a timm ViT "
                f"state dict; export it with sslvit or pass the run's checkpoints/last.pt"
            )
        return _foreign_contents(found, p)
    obj = load_pt(p)
    if obj.get("format") == TRAIN_FORMAT:
        for key in ("config", "model", "data_config"):
            if not isinstance(obj.get(key), dict):
                raise SslvitError(
                    f"'{p}' is an sslvit training checkpoint whose '{key}' entry is "
                    f"{'missing' if key not in obj else 'a ' + type(obj[key]).__name__}; it is "
                    f"incomplete: use the run's checkpoints/last.safetensors or an earlier checkpoint"
                )
        cfg = _run_config(obj["config"], p, "entry 'config'")
        sd = {
            k[len("backbone.") :]: v
            for k, v in obj["model"].items()
            if isinstance(k, str) and k.startswith("backbone.")
        }
        return CheckpointContents(sd, cfg.model, check_data_config(obj["data_config"], p), TRAIN_FORMAT, cfg, p)
    found = foreign.detect(obj)
    if found is None:
        keys = list(obj)[:5]
        raise SslvitError(
            f"'{p}' is not an sslvit checkpoint nor a recognised ViT checkpoint (top-level keys: "
            f"{keys}); pass a run dir, last.pt, last.safetensors, an official MoCo v3 .pth.tar, a "
            f"DeiT-style file or a timm ViT state dict"
        )
    return _foreign_contents(found, p)


def _foreign_contents(found, p: Path) -> CheckpointContents:
    fmt, sd, info = found
    model_cfg, input_spec, notes = foreign.infer_vit_config(sd, str(p), fmt, info.get("arch"))
    prefix = foreign.MOCO_PREFIX if fmt == foreign.MOCOV3_FORMAT else ""
    return CheckpointContents(sd, model_cfg, input_spec, fmt, None, p, notes, prefix)


def read_checkpoint(
    path: str | Path,
) -> Tuple[Dict[str, torch.Tensor], ModelConfig, InputSpec, str, Config | None, Path]:
    """-> (backbone state dict with timm keys, model config, input spec, format, full config, path)."""
    c = inspect_checkpoint(path)
    return c.state, c.model_cfg, c.input_spec, c.fmt, c.config, c.path


def adapt_state(sd: Dict[str, torch.Tensor], model_cfg: ModelConfig) -> Tuple[Dict[str, torch.Tensor], List[str]]:
    """Fit position embeddings (and the patch kernel) to ``model_cfg``'s image / patch size.

    Fixed 2-D sin-cos tables are regenerated exactly; learned ones are resampled (bicubic) with timm's
    ``resample_abs_pos_embed``; a patch kernel of another size is resampled with timm's FlexiViT
    ``resample_patch_embed``.
    """

    notes: List[str] = []
    sd = dict(sd)
    proj = sd.get("patch_embed.proj.weight")
    if proj is not None and proj.ndim == 4 and tuple(proj.shape[-2:]) != (model_cfg.patch_size,) * 2:
        sd["patch_embed.proj.weight"] = resample_patch_embed(proj, [model_cfg.patch_size] * 2)
        notes.append(f"patch kernel resampled {tuple(proj.shape[-2:])} -> {(model_cfg.patch_size,) * 2}")
    pe = sd.get("pos_embed")
    if pe is None or pe.ndim != 3:
        return sd, notes
    grid = model_cfg.img_size // model_cfg.patch_size
    n_old = int(pe.shape[1]) - 1
    if n_old == grid * grid:
        return sd, notes
    old = int(round(n_old**0.5))
    if old * old != n_old:
        return sd, notes  # not a square grid: the strict load names the shapes
    dim = int(pe.shape[-1])
    if (
        model_cfg.pos_embed == "sincos"
        and dim % 4 == 0
        and torch.allclose(pe.float(), sincos_pos_embed((old, old), dim), atol=1e-5)
    ):
        sd["pos_embed"] = sincos_pos_embed((grid, grid), dim).to(pe.dtype)
        notes.append(f"sin-cos position embedding regenerated for a {grid}x{grid} grid (was {old}x{old})")
    else:
        sd["pos_embed"] = resample_abs_pos_embed(pe, [grid, grid], [old, old], num_prefix_tokens=1)
        notes.append(f"position embedding resampled {old}x{old} -> {grid}x{grid} (bicubic)")
    return sd, notes


def weights_hash(sd: Dict[str, torch.Tensor], model_cfg: ModelConfig) -> str:
    """Content hash of a state dict and the config that interprets it (feature-cache key)."""
    h = hashlib.blake2b(digest_size=16)
    h.update(json.dumps(to_dict(model_cfg), sort_keys=True).encode())
    for k in sorted(sd):
        t = sd[k].detach().contiguous().cpu()
        h.update(f"{k}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def load_backbone(path: str | Path, overrides: Iterable[str] = (), device_type: str = "cpu") -> LoadedBackbone:

    c = inspect_checkpoint(path)
    _finite_or_error(c.state, str(c.path))
    model_cfg = _model_cfg_with_overrides(c.model_cfg, overrides)
    if model_cfg.img_size % model_cfg.patch_size:
        raise SslvitError(
            f"model.patch_size={model_cfg.patch_size} does not divide model.img_size="
            f"{model_cfg.img_size}; pick an image size that is a multiple of the patch size"
        )
    if model_cfg.name in SIZES:
        r = resolve(model_cfg)
        if r.embed_dim % r.num_heads:
            raise SslvitError(
                f"model.num_heads={r.num_heads} does not divide the embedding dim {r.embed_dim}; "
                f"pass --set model.num_heads=<a divisor of {r.embed_dim}>"
            )
    sd, notes = adapt_state(c.state, model_cfg)
    changed = diff_configs(to_dict(c.model_cfg), to_dict(model_cfg), "model.")
    if changed:
        notes = [f"overridden: {'; '.join(changed)}"] + notes
    input_spec = c.input_spec
    if model_cfg.img_size != c.model_cfg.img_size:
        input_spec = input_spec.resized(model_cfg.img_size)
    if model_cfg.in_chans != c.model_cfg.in_chans:
        raise SslvitError(
            f"model.in_chans={model_cfg.in_chans} differs from the checkpoint's {c.model_cfg.in_chans}; "
            f"leave it: evaluation converts grey <-> RGB to the backbone's channels"
        )
    model = create_backbone(model_cfg, device_type)
    source = str(c.path) + (f" ({c.fmt}, keys under '{c.key_prefix}')" if c.key_prefix else "")
    load_state_strict(model, sd, source)
    return LoadedBackbone(
        model, model_cfg, input_spec, str(c.path), c.fmt, c.config, c.notes + notes, weights_hash(sd, model_cfg)
    )
