"""Batch statistics over all ranks for BatchNorm1d heads, on CPU (gloo) as well as GPU.

``torch.nn.SyncBatchNorm`` refuses CPU tensors (and DDP refuses it on CPU modules), so data-parallel
CPU runs -- and the tests that check 2 ranks x B/2 == 1 rank x B -- would otherwise normalise each
rank's half separately. This module all-reduces the per-feature sum and sum of squares with the
autograd-aware ``torch.distributed.nn.functional.all_reduce``; on CUDA, torch's own SyncBatchNorm
is used instead (:func:`convert_sync_batchnorm`).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.distributed.nn.functional import all_reduce


class GlobalBatchNorm1d(nn.BatchNorm1d):
    """(N, C) -> (N, C), normalised with the statistics of the global batch (all ranks)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        xf = x.float()
        stats = torch.cat([xf.sum(0), (xf * xf).sum(0), xf.new_tensor([xf.shape[0]])])  # (2C + 1,)
        stats = all_reduce(stats)  # summed over ranks
        C = x.shape[1]
        n = stats[-1]
        mean = stats[:C] / n
        var = (stats[C : 2 * C] / n - mean * mean).clamp_min(0)  # biased, as BN
        if self.track_running_stats:
            with torch.no_grad():
                m = self.momentum if self.momentum is not None else 0.1
                self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                self.running_var.mul_(1 - m).add_(var.detach() * n / (n - 1), alpha=m)
                self.num_batches_tracked.add_(1)
        y = (xf - mean) / torch.sqrt(var + self.eps)
        if self.affine:
            y = y * self.weight + self.bias
        return y.to(x.dtype)


def convert_sync_batchnorm(module: nn.Module, device_type: str) -> nn.Module:
    """BatchNorm -> synchronised BatchNorm: torch's on CUDA, :class:`GlobalBatchNorm1d` on CPU."""
    if device_type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    for name, child in module.named_children():
        if type(child) is nn.BatchNorm1d:
            new = GlobalBatchNorm1d(
                child.num_features, child.eps, child.momentum, child.affine, child.track_running_stats
            )
            new.load_state_dict(child.state_dict())
            for p_new, p_old in zip(new.parameters(), child.parameters()):
                p_new.requires_grad_(p_old.requires_grad)  # momentum heads stay frozen
            setattr(module, name, new)
        else:
            convert_sync_batchnorm(child, device_type)
    return module
