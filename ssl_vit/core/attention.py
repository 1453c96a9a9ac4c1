"""The attention switch: SDPA or timm's plain attention in every attention layer of a module
(:func:`set_attention`; :func:`fused_attention` for a block of code), and ``model.fused_attn=auto`` per pass
and dtype: SDPA or timm's plain attention, whichever was measured faster for what each backbone of a method
does.

The backbone is built with the token-count rule of ``ssl_vit/models/vit.py`` (SDPA on GPUs; on CPU from
``CPU_SDPA_MIN_TOKENS`` tokens). Once the method and the precision are known, :func:`plan_attention` refines
that per module: the trained backbone runs forward + backward, a momentum copy (``momentum_*``) only a
no-grad forward, and on CPU the two passes have different winners in bf16. Measured with
``eval/bench/bench_attention.py`` (one timm ``Attention`` block, head dim 64, 3 / 6 / 12 heads, B x N = 16640,
1 thread, Xeon with AVX-512 BF16 + AMX; ``eval/bench/speed.md``):

=========  ===========================  ==================================================================
dtype      pass                         plain time / SDPA time
=========  ===========================  ==================================================================
bf16       train (forward + backward)   17 .. 577 tokens 0.30 .. 0.94: plain 1.1-3.3x faster (PyTorch's CPU
                                        flash-attention backward is slow in bf16); 785 tokens 1.12: SDPA from
                                        ``CPU_BF16_TRAIN_SDPA_MIN_TOKENS``
bf16       no-grad forward              17 .. 785 tokens 0.96 .. 2.44: SDPA (ties at 50-101 tokens, 12 heads)
fp32       both                         17 .. 257 tokens 1.00 .. 1.76: SDPA at or above parity; the
                                        token-count rule of ``vit.py`` (plain below 32 tokens, 4 % faster in
                                        a full step) is kept
=========  ===========================  ==================================================================

On CUDA SDPA (flash / memory-efficient kernels) is used everywhere. ``model.fused_attn=true|false`` is never
overridden. The choice is a pure function of (device type, dtype, pass, tokens) -- never timed at start-up --
so a resumed run makes the same choice and stays bit-identical. Both paths compute the same function
(``tests/engine/test_step_equivalence.py`` runs the step with each).

Example::

    plan = plan_attention(model, "cpu", "bf16")      # {'backbone': False, 'momentum_backbone': True}
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Dict, Optional

import torch.nn as nn

# bf16 on CPU, forward + backward: the plain path was faster from 17 to 577 tokens (ratio rising towards 1
# with N), SDPA at 785 (its backward also never holds the N x N attention matrix).
CPU_BF16_TRAIN_SDPA_MIN_TOKENS = 700


def token_count(model: nn.Module) -> int:
    """Tokens of a timm ViT at its configured image size (patches + prefix tokens); 0 when unknown."""
    pe = getattr(model, "patch_embed", None)
    patches = int(getattr(pe, "num_patches", 0) or 0)
    return patches + int(getattr(model, "num_prefix_tokens", 1)) if patches else 0


def set_attention(model: nn.Module, fused: bool) -> None:
    """SDPA (``fused``) or timm's plain attention in every attention layer of ``model``."""
    for m in model.modules():
        if hasattr(m, "fused_attn"):
            m.fused_attn = fused


@contextmanager
def fused_attention(model: nn.Module, enabled: bool = True):
    """Switch timm's attention modules to PyTorch SDPA (``enabled=False``: to the plain path) for the
    duration; restore their setting afterwards."""
    attn = [m for m in model.modules() if hasattr(m, "fused_attn")]
    before = [m.fused_attn for m in attn]
    for m in attn:
        m.fused_attn = enabled
    try:
        yield model
    finally:
        for m, f in zip(attn, before):
            m.fused_attn = f


def sdpa_is_faster(device_type: str, precision: str, tokens: int, grad: bool) -> Optional[bool]:
    """The measured winner for one pass; None where the token-count rule of ``vit.py`` stays (fp32 on CPU,
    unknown token count)."""
    if device_type != "cpu":
        return True
    if precision in ("bf16", "fp16") and tokens:
        return (not grad) or tokens >= CPU_BF16_TRAIN_SDPA_MIN_TOKENS
    return None


def plan_attention(method: nn.Module, device_type: str, precision: str) -> Dict[str, bool]:
    """Set ``fused_attn`` on every attention below each direct child of ``method`` (``momentum_*`` children:
    the no-grad pass; the others: the training pass). Returns {child name: fused} for the children changed
    or confirmed; children without attention, or where the measurements leave the build-time rule, are absent."""
    plan = {}
    for name, child in method.named_children():
        if not any(hasattr(m, "fused_attn") for m in child.modules()):
            continue
        tokens = token_count(child)
        fused = sdpa_is_faster(device_type, precision, tokens, grad=not name.startswith("momentum_"))
        if fused is not None:
            set_attention(child, fused)
            plan[name] = fused
    return plan
