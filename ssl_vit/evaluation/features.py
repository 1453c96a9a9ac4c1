"""Frozen-backbone feature extraction: CLS token after the final norm, any dataset, any input spec."""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ssl_vit.core.attention import fused_attention
from ssl_vit.core.input_spec import InputSpec
from ssl_vit.core.precision import Precision, autocast
from ssl_vit.data.images import TensorImages
from ssl_vit.data.labelled import LabelledFiles
from ssl_vit.transforms.eval import to_model_input
from ssl_vit.transforms.pipeline import eval_transform


@torch.inference_mode()
def extract_features(
    model: nn.Module,
    data,
    input_spec: InputSpec,
    batch_size: int = 512,
    device: Optional[torch.device] = None,
    precision: Optional[Precision] = None,
    num_workers: int = 2,
    progress: bool = False,
    desc: str = "features",
) -> torch.Tensor:
    """-> (N, D) float32 features (not normalised), in dataset order.

    Fast path: ``inference_mode``, whole-batch input conversion, large batches, ``precision``'s autocast
    (None: fp32; bf16 only where the hardware is fast: :class:`~ssl_vit.core.precision.Precision`), and PyTorch's
    fused attention (SDPA) switched on for the duration: the backbone keeps timm's plain attention on CPU
    for its fast *backward*; for inference SDPA was as fast on a quiet CPU and 1.1-1.3x faster under
    load (eval/bench/bench_eval.py).
    """
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    if isinstance(data, TensorImages):
        batches = (data.images[i : i + batch_size] for i in range(0, len(data), batch_size))
        total = (len(data) + batch_size - 1) // batch_size
    else:
        loader = DataLoader(
            LabelledFiles(data, eval_transform(int(input_spec.img_size))),
            batch_size=batch_size,
            num_workers=num_workers,
            shuffle=False,
        )
        batches = (x for x, _ in loader)
        total = len(loader)
    out = []
    try:
        with fused_attention(model):
            for x in tqdm(batches, total=total, desc=desc, disable=not progress, leave=False, unit="batch"):
                x = to_model_input(x.to(device), input_spec)  # (B, C, S, S)
                with autocast(precision):
                    f = model(x)
                out.append(f.float().cpu())  # (B, D)
    finally:
        model.train(was_training)
    return torch.cat(out, 0)
