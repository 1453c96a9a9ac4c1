"""Export a backbone as a timm checkpoint: ``OUT.safetensors`` (timm key names) + ``OUT.json``.

``OUT.json`` holds ``{"model_name": ..., "model_kwargs": {...}, "pretrained_cfg": {...}}`` such that::

    import json, timm
    spec = json.load(open("OUT.json"))
    model = timm.create_model(spec["model_name"], pretrained=True, num_classes=0,
                              pretrained_cfg_overlay={"file": "OUT.safetensors"}, **spec["model_kwargs"])

builds timm's own ``VisionTransformer`` (no sslvit import needed) with exactly the file's keys.
``spec["pretrained_cfg"]`` (input size, mean, std, ``num_classes=0``) can be merged into the overlay so that
``timm.data.resolve_data_config`` sees the backbone's data config; with ``num_classes=0`` in it timm also
loads with ``strict=True`` (without it timm relaxes strictness because the overlay still says 1000 classes).

Exportable: plain patchify ViTs (every ``vit_*`` backbone with ``model.stem=patchify``), whatever their
size, heads, image size, channels or position embedding (the fixed sin-cos table is an ordinary
``pos_embed`` tensor in the file). Not exportable: any other stem (timm's ``VisionTransformer`` has only
the one-conv patchify ``PatchEmbed``) and any backbone that is not built on timm's
``VisionTransformer``; both are refused with a one-line error.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, Iterable

from ssl_vit.checkpoints.formats import save_backbone
from ssl_vit.checkpoints.load import load_backbone
from ssl_vit.config.loading import to_dict
from ssl_vit.core.atomic import atomic_write_text
from ssl_vit.core.input_spec import InputSpec
from ssl_vit.core.rundir import refuse_to_replace
from ssl_vit.errors import SslvitError
from ssl_vit.models import registry, vit
from ssl_vit.models.vit import resolve

# timm names per width: only a label (every architecture argument is in model_kwargs and wins).
_TIMM_NAMES = {
    192: "vit_tiny_patch16_224",
    384: "vit_small_patch16_224",
    768: "vit_base_patch16_224",
    1024: "vit_large_patch16_224",
}


def exportable(model_cfg) -> str:
    """'' when the backbone maps onto timm's VisionTransformer, else the reason it cannot."""
    if registry._BUILDERS.get(model_cfg.name) is not vit.build_vit:
        return f"backbone '{model_cfg.name}' is not built on timm's VisionTransformer"
    if model_cfg.stem != "patchify":
        return (
            f"stem '{model_cfg.stem}' has no timm equivalent (timm's VisionTransformer has only the patchify "
            f"PatchEmbed)"
        )
    return ""


def timm_spec(model_cfg, input_spec: InputSpec) -> Dict:
    r = resolve(model_cfg)
    kwargs = dict(
        img_size=r.img_size,
        patch_size=r.patch_size,
        in_chans=r.in_chans,
        embed_dim=r.embed_dim,
        depth=r.depth,
        num_heads=r.num_heads,
        mlp_ratio=float(r.mlp_ratio),
        qkv_bias=True,
        class_token=True,
        global_pool="token",
    )
    pretrained_cfg = {
        "input_size": [r.in_chans, r.img_size, r.img_size],
        "mean": list(input_spec.mean),
        "std": list(input_spec.std),
        "num_classes": 0,
        "crop_pct": 1.0 if r.img_size < 64 else 0.875,
        "interpolation": "bilinear",
        "first_conv": "patch_embed.proj",
        "classifier": "head",
    }
    return {
        "model_name": _TIMM_NAMES.get(r.embed_dim, "vit_tiny_patch16_224"),
        "model_kwargs": kwargs,
        "pretrained_cfg": pretrained_cfg,
    }


def export_timm(checkpoint, out: str | Path, overrides: Iterable[str] = (), overwrite: bool = False) -> Dict:
    """Any loadable checkpoint -> OUT.safetensors + OUT.json; returns the JSON contents (plus paths). Either
    file existing is an error unless ``overwrite``."""
    out = Path(out)
    if out.suffix != ".safetensors":
        raise SslvitError(f"export target '{out}' must end in .safetensors (the JSON goes next to it)")
    refuse_to_replace([out, out.with_suffix(".json")], overwrite, "export writes OUT.safetensors and OUT.json")
    loaded = load_backbone(checkpoint, overrides)
    why = exportable(loaded.model_cfg)
    if why:
        raise SslvitError(
            f"cannot export '{loaded.source}' to timm: {why}; only plain patchify ViTs (vit_* with "
            f"model.stem=patchify) can be exported"
        )
    spec = timm_spec(loaded.model_cfg, loaded.input_spec)
    sd = loaded.model.state_dict()
    # The file is also an sslvit backbone file (metadata), so sslvit commands accept it as well.
    save_backbone(
        out,
        sd,
        to_dict(loaded.model_cfg),
        loaded.input_spec,
        {
            "timm_model_name": spec["model_name"],
            "timm_model_kwargs": json.dumps(spec["model_kwargs"]),
            "source": loaded.source,
        },
    )
    json_path = out.with_suffix(".json")
    atomic_write_text(json_path, json.dumps(spec, indent=2) + "\n")
    return {**spec, "safetensors": str(out), "json": str(json_path), "format": loaded.fmt, "notes": loaded.notes}
