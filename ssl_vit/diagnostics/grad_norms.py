"""Gradient norms per parameter group and update-to-weight ratios, every ``log.diag_every`` steps.

Paper: Chen, Xie, He 2021, "An Empirical Study of Training Self-Supervised Vision Transformers",
sec. 4.1 and Fig. 4 (gradient magnitude of the first layer -- the patch projection -- vs the last
layer: the first layer spikes first). The update-to-weight ratio ``||W_after - W_before|| / ||W_before||``
is the usual per-layer learning-rate health check (too large: the layer is being thrown around).

Groups (from the method module's parameter names; the momentum encoder is not tracked)::

    patch_embed   backbone.patch_embed.*          the first layer (frozen or not, see below)
    block_<i>     backbone.blocks.<i>.*
    backbone_other  cls token, final norm, ...
    <head>        every other top-level child with trainable parameters (MoCo v3: projector, predictor)

Shapes: each gradient has its parameter's shape; per step the hook reduces them to one norm per group
``(G,)`` on the device and moves that vector to the host once (one sync per diag step, plus one for
the update ratios after the optimizer step).

A frozen patch projection (MoCo v3 sec. 4.2, ``model.patch_embed.frozen``) gets no gradient. With
``diag.frozen_patch_grad`` (default) the hook switches ``requires_grad`` on for the diag step only,
reads the gradient the projection *would* receive and drops it: the weights never change (the
optimizer does not hold them), and frozen vs trainable runs can be compared on the same chart. Under
DDP that gradient is rank-local (it is not all-reduced).

Tags: ``diag/grad_norm/total`` (the loop's norm over all trained parameters), ``diag/grad_norm/<group>``,
``diag/update_ratio/<group>`` (trained groups only).

Example::

    groups = param_groups(mocov3_model)                 # {'patch_embed': [...], 'block_0': [...], ...}
    norms = group_grad_norms(groups)                    # {'patch_embed': 0.03, 'block_0': 0.5, ...}
"""

from __future__ import annotations

import re
from typing import Dict, List, Optional

import torch
import torch.nn as nn

from ssl_vit.diagnostics.spikes import is_diag_step
from ssl_vit.engine.hooks import Hook, RunState

_BLOCK = re.compile(r"^backbone\.blocks\.(\d+)\.")


def group_of(name: str) -> Optional[str]:
    """Parameter name of the method module -> group name (None: not tracked)."""
    if name.startswith("momentum_"):
        return None
    if name.startswith("backbone.patch_embed."):
        return "patch_embed"
    m = _BLOCK.match(name)
    if m:
        return f"block_{int(m.group(1))}"
    if name.startswith("backbone."):
        return "backbone_other"
    return name.split(".", 1)[0]


def param_groups(model: nn.Module, include_frozen_patch_embed: bool = True) -> Dict[str, List[nn.Parameter]]:
    """{group: [parameters]} of the trainable parameters (+ the frozen patch projection when asked)."""
    groups: Dict[str, List[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        g = group_of(name)
        if g is None or (not p.requires_grad and not (include_frozen_patch_embed and g == "patch_embed")):
            continue
        groups.setdefault(g, []).append(p)
    return groups


def _group_sq_sums(tensors: List[torch.Tensor], index: torch.Tensor, n_groups: int) -> torch.Tensor:
    """Sum of squared norms of ``tensors`` per group -> (G,), on the device, no host sync."""
    norms = torch.stack(torch._foreach_norm(tensors)).float()  # (P,)
    out = torch.zeros(n_groups, device=norms.device, dtype=torch.float32)
    return out.index_add_(0, index.to(norms.device), norms.square())


@torch.no_grad()
def group_grad_norms(groups: Dict[str, List[nn.Parameter]]) -> Dict[str, float]:
    """{group: L2 norm of its gradients} (groups without gradients are left out). One host sync."""
    names, grads, idx = [], [], []
    for g, params in groups.items():
        gs = [p.grad for p in params if p.grad is not None]
        if gs:
            idx += [len(names)] * len(gs)
            names.append(g)
            grads += gs
    if not grads:
        return {}
    sq = _group_sq_sums(grads, torch.tensor(idx), len(names))
    return dict(zip(names, sq.sqrt().tolist()))


class GradNormHook(Hook):
    """Per-group gradient norms (after backward) and update-to-weight ratios (after the step)."""

    name = "diag_grad_norms"

    def __init__(self, cfg):
        self.cfg = cfg
        self.groups: Dict[str, List[nn.Parameter]] = {}
        self.frozen: List[nn.Parameter] = []
        self._before: Optional[List[torch.Tensor]] = None
        self._norms: Dict[str, float] = {}

    def on_start(self, run: RunState) -> None:
        self.groups = param_groups(run.model, self.cfg.diag.frozen_patch_grad)
        self.frozen = [p for ps in self.groups.values() for p in ps if not p.requires_grad]
        trained = [(g, p) for g, ps in self.groups.items() for p in ps if p.requires_grad]
        self.trained = [p for _, p in trained]
        self.trained_names = list(dict.fromkeys(g for g, _ in trained))
        self.trained_index = torch.tensor([self.trained_names.index(g) for g, _ in trained])
        self._arm(is_diag_step(run, run.step))

    def _arm(self, on: bool) -> None:
        """Before a diag step's forward: let the frozen patch projection receive a gradient (else not)."""
        for p in self.frozen:
            p.grad = None  # never left for an update (the optimizer does not hold it)
            p.requires_grad_(on)

    def after_backward(self, run: RunState, step: int) -> None:
        if is_diag_step(run, step):
            self._norms = group_grad_norms(self.groups)
            run.group_grad_norms = dict(self._norms)
            if self.trained:
                self._before = [p.detach().clone() for p in self.trained]
        self._arm(is_diag_step(run, step + 1))
        return None

    def on_end(self, run: RunState) -> None:
        self._arm(False)

    @torch.no_grad()
    def after_step(self, run: RunState, step: int) -> None:
        if not is_diag_step(run, step):
            return
        vals = {"diag/grad_norm/total": float(run.grad_norm)}
        vals.update({f"diag/grad_norm/{g}": v for g, v in self._norms.items()})
        if self._before is not None:
            delta = torch._foreach_sub([p.detach() for p in self.trained], self._before)
            n = len(self.trained_names)
            upd = _group_sq_sums(delta, self.trained_index, n)
            w = _group_sq_sums(self._before, self.trained_index, n)
            ratio = (upd.sqrt() / w.sqrt().clamp_min(1e-12)).tolist()
            vals.update({f"diag/update_ratio/{g}": r for g, r in zip(self.trained_names, ratio)})
            self._before = None
        run.record.add(vals)
        self._norms = {}
