"""Parameters and FLOPs of a backbone and its stem, counted with ``torch.utils.flop_counter``: the one FLOP
counter of sslvit (the stem table here, the ViTAS search's FLOP objective in ``ssl_vit/search``).

``FlopCounterMode`` counts matmul / conv / attention FLOPs (2 x multiply-accumulates); element-wise ops
(BatchNorm, ReLU, LayerNorm, softmax, GELU) are not counted. Models are built and run on the ``meta``
device, so counting ViT-B at 224 px takes milliseconds and allocates nothing.

:func:`count_gflops` counts with timm's *plain* attention path (``q @ k^T``, ``attn @ v`` as matmuls), so a
superformer running a sub-network and the exported stand-alone ViT count the same operations.

Example::

    rows = stem_cost_rows([("vit_micro", 28, 7, 1)])     # one dict per stem
    print(markdown_table(rows))                          # the table in ssl_vit/models/stems.py
    g = count_gflops(vit, img_size=28, in_chans=1)       # e.g. 0.0213 (1e9 FLOPs, one image, eval mode)
"""

from __future__ import annotations

from typing import Dict, Iterable, List, Sequence, Tuple

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from ssl_vit.config.schema import ModelConfig
from ssl_vit.core.attention import fused_attention
from ssl_vit.models.registry import create_backbone
from ssl_vit.models.stems import stem_names

# (backbone, img_size, patch_size, in_chans): Fashion-MNIST (the ablation's model), CIFAR, ImageNet ViT-S
TABLE_SETTINGS: Sequence[Tuple[str, int, int, int]] = (
    ("vit_micro", 28, 7, 1),
    ("vit_pico", 32, 4, 3),
    ("vit_small", 224, 16, 3),
)


def count_flops(module: nn.Module, input_shape: Tuple[int, ...]) -> int:
    """FLOPs of one forward of ``module`` on a tensor of ``input_shape`` (on the module's device)."""
    dev = next(module.parameters()).device
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        module(torch.zeros(input_shape, device=dev))
    return int(fc.get_total_flops())


def count_gflops(model: nn.Module, img_size: int, in_chans: int) -> float:
    """FLOPs / 1e9 of one forward of ``model`` on one ``(1, in_chans, img_size, img_size)`` image, in eval mode
    and with timm's plain attention path (both restored afterwards)."""
    was_training = model.training
    model.eval()
    try:
        with fused_attention(model, enabled=False):
            return count_flops(model, (1, in_chans, img_size, img_size)) / 1e9
    finally:
        model.train(was_training)


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def stem_cost_rows(settings: Iterable[Tuple[str, int, int, int]] = TABLE_SETTINGS) -> List[Dict]:
    """One row per (setting, stem): stem / backbone params and FLOPs for one image, in eval mode."""
    rows: List[Dict] = []
    for name, img, patch, chans in settings:
        group = []
        for stem in sorted(stem_names(), key=lambda s: (s != "patchify", s)):  # patchify first
            with torch.device("meta"):
                m = create_backbone(ModelConfig(name=name, img_size=img, patch_size=patch, in_chans=chans, stem=stem))
            m.eval()
            shape = (1, chans, img, img)
            group.append(
                {
                    "setting": f"{name} {img}px p{patch} {chans}ch",
                    "stem": stem,
                    "stem_params": n_params(m.patch_embed),
                    "stem_flops": count_flops(m.patch_embed, shape),
                    "params": n_params(m),
                    "flops": count_flops(m, shape),
                }
            )
        base = next(r["flops"] for r in group if r["stem"] == "patchify")
        for r in group:
            r["vs_patchify"] = 100.0 * (r["flops"] / base - 1.0)
        rows += group
    return rows


def markdown_table(rows: List[Dict]) -> str:
    lines = [
        "| setting | stem | stem params | stem MFLOPs | backbone params | backbone MFLOPs | vs patchify |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['setting']} | {r['stem']} | {r['stem_params']:,} | {r['stem_flops'] / 1e6:,.2f} | "
            f"{r['params']:,} | {r['flops'] / 1e6:,.2f} | {r['vs_patchify']:+.1f}% |"
        )
    return "\n".join(lines)
