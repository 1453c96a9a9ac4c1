"""Backbones that change from one training step to the next (a ViTAS superformer samples a sub-network).

A method's :meth:`~ssl_vit.methods.base.Method.begin_step` calls :meth:`PerStepBackbone.begin_step` on each
of its children that subclasses this mixin, before the step's forward; the choice must be a pure function
of ``(seed, step)`` so a resumed run makes the same choices.

Example::

    class Sampled(nn.Module, PerStepBackbone):
        def begin_step(self, step, seed):
            self.width = [32, 64][(seed + step) % 2]
"""

from __future__ import annotations


class PerStepBackbone:
    """Mixin for backbones with a per-step variant (no state, no ``__init__``)."""

    def begin_step(self, step: int, seed: int) -> None:
        """Pick this step's variant from ``(seed, step)`` (default: nothing changes)."""
