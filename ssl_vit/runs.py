"""A training run as the commands start it: the loop (:func:`ssl_vit.engine.trainer.fit`) with the default
diagnostics (:func:`ssl_vit.diagnostics.default_hooks`) before the caller's hooks, in a claimed run dir and
with the run's CPU thread count. The entry point composes; the loop knows no diagnostics.

Example::

    summary = pretrain(load_config("smoke"), "runs/smoke")       # {'step': ..., 'knn_top1': ..., ...}
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional

from ssl_vit.config.schema import Config
from ssl_vit.core.rundir import claim_run_dir
from ssl_vit.diagnostics import default_hooks
from ssl_vit.engine.cpu import cpu_threads
from ssl_vit.engine.hooks import Hook
from ssl_vit.engine.trainer import fit


def pretrain(
    cfg: Config,
    output_dir: str | Path,
    resume: bool = False,
    force: bool = False,
    hooks: Optional[List[Hook]] = None,
    log=print,
    overwrite: bool = False,
) -> Dict:
    """Run (or resume) MoCo v3 pretraining; returns a summary dict (final step, kNN top-1, paths). A dir that
    holds a run needs ``resume`` or ``overwrite`` (:func:`~ssl_vit.core.rundir.claim_run_dir`). The
    diagnostics (``ssl_vit.diagnostics.default_hooks``) run before ``hooks``."""
    with cpu_threads(cfg.train.threads), claim_run_dir(output_dir, "pretrain", resume, overwrite, log):
        return fit(cfg, output_dir, "pretrain", resume, force, default_hooks(cfg) + list(hooks or []), log)


def train_supervised(
    cfg: Config,
    output_dir: str | Path,
    resume: bool = False,
    force: bool = False,
    hooks: Optional[List[Hook]] = None,
    log=print,
    overwrite: bool = False,
) -> Dict:
    """Run (or resume) supervised training from scratch (bootstrapped with ``model.bootstrap.enabled``);
    returns a summary dict (final step, test top-1, paths). Run-dir claim and hooks as in :func:`pretrain`."""
    with cpu_threads(cfg.train.threads), claim_run_dir(output_dir, "train", resume, overwrite, log):
        return fit(cfg, output_dir, "train", resume, force, default_hooks(cfg) + list(hooks or []), log)
