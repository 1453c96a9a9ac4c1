"""TensorBoard custom-scalars layout: the stability charts on one page ("CUSTOM SCALARS" tab).

Paper: Chen, Xie, He 2021, "An Empirical Study of Training Self-Supervised Vision Transformers",
Fig. 4: gradient magnitude of the first layer (patch projection) and of the last layer on one chart,
where the first layer's spikes come first. The layout puts ``diag/grad_norm/patch_embed`` next to
every ``diag/grad_norm/block_<i>`` (and first vs last block on its own chart), with the loss, the spike
flag, the kNN monitor and the representation-health curves below.

Charts are TensorBoard "Multiline" charts of tag regexes; the layout is a nested dict
``{category: {chart title: ['Multiline', [tag regex, ...]]}}`` written once per run start with
``SummaryWriter.add_custom_scalars``.

Example::

    writer.add_custom_scalars(stability_layout(depth=12))
"""

from __future__ import annotations

from typing import Dict, List

from ssl_vit.engine.hooks import Hook, RunState


def stability_layout(depth: int) -> Dict[str, Dict[str, List]]:
    last = max(depth - 1, 0)
    return {
        "stability": {
            "grad norm: first layer (patch_embed) vs blocks": [
                "Multiline",
                [r"diag/grad_norm/patch_embed$", r"diag/grad_norm/block_\d+$"],
            ],
            f"grad norm: first layer vs last block (block_{last})": [
                "Multiline",
                [r"diag/grad_norm/patch_embed$", rf"diag/grad_norm/block_{last}$"],
            ],
            "grad norm: total and heads": [
                "Multiline",
                [r"diag/grad_norm/total$", r"diag/grad_norm/(projector|predictor|backbone_other)$"],
            ],
            "update / weight ratio": ["Multiline", [r"diag/update_ratio/.*"]],
            "loss and spikes": ["Multiline", [r"train/loss$", r"diag/spike$"]],
            "kNN monitor": ["Multiline", [r"diag/knn_top1$", r"diag/knn_drop$"]],
        },
        "representation": {
            "RankMe (effective rank)": ["Multiline", [r"diag/rankme$"]],
            "feature std (collapse: 0)": ["Multiline", [r"diag/feature_std$"]],
            "token diversity (mean |cos|, 1 = identical tokens)": ["Multiline", [r"diag/token_diversity.*"]],
            "attention entropy / log N": ["Multiline", [r"diag/attn_entropy/block_\d+$"]],
        },
    }


class LayoutHook(Hook):
    """Writes the layout to the run's TensorBoard (rank 0, TensorBoard on)."""

    name = "diag_tb_layout"

    def on_start(self, run: RunState) -> None:
        tb = getattr(run.logger, "tb", None)
        if tb is None:
            return
        depth = len(getattr(getattr(run.model, "backbone", None), "blocks", []))
        tb.add_custom_scalars(stability_layout(depth))
