"""FLOPs of a backbone for one image, counted by ``torch.utils.flop_counter.FlopCounterMode``.

Counted with timm's *plain* attention path (``q @ k^T``, ``attn @ v`` as matmuls), so a superformer running
a sub-network and the exported stand-alone ViT count the same operations (linear, conv, matmul); norms,
softmax and GELU are not counted by torch's counter. Figures are FLOPs (2 per multiply-add), in units of 1e9.

Example::

    g = count_gflops(vit, img_size=28, in_chans=1)      # e.g. 0.0213
"""
from __future__ import annotations

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from ssl_vit.evaluation.features import fused_attention


@torch.no_grad()
def count_gflops(model: nn.Module, img_size: int, in_chans: int) -> float:
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with fused_attention(model, enabled=False), FlopCounterMode(display=False) as counter:
            model(torch.zeros(1, in_chans, img_size, img_size, device=device))
    finally:
        model.train(was_training)
    return counter.get_total_flops() / 1e9
