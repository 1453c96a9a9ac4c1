"""The one supervised loop: train a classifier (features -> head) with cross-entropy for some epochs.

Shared by ``sslvit adapt`` (:func:`ssl_vit.adapt.train.train_candidate`: the whole adapted model as
``features``, an identity head) and the protocol linear probe
(:func:`ssl_vit.evaluation.linear_probe.protocol_probe`: the frozen backbone as ``features``, a ``Linear``
head). Per step: the learning rate of ``lr_at(epoch, step)`` on every parameter group, ``features`` under the
:class:`~ssl_vit.core.precision.Precision`'s autocast (without grad when frozen), the head and the loss in
fp32, and a non-finite loss skips the step (counted, never applied). What to do at the end of an epoch
(score a val or test set) is the caller's ``on_epoch``.

The fast linear probe (``linear_probe.train_logreg_grid``) is another algorithm -- a grid of logistic
regressions trained jointly as one batched matmul on cached features -- and keeps its own loop.

Example::

    cfg = FitConfig(epochs=10, lr_at=lambda epoch, step: 0.1, precision=Precision.resolve("fp32", dev),
                    device=dev, seed=0)
    res = fit_classifier(Classifier(backbone, head, frozen_features=True), opt, batches_of_epoch, cfg)
    res.skipped, res.history, res.steps
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable, List, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from ssl_vit.core.precision import Precision


@dataclass
class Classifier:
    features: nn.Module  # model input (B, C, S, S) -> (B, D) features or (B, K) logits, under autocast
    head: nn.Module  # (B, D) float32 -> (B, K) logits, in fp32 (nn.Identity when features gives logits)
    frozen_features: bool = False  # True: features run without grad and stay in eval mode (linear probe)


@dataclass
class FitConfig:
    epochs: int  # epochs to run (may stop before the schedule's end)
    lr_at: Callable[[int, int], float]  # (epoch, global step) -> learning rate of that step
    precision: Precision  # autocast of the features pass
    device: torch.device
    seed: Optional[int] = None  # reseeds torch's global RNG before epoch 1 (dropout, drop-path)
    progress: bool = False  # a progress bar over epochs
    desc: str = "fit"  # its label


@dataclass
class EpochEnd:
    epoch: int  # 0-based
    step: int  # global steps done so far
    lr: float  # the epoch's last learning rate
    loss: float  # the epoch's last loss (nan when the epoch had no batch)


@dataclass
class StepEnd:
    epoch: int  # 0-based
    step: int  # global index of the step just taken (0-based)
    lr: float
    loss: torch.Tensor  # scalar, float32 (not synchronised: call .item() only when needed)


@dataclass
class FitResult:
    history: List[float] = field(default_factory=list)  # what on_epoch returned, per epoch (None dropped)
    skipped: int = 0  # steps skipped for a non-finite loss
    steps: int = 0  # steps taken, skipped ones included


Batches = Iterable[Tuple[torch.Tensor, torch.Tensor]]


def _forward(clf: Classifier, x: torch.Tensor, precision: Precision) -> torch.Tensor:
    """Model input (B, C, S, S) -> fp32 logits (B, K)."""
    with torch.set_grad_enabled(torch.is_grad_enabled() and not clf.frozen_features), precision.autocast():
        f = clf.features(x)  # (B, D) or (B, K)
    return clf.head(f.float())  # (B, K)


def fit_classifier(
    clf: Classifier,
    optimizer: torch.optim.Optimizer,
    epoch_batches: Callable[[int], Batches],
    cfg: FitConfig,
    *,
    on_step: Optional[Callable[[StepEnd], None]] = None,
    on_epoch: Optional[Callable[[EpochEnd], Optional[float]]] = None,
) -> FitResult:
    """Train ``clf`` with cross-entropy for ``cfg.epochs`` epochs of ``epoch_batches(epoch)``: pairs of model
    input (B, C, S, S) and labels (B,), moved to ``cfg.device`` here. -> :class:`FitResult`.

    ``on_epoch`` runs after every epoch (the model in train mode); a float it returns (e.g. a val top-1)
    goes into ``FitResult.history`` and the progress bar."""
    res = FitResult()
    if cfg.seed is not None:
        torch.manual_seed(cfg.seed)
    bar = tqdm(range(cfg.epochs), desc=cfg.desc, disable=not cfg.progress, leave=False, unit="epoch")
    for epoch in bar:
        clf.head.train()
        if not clf.frozen_features:
            clf.features.train()
        lr, loss = float("nan"), torch.tensor(float("nan"))
        for x, y in epoch_batches(epoch):
            lr = cfg.lr_at(epoch, res.steps)
            for group in optimizer.param_groups:
                group["lr"] = lr
            x, y = x.to(cfg.device), y.to(cfg.device).long()  # (B, C, S, S), (B,)
            loss = F.cross_entropy(_forward(clf, x, cfg.precision), y)
            optimizer.zero_grad(set_to_none=True)
            if torch.isfinite(loss):
                loss.backward()
                optimizer.step()
            else:
                res.skipped += 1
            if on_step is not None:
                on_step(StepEnd(epoch, res.steps, lr, loss.detach()))
            res.steps += 1
        metric = on_epoch(EpochEnd(epoch, res.steps, lr, loss.item())) if on_epoch is not None else None
        if metric is not None:
            res.history.append(metric)
            bar.set_postfix(loss=f"{loss.item():.3f}", metric=f"{metric:.1f}")
    return res
