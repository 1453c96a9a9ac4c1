"""Linear probe of a frozen backbone: CLS token after the final norm -> one linear layer.

(``probe.n_last_blocks`` / ``probe.avgpool_patchtokens`` read DINO's features instead -- CLS of the last
blocks, + patch-token mean: ``ssl_vit/evaluation/pooling.py`` -- in both modes.)

Two modes (``--set probe.mode=...``):

* ``fast`` (default): multinomial logistic regression on cached features. Features are standardised
  with the fitting set's statistics; a small grid of AdamW learning rates x weight decays is trained
  *at once* (one batched matmul per step, every grid point its own parameter group), the grid point
  with the best accuracy on a held-out ``probe.val_fraction`` of train is refit on all of train and
  scored on test. Seconds on a CPU once the features exist.
* ``protocol``: MoCo v3 ``main_lincls``: frozen backbone in eval mode, a ``Linear`` head (weights
  N(0, 0.01), zero bias), SGD momentum 0.9, no weight decay, lr = 3 x batch/256, cosine over 90 epochs
  per epoch with no warm-up, random-resized-crop (0.08-1) + horizontal flip on train, the eval
  transform on test. The backbone weights are checked bit for bit after training (the official
  code's ``sanity_check``). Both the **last-epoch** accuracy (``top1``, the honest number) and the
  **best** epoch's (``top1_best``, chosen on the test set, hence optimistic) are reported.

Example::

    res = fast_probe(train_feats, train_labels, test_feats, test_labels, ProbeConfig())
    res["top1"], res["lr"], res["weight_decay"]
"""

from __future__ import annotations

import math
import time
from contextlib import contextmanager
from typing import Callable, Dict, List, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.transforms import v2

from ssl_vit.config.schema import ProbeConfig
from ssl_vit.core.attention import fused_attention
from ssl_vit.core.input_spec import InputSpec
from ssl_vit.core.precision import Precision
from ssl_vit.data.images import TensorImages
from ssl_vit.data.labelled import LabelledFiles, has_labels, labelled_only, load_eval_splits
from ssl_vit.errors import SslvitError
from ssl_vit.evaluation.cache import FeatureCache
from ssl_vit.evaluation.fit import Classifier, EpochEnd, FitConfig, fit_classifier
from ssl_vit.evaluation.pooling import pooling_name, probe_features
from ssl_vit.transforms.eval import to_model_input


# ----------------------------------------------------------------------------------------- fast mode
@contextmanager
def _one_thread():
    """The probe's ops are small (a few thousand x D); on a shared CPU, OpenMP synchronisation across threads
    cost more than it gave (measured 29 s with 2 threads vs 4.5 s with 1 for the same grid under load)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _standardise(fit: torch.Tensor, *others: torch.Tensor):
    mean, std = fit.mean(0, keepdim=True), fit.std(0, keepdim=True).clamp_min(1e-6)
    return [(t - mean) / std for t in (fit, *others)]


def train_logreg_grid(
    x: torch.Tensor,
    y: torch.Tensor,
    num_classes: int,
    lrs: List[float],
    wds: List[float],
    epochs: int,
    batch_size: int,
    seed: int = 0,
):
    """Train one softmax classifier per (lr, wd) pair jointly. -> weights (G, D, C), biases (G, C), grid.

    Why by hand: neither torch nor faiss has a (multi-config) logistic regression, and scikit-learn is not a
    dependency; a grid of G configs trained as one batched matmul costs about one config's Python overhead.
    """
    n, d = x.shape
    batch_size = min(batch_size, max(32, math.ceil(n / 20)))  # small sets: still >= 20 steps per epoch
    grid = [(lr, wd) for lr in lrs for wd in wds]
    ws = [nn.Parameter(torch.zeros(d, num_classes)) for _ in grid]
    bs = [nn.Parameter(torch.zeros(num_classes)) for _ in grid]
    groups = [{"params": [w], "lr": lr, "weight_decay": wd} for w, (lr, wd) in zip(ws, grid)] + [
        {"params": [b], "lr": lr, "weight_decay": 0.0} for b, (lr, wd) in zip(bs, grid)
    ]
    opt = torch.optim.AdamW(groups, betas=(0.9, 0.999))
    steps_per_epoch = max(1, math.ceil(n / batch_size))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * steps_per_epoch)
    g = torch.Generator().manual_seed(seed)
    y = y.long()
    for _ in range(epochs):
        perm = torch.randperm(n, generator=g)
        for i in range(0, n, batch_size):
            idx = perm[i : i + batch_size]
            xb, yb = x[idx], y[idx]  # (b, D), (b,)
            logits = torch.einsum("bd,gdc->gbc", xb, torch.stack(ws)) + torch.stack(bs)[:, None]  # (G, b, C)
            # sum over grid points of each one's mean CE: gradients stay independent per grid point
            loss = F.cross_entropy(logits.reshape(-1, num_classes), yb.repeat(len(grid)), reduction="sum") / len(yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    return torch.stack(ws).detach(), torch.stack(bs).detach(), grid


@torch.no_grad()
def _grid_accuracy(w: torch.Tensor, b: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    pred = (torch.einsum("nd,gdc->gnc", x, w) + b[:, None]).argmax(-1)  # (G, N)
    return 100.0 * (pred == y.long()[None]).float().mean(1)  # (G,)


def fast_probe(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    cfg: ProbeConfig,
    seed: int = 0,
    log: Callable[[str], None] = lambda m: None,
) -> Dict:
    lrs, wds = list(cfg.fast_lrs), list(cfg.fast_weight_decays)
    n = train_x.shape[0]
    num_classes = int(max(train_y.max(), test_y.max())) + 1
    t0 = time.perf_counter()
    # 1) choose (lr, wd) on a held-out part of train
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n, generator=g)
    n_val = max(1, int(round(n * cfg.val_fraction)))
    if n - n_val < 2:
        raise SslvitError(f"linear probe needs more training images than {n}; use a larger dataset or eval.max_train")
    va, fi = perm[:n_val], perm[n_val:]
    xf, xv = _standardise(train_x[fi], train_x[va])
    with _one_thread():
        w, b, grid = train_logreg_grid(
            xf, train_y[fi], num_classes, lrs, wds, cfg.fast_epochs, cfg.fast_batch_size, seed
        )
    val_acc = _grid_accuracy(w, b, xv, train_y[va])
    best = int(val_acc.argmax())
    lr, wd = grid[best]
    sweep = [{"lr": a, "weight_decay": c, "val_top1": round(v, 3)} for (a, c), v in zip(grid, val_acc.tolist())]
    log(
        "linear probe (fast): val top-1 per (lr, wd): "
        + ", ".join(f"({p['lr']:g}, {p['weight_decay']:g})={p['val_top1']:.2f}" for p in sweep)
        + f"; chose lr={lr:g} wd={wd:g}"
    )
    # 2) refit the chosen point on all of train, score on test
    xtr, xte = _standardise(train_x, test_x)
    with _one_thread():
        w, b, _ = train_logreg_grid(xtr, train_y, num_classes, [lr], [wd], cfg.fast_epochs, cfg.fast_batch_size, seed)
    top1 = float(_grid_accuracy(w, b, xte, test_y)[0])
    train_top1 = float(_grid_accuracy(w, b, xtr, train_y)[0])
    return {
        "top1": top1,
        "train_top1": round(train_top1, 3),
        "lr": lr,
        "weight_decay": wd,
        "val_top1": round(float(val_acc[best]), 3),
        "n_val": n_val,
        "sweep": sweep,
        "epochs": cfg.fast_epochs,
        "fit_s": round(time.perf_counter() - t0, 3),
    }


# ------------------------------------------------------------------------------------- protocol mode
def random_resized_crop_flip(x: torch.Tensor, scale, g: torch.Generator, ratio=(3 / 4, 4 / 3)) -> torch.Tensor:
    """Per-sample random-resized-crop + horizontal flip of a float batch, as one ``affine_grid``/``grid_sample``.

    Why by hand: torchvision draws one crop per call (a whole batch would share it) and per-sample
    torchvision on in-memory tensors is ~100x slower; this is the crop of ``transforms.batched`` in its
    simplest form (crop sides clipped to the image instead of torchvision's 10 retries)."""
    b = x.shape[0]
    area = torch.rand(b, generator=g) * (scale[1] - scale[0]) + scale[0]
    logr = torch.rand(b, generator=g) * (math.log(ratio[1]) - math.log(ratio[0])) + math.log(ratio[0])
    w = torch.sqrt(area * logr.exp()).clamp(max=1.0)  # fraction of the width
    h = torch.sqrt(area / logr.exp()).clamp(max=1.0)
    cx = (torch.rand(b, generator=g) * 2 - 1) * (1 - w)
    cy = (torch.rand(b, generator=g) * 2 - 1) * (1 - h)
    flip = torch.where(torch.rand(b, generator=g) < 0.5, -1.0, 1.0)
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2], theta[:, 1, 1], theta[:, 1, 2] = w * flip, cx, h, cy
    grid = F.affine_grid(theta.to(x.device), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def _train_batches(data, input_spec: InputSpec, cfg: ProbeConfig, epoch: int, seed: int, num_workers: int):
    """Yield (model input (B, C, S, S), labels) for one epoch of augmented training images."""
    g = torch.Generator().manual_seed(seed * 1000003 + epoch)
    if isinstance(data, TensorImages):
        perm = torch.randperm(len(data), generator=g)
        for i in range(0, len(data), cfg.batch_size):
            idx = perm[i : i + cfg.batch_size]
            x = to_model_input(data.images[idx], input_spec)  # (B, C, S, S) normalised
            yield random_resized_crop_flip(x, tuple(cfg.crop_scale), g), data.targets[idx]
    else:
        torch.manual_seed(seed * 1000003 + epoch)  # torchvision draws from the global RNG
        train_t = v2.Compose(
            [
                v2.ToImage(),
                v2.RandomResizedCrop(int(input_spec.img_size), scale=tuple(cfg.crop_scale), antialias=True),
                v2.RandomHorizontalFlip(),
            ]
        )
        loader = torch.utils.data.DataLoader(
            LabelledFiles(data, train_t), batch_size=cfg.batch_size, shuffle=True, num_workers=num_workers, generator=g
        )
        for x, y in loader:
            yield to_model_input(x, input_spec), y


def protocol_probe(
    model: nn.Module,
    train,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    input_spec: InputSpec,
    cfg: ProbeConfig,
    *,
    seed: int = 0,
    device: Optional[torch.device] = None,
    precision: Optional[Precision] = None,
    num_workers: int = 2,
    progress: bool = False,
    log: Callable[[str], None] = lambda m: None,
) -> Dict:
    """MoCo v3 main_lincls on a frozen backbone (:func:`~ssl_vit.evaluation.fit.fit_classifier`); test accuracy
    from (cached) test features ``test_x`` (M, D) every epoch. ``precision``: autocast of the backbone (None: fp32)."""
    device = device or next(model.parameters()).device
    precision = precision or Precision("fp32", device)
    t0 = time.perf_counter()
    train = labelled_only(train)
    num_classes = int(max(train.targets.max(), test_y.max())) + 1
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    dim = test_x.shape[1]
    torch.manual_seed(seed)
    head = nn.Linear(dim, num_classes).to(device)
    nn.init.normal_(head.weight, std=0.01)
    nn.init.zeros_(head.bias)
    init_lr = cfg.lr * cfg.batch_size / 256
    opt = torch.optim.SGD(head.parameters(), lr=init_lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    test_x, test_y = test_x.to(device), test_y.to(device).long()

    def lr_of(epoch: int, step: int) -> float:
        return init_lr * 0.5 * (1.0 + math.cos(math.pi * epoch / cfg.epochs))  # main_lincls: per epoch

    def on_epoch(e: EpochEnd) -> float:
        head.eval()
        with torch.no_grad():
            acc = 100.0 * (head(test_x).argmax(1) == test_y).float().mean().item()
        log(
            f"linear probe (protocol) epoch {e.epoch + 1}/{cfg.epochs}: lr {e.lr:.4g}, loss {e.loss:.4f}, "
            f"test top-1 {acc:.2f}"
        )
        return acc

    fit = FitConfig(cfg.epochs, lr_of, precision, device, progress=progress, desc="linear probe")
    with fused_attention(model):
        res = fit_classifier(
            Classifier(model, head, frozen_features=True),
            opt,
            lambda epoch: _train_batches(train, input_spec, cfg, epoch, seed, num_workers),
            fit,
            on_epoch=on_epoch,
        )
    if res.skipped:
        log(f"warning: linear probe: {res.skipped} steps with a non-finite loss were skipped")
    history = res.history
    # main_lincls sanity_check: the frozen backbone must be bit-identical after training
    after = model.state_dict()
    changed = [k for k, v in before.items() if not torch.equal(v, after[k])]
    if changed:
        raise RuntimeError(
            f"linear probe changed frozen backbone weights ({changed[0]}, {len(changed)} tensors): a bug"
        )
    best = max(range(len(history)), key=lambda i: history[i])
    return {
        "top1": history[-1],
        "top1_last": history[-1],
        "top1_best": history[best],
        "best_epoch": best + 1,
        "top1_is": "last epoch (top1_best is the best epoch on the test set: optimistic, chosen on test)",
        "epochs": cfg.epochs,
        "lr": init_lr,
        "batch_size": cfg.batch_size,
        "history": [round(h, 3) for h in history],
        "skipped_steps": res.skipped,
        "backbone_unchanged": True,
        "fit_s": round(time.perf_counter() - t0, 3),
    }


# ------------------------------------------------------------------------------------------ driver
def run_linear_probe(
    loaded,
    dataset: str,
    cfg,
    cache=None,
    device=None,
    precision: Optional[Precision] = None,
    log: Callable[[str], None] = lambda m: None,
) -> Dict:
    """Features (cached) of the train/test splits -> fast or protocol probe. ``precision``: autocast of the
    backbone (None: fp32). Returns the results dict."""
    t0 = time.perf_counter()
    cache = cache if cache is not None else FeatureCache(None)
    n_events = len(cache.events)
    device = device or next(loaded.model.parameters()).device
    splits = load_eval_splits(dataset, cfg.data, cfg.eval.max_train, cfg.eval.max_test)
    train, test, train_split, test_split = splits.train, splits.test, splits.train_split, splits.test_split
    if not has_labels(train) or test.targets is None:
        raise SslvitError(
            f"dataset '{dataset}' has no labels in '{train_split}'/'{test_split}'; the linear probe "
            f"needs a labelled dataset"
        )
    p = cfg.probe
    features = pooling_name(p.n_last_blocks, p.avgpool_patchtokens)
    model = probe_features(loaded.model, p.n_last_blocks, p.avgpool_patchtokens)
    kw = dict(
        weights_hash=loaded.weights_hash,
        dataset=dataset,
        batch_size=cfg.eval.batch_size,
        device=device,
        precision=precision,
        progress=cfg.log.progress,
        pooling=features,
        num_workers=cfg.data.num_workers,
    )
    fte = cache.features(
        model, test, loaded.input_spec, split=test_split, subset=f"{cfg.eval.max_test}:1", desc="test features", **kw
    )
    yte = test.targets
    if p.mode == "fast":
        ftr = cache.features(
            model,
            train,
            loaded.input_spec,
            split=train_split,
            subset=f"{cfg.eval.max_train}:0",
            desc="train features",
            **kw,
        )
        keep = train.targets >= 0
        res = fast_probe(ftr[keep], train.targets[keep], fte, yte, p, cfg.seed, log)
    else:
        res = protocol_probe(
            model,
            train,
            fte,
            yte,
            loaded.input_spec,
            p,
            seed=cfg.seed,
            device=device,
            precision=precision,
            num_workers=cfg.data.num_workers,
            progress=cfg.log.progress,
            log=log,
        )
    res.update(cache.summary(n_events))
    res.update(
        dataset=dataset,
        mode=p.mode,
        metric=f"linear_{p.mode}",
        features=features,
        feature_dim=int(fte.shape[1]),
        n_train=int((train.targets >= 0).sum()),
        n_test=len(test),
        wall_s=round(time.perf_counter() - t0, 3),
    )
    return res
