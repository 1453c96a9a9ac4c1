"""Log the loss terms a method exposes (``model.terms``: ``{name: detached scalar tensor}``) as
``train/<name>``, averaged over the same ``log.every`` window as ``train/loss``.

Methods that have no ``terms`` (plain MoCo v3) cost nothing. The bootstrap methods expose e.g.
``ce_vit``, ``ce_agent``, ``kd_loss``, ``hint_loss``, ``hint_weight`` -> ``train/hint_loss`` etc.

Example::

    hooks = Hooks([..., MethodTermsHook()])      # the loop installs it for every run
"""

from __future__ import annotations

from typing import Dict

import torch

from ssl_vit.engine.hooks import Hook, RunState


class MethodTermsHook(Hook):
    name = "method_terms"

    def __init__(self):
        self.sums: Dict[str, torch.Tensor] = {}
        self.count = 0

    def after_step(self, run: RunState, step: int) -> None:
        terms = run.model.terms
        if not terms:
            return
        for k, v in terms.items():
            self.sums[k] = self.sums.get(k, 0.0) + v.float()
        self.count += 1
        if run.step % run.cfg.log.every == 0 or run.step == run.total_steps:
            vals = {f"train/{k}": float(v) / self.count for k, v in self.sums.items()}
            run.record.add(vals)
            self.sums, self.count = {}, 0
