"""Which features a linear probe reads: the CLS token (MoCo v3) or DINO's concatenation over the last blocks.

* ``n_last_blocks=1, avgpool_patchtokens=False`` (default): the backbone's own output, the CLS token after
  the final norm -- MoCo v3's ``main_lincls`` protocol. The backbone itself is returned, unwrapped.
* ``n_last_blocks=n``: the CLS tokens of the last ``n`` blocks, each after the final norm, concatenated
  (Caron et al., "Emerging Properties in Self-Supervised Vision Transformers", ICCV 2021, sec. 4 / appendix;
  DINO's ``eval_linear.py --n_last_blocks``: 4 for ViT-S, 1 for ViT-B).
* ``avgpool_patchtokens=True``: also the mean of the last block's patch tokens after the final norm
  (DINO's ``--avgpool_patchtokens``, its ViT-B setting).

Shapes: ``(B, C, H, W)`` -> ``(B, D * (n_last_blocks + avgpool_patchtokens))``.
Measured on the demo checkpoint (`fmnist_vit_tiny`, 64-d, fast probe, FMNIST test): CLS 82.6 %, last 4 CLS
84.8 %, last 4 CLS + patch mean 85.7 % (README, "Measured on this machine").

Needs timm's ``forward_intermediates`` (every sslvit ViT, any stem); the ViTAS superformer has none and
gets a one-line error.

Example::

    m = probe_features(vit, n_last_blocks=4, avgpool_patchtokens=True)
    m(torch.randn(2, 1, 28, 28)).shape          # (2, 5 * 64) for a 64-d ViT
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ssl_vit.errors import SslvitError


class LastBlocksPooling(nn.Module):
    """CLS of the last ``n`` blocks (+ patch-token mean of the last), all after the final norm."""

    def __init__(self, backbone: nn.Module, n_last_blocks: int, avgpool_patchtokens: bool):
        super().__init__()
        self.backbone, self.n, self.avgpool = backbone, int(n_last_blocks), bool(avgpool_patchtokens)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.backbone
        blocks = m.forward_intermediates(
            x, indices=self.n, norm=True, output_fmt="NLC", return_prefix_tokens=True, intermediates_only=True
        )
        feats = [prefix[:, 0] for _, prefix in blocks]  # n x (B, D): CLS after the norm
        if self.avgpool:
            feats.append(blocks[-1][0].mean(1))  # (B, N, D) patch tokens -> (B, D)
        return torch.cat(feats, 1)  # (B, D * (n + avgpool))


def pooling_name(n_last_blocks: int = 1, avgpool_patchtokens: bool = False) -> str:
    """Short label for results and cache keys: ``cls``, ``cls_last4``, ``cls_last4+avgpool``."""
    base = "cls" if n_last_blocks == 1 else f"cls_last{n_last_blocks}"
    return base + ("+avgpool" if avgpool_patchtokens else "")


def probe_features(backbone: nn.Module, n_last_blocks: int = 1, avgpool_patchtokens: bool = False) -> nn.Module:
    """The module whose output the probe reads (see the module docstring); the backbone itself for plain CLS."""
    if n_last_blocks == 1 and not avgpool_patchtokens:
        return backbone
    depth = len(getattr(backbone, "blocks", ()))
    if not hasattr(backbone, "forward_intermediates") or getattr(backbone, "num_prefix_tokens", 0) < 1:
        raise SslvitError(
            f"probe.n_last_blocks / probe.avgpool_patchtokens need a ViT with a CLS token and timm's "
            f"forward_intermediates; {type(backbone).__name__} has none: leave them at 1 / false"
        )
    if not 1 <= n_last_blocks <= depth:
        raise SslvitError(f"probe.n_last_blocks={n_last_blocks} but the backbone has {depth} blocks; use 1..{depth}")
    return LastBlocksPooling(backbone, n_last_blocks, avgpool_patchtokens)
