"""`sslvit adapt`: train any adaptation method on any labelled dataset, with selection on val and one test.

Protocol (VTAB-1k, Zhai et al. 2019; hyper-parameters of the Convpass code, PETL-ViT ``convpass/vtab``):

1. **Select** (``adapt.select_on_val``): for every scale ``s`` in ``adapt.scales`` (methods with a scale:
   convpass, convpass_attn, lora) and every conv init in ``adapt.conv_init`` (convpass), train on
   ``train800`` for ``adapt.epochs`` epochs and score ``val200`` after every epoch; keep the
   ``(s, init, epoch)`` with the best val top-1 (ties: first in grid order, then the earlier epoch).
2. **Retrain** on ``train800val200`` with that ``(s, init)`` and the same schedule, stopping after the
   chosen epoch, and **report test once**. The published Convpass code instead trains on
   train800val200 and keeps the best *test* accuracy over epochs (checked every 10), which selects on
   the test set; sslvit does not.

Split names per dataset kind: ``vtab`` (train800 / val200 / train800val200 / test), ``fewshot`` (select on
train / val, retrain on train: the val list is not part of the k shots), any other kind: a fixed
``adapt.val_fraction`` of its train split is held out for selection, the retrain uses all of train.

Training (the same for every method, :mod:`ssl_vit.adapt.methods` decides what trains): AdamW
(``adapt.lr`` 1e-3, ``adapt.weight_decay`` 1e-4 on every trainable tensor, as the authors), batch 64
with the last incomplete batch dropped, per-step linear warm-up for ``adapt.warmup_epochs`` then cosine
to ``adapt.min_lr`` (the authors step timm's scheduler per epoch), cross-entropy, no augmentation; the
backbone's own input size and normalisation (images squashed to ``img_size``, as the VTAB code), and
``adapt.drop_path_rate`` stochastic depth in the backbone (authors: 0.1). A non-finite loss skips the step.

Example::

    res = run_adapt("runs/fm", "vtab:/data/vtab-1k/cifar", load_config("vtab_convpass", validate_cfg=False),
                    Path("runs/adapt"), log=print)
    res["top1"], res["scale"], res["epoch"], res["trainable_share"]
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Tuple

import torch
import torch.nn as nn
from torch.utils.data import DataLoader
from torchvision.transforms import InterpolationMode, v2

from ssl_vit.adapt.checkpoint import save_adapter
from ssl_vit.adapt.inject import state_sha256
from ssl_vit.adapt.methods import build_adapted_model, get_method, trainable_summary
from ssl_vit.checkpoints import load_backbone
from ssl_vit.config.loading import to_dict
from ssl_vit.core.attention import fused_attention
from ssl_vit.core.input_spec import InputSpec
from ssl_vit.core.precision import Precision, resolve_device
from ssl_vit.data.images import TensorImages
from ssl_vit.data.labelled import LabelledFiles, labelled_only, load_eval_splits, require_labels, subsample
from ssl_vit.data.specs import load_dataset, parse_spec
from ssl_vit.engine.logger import RunLogger
from ssl_vit.engine.schedules import lr_at
from ssl_vit.errors import SslvitError
from ssl_vit.evaluation.fit import Classifier, EpochEnd, FitConfig, StepEnd, fit_classifier
from ssl_vit.evaluation.runner import describe_backbone
from ssl_vit.transforms.eval import to_model_input

IN_MEMORY_BYTES = 2 << 30  # file datasets up to this size (decoded, at the model's size) are decoded once


# ----------------------------------------------------------------------------------------------- data
@dataclass
class ProtocolSplits:
    select_train: object  # TensorImages | FileImages
    select_val: object
    final_train: object
    test: object
    names: Dict[str, str]  # which split each one is, for results.json
    num_classes: int


def _labelled(data, what: str):
    return labelled_only(require_labels(data, what, "sslvit adapt"))


def protocol_splits(
    spec: str, data_cfg, val_fraction: float, seed: int = 0, max_train: int = 0, max_test: int = 0
) -> ProtocolSplits:
    """The four sets of the protocol for any dataset spec (see the module docstring)."""
    kind = parse_spec(spec).kind
    if kind in ("vtab", "fewshot"):
        names = (
            dict(select_train="train800", select_val="val200", final_train="train800val200", test="test")
            if kind == "vtab"
            else dict(select_train="train", select_val="val", final_train="train", test="test")
        )
        sets = {k: _labelled(load_dataset(spec, n, data_cfg), f"'{spec}' split '{n}'") for k, n in names.items()}
        sets["test"] = subsample(sets["test"], max_test, 1)
    else:
        ev = load_eval_splits(spec, data_cfg, max_train, max_test)
        tr, te = ev.train_split, ev.test_split
        train = _labelled(ev.train, f"'{spec}' split '{tr}'")
        n_val = max(1, int(round(len(train) * val_fraction)))
        if len(train) - n_val < 2:
            raise SslvitError(
                f"'{spec}' has {len(train)} training images, too few to hold out a val set; use a "
                f"larger dataset or eval.max_train"
            )
        perm = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))
        sets = dict(
            select_train=train.subset(perm[n_val:].sort().values),
            select_val=train.subset(perm[:n_val].sort().values),
            final_train=train,
            test=_labelled(ev.test, f"'{spec}' split '{te}'"),
        )
        names = dict(
            select_train=f"{tr} minus {n_val} held out", select_val=f"{n_val} held out of {tr}", final_train=tr, test=te
        )
    num_classes = 1 + max(int(s.targets.max()) for s in sets.values())
    num_classes = max(num_classes, len(getattr(sets["final_train"], "classes", []) or []))
    return ProtocolSplits(**sets, names=names, num_classes=num_classes)


def squash_transform(img_size: int):
    """Resize to ``(img_size, img_size)`` without cropping (the VTAB code's bicubic resize) -> uint8 tensor."""
    return v2.Compose(
        [v2.ToImage(), v2.Resize((img_size, img_size), interpolation=InterpolationMode.BICUBIC, antialias=True)]
    )


def in_memory(data, img_size: int, num_workers: int = 2):
    """A small :class:`FileImages` decoded once into :class:`TensorImages` (no augmentation: every epoch
    would decode the same pixels); tensors and large file sets are returned as they are."""
    if isinstance(data, TensorImages) or len(data) * 3 * img_size * img_size > IN_MEMORY_BYTES:
        return data
    loader = DataLoader(LabelledFiles(data, squash_transform(img_size)), batch_size=256, num_workers=num_workers)
    xs, ys = zip(*loader)
    return TensorImages(torch.cat(xs), torch.cat(ys).long(), list(data.classes), data.name)


def batches(
    data,
    batch_size: int,
    img_size: int,
    order: Optional[torch.Generator] = None,
    drop_last: bool = False,
    num_workers: int = 2,
) -> Iterable[Tuple[torch.Tensor, torch.Tensor]]:
    """uint8 ``(B, C, H, W)`` images and labels; shuffled with ``order`` when given."""
    n = len(data)
    if isinstance(data, TensorImages):
        idx = torch.randperm(n, generator=order) if order is not None else torch.arange(n)
        stop = n - n % batch_size if drop_last and n >= batch_size else n
        for i in range(0, stop, batch_size):
            j = idx[i : i + batch_size]
            yield data.images[j], data.targets[j]
        return
    yield from DataLoader(
        LabelledFiles(data, squash_transform(img_size)),
        batch_size=batch_size,
        shuffle=order is not None,
        generator=order,
        drop_last=drop_last and n >= batch_size,
        num_workers=num_workers,
    )


@torch.inference_mode()
def evaluate(model, data, input_spec: InputSpec, batch_size: int, device, precision, num_workers: int = 2) -> float:
    """Top-1 (percent) of ``model`` on ``data``, in eval mode."""
    was = model.training
    model.eval()
    correct = total = 0
    with fused_attention(model):
        for x, y in batches(data, batch_size, int(input_spec.img_size), num_workers=num_workers):
            x = to_model_input(x.to(device), input_spec)  # (B, C, S, S)
            with precision.autocast():
                pred = model(x).argmax(1)
            correct += int((pred.cpu() == y).sum())
            total += len(y)
    model.train(was)
    return 100.0 * correct / max(1, total)


# ---------------------------------------------------------------------------------------------- training
@dataclass
class Candidate:
    scale: Optional[float]  # None: the method has no scale
    conv_init: Optional[str]  # None: the method has no conv

    @property
    def tag(self) -> str:
        parts = ([f"s{self.scale:g}"] if self.scale is not None else []) + (
            [self.conv_init] if self.conv_init is not None else []
        )
        return "_".join(parts) or "default"


def candidates(acfg) -> List[Candidate]:
    """The (scale, conv init) grid searched on val for ``acfg.method``."""
    m = get_method(acfg.method)
    scales = list(acfg.scales) if m.uses_scale else [None]
    inits = list(acfg.conv_init) if m.uses_conv_init else [None]
    return [Candidate(s, i) for s in scales for i in inits]


@dataclass
class AdaptRun:
    """What the training of every candidate shares (device, precision, logging, evaluation)."""

    input_spec: InputSpec  # the backbone's input (img_size, in_chans, mean, std)
    device: torch.device
    precision: Precision
    seed: int
    eval_batch: int = 512
    num_workers: int = 2
    logger: Optional[RunLogger] = None
    progress: bool = False
    log: Callable[[str], None] = lambda m: None


def train_candidate(
    backbone, acfg, cand: Candidate, num_classes: int, train, epochs: int, run: AdaptRun, val=None, tag: str = ""
):
    """Build the adapted model and train it for ``epochs`` of an ``acfg.epochs``-long schedule
    (:func:`~ssl_vit.evaluation.fit.fit_classifier`; scored on ``val`` after every epoch when given).
    -> (model, val top-1 after each epoch (empty without ``val``), skipped non-finite steps)."""
    model = build_adapted_model(
        backbone,
        acfg.method,
        num_classes,
        acfg,
        1.0 if cand.scale is None else cand.scale,
        cand.conv_init or "xavier",
        run.seed,
    )
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=acfg.lr, weight_decay=acfg.weight_decay)
    bs = acfg.batch_size
    per_epoch = max(1, len(train) // bs) if len(train) >= bs else 1
    total, warmup = acfg.epochs * per_epoch, int(round(acfg.warmup_epochs * per_epoch))
    size = int(run.input_spec.img_size)

    def epoch_batches(epoch: int):
        order = torch.Generator().manual_seed(run.seed * 1000003 + epoch)
        for x, y in batches(train, bs, size, order, drop_last=True, num_workers=run.num_workers):
            yield to_model_input(x.to(run.device), run.input_spec), y  # (B, C, S, S), (B,)

    def on_step(s: StepEnd) -> None:
        if run.logger is not None and s.step % 10 == 0:
            run.logger.log(s.step, {f"adapt/{tag}/loss": s.loss.item(), f"adapt/{tag}/lr": s.lr})

    def on_epoch(e: EpochEnd) -> Optional[float]:
        if val is None:
            return None
        acc = evaluate(model, val, run.input_spec, run.eval_batch, run.device, run.precision, run.num_workers)
        if run.logger is not None:
            run.logger.log(e.step, {f"adapt/{tag}/val_top1": acc}, epoch=e.epoch + 1)
        return acc

    fit = FitConfig(
        epochs,
        lambda epoch, step: lr_at(step, total, acfg.lr, warmup, acfg.min_lr),
        run.precision,
        run.device,
        seed=run.seed,
        progress=run.progress,
        desc=f"{acfg.method} {tag}",
    )
    res = fit_classifier(Classifier(model, nn.Identity()), opt, epoch_batches, fit, on_step=on_step, on_epoch=on_epoch)
    if res.skipped:
        run.log(f"warning: {tag}: {res.skipped} steps with a non-finite loss were skipped")
    return model, res.history, res.skipped


def select_on_val(backbone, acfg, splits: ProtocolSplits, run: AdaptRun) -> Tuple[Candidate, int, float, List[Dict]]:
    """Grid over candidates x epochs on (select_train, select_val). -> (candidate, epoch, val top-1, table)."""
    table, best = [], None
    for cand in candidates(acfg):
        _, hist, skipped = train_candidate(
            backbone,
            acfg,
            cand,
            splits.num_classes,
            splits.select_train,
            acfg.epochs,
            run,
            splits.select_val,
            f"select_{cand.tag}",
        )
        e = max(range(len(hist)), key=lambda i: (hist[i], -i))
        table.append(
            {
                "scale": cand.scale,
                "conv_init": cand.conv_init,
                "best_epoch": e + 1,
                "best_val_top1": round(hist[e], 3),
                "last_val_top1": round(hist[-1], 3),
                "val_history": [round(h, 2) for h in hist],
                "skipped_steps": skipped,
            }
        )
        run.log(
            f"select {acfg.method} {cand.tag}: best val top-1 {hist[e]:.2f} at epoch {e + 1}/{acfg.epochs} "
            f"(last {hist[-1]:.2f})"
        )
        if best is None or hist[e] > best[2]:
            best = (cand, e + 1, hist[e])
    return best[0], best[1], best[2], table


def run_adapt(
    checkpoint: str,
    dataset: str,
    cfg,
    out_dir: Path,
    model_overrides: Iterable[str] = (),
    log: Callable[[str], None] = lambda m: None,
) -> Dict:
    """Load the backbone, select on val, retrain, test once, save the adapter. -> the results dict."""
    t0 = time.perf_counter()
    acfg = cfg.adapt
    overrides = list(model_overrides)
    if not any(o.split("=", 1)[0].strip() == "model.drop_path_rate" for o in overrides):
        overrides.append(f"model.drop_path_rate={acfg.drop_path_rate}")
    device = resolve_device(cfg.train.device)
    precision = Precision.resolve(cfg.train.precision, device)
    loaded = load_backbone(checkpoint, overrides, device.type)
    for note in loaded.notes:
        if not note.startswith("overridden: model.drop_path_rate"):
            log(f"note: {note}")
    backbone = loaded.model.to(device)
    backbone_hash = state_sha256(backbone.state_dict())
    input_spec = loaded.input_spec
    size, workers = int(input_spec.img_size), cfg.data.num_workers
    splits = protocol_splits(dataset, cfg.data, acfg.val_fraction, cfg.seed, cfg.eval.max_train, cfg.eval.max_test)
    for k in ("select_train", "select_val", "final_train"):
        setattr(splits, k, in_memory(getattr(splits, k), size, workers))
    logger = RunLogger(out_dir, enabled=True, tensorboard=cfg.log.tensorboard)
    run = AdaptRun(input_spec, device, precision, cfg.seed, cfg.eval.batch_size, workers, logger, cfg.log.progress, log)
    try:
        if acfg.select_on_val:
            cand, epoch, val_top1, table = select_on_val(backbone, acfg, splits, run)
            log(
                f"chose {cand.tag} and epoch {epoch}/{acfg.epochs} on {splits.names['select_val']} "
                f"(val top-1 {val_top1:.2f}); retraining on {splits.names['final_train']}"
            )
        else:
            cand, epoch, val_top1, table = candidates(acfg)[0], acfg.epochs, None, []
        model, _, skipped = train_candidate(
            backbone, acfg, cand, splits.num_classes, splits.final_train, epoch, run, tag="final"
        )
        top1 = evaluate(model, splits.test, input_spec, cfg.eval.batch_size, device, precision, workers)
        logger.log(0, {"adapt/test_top1": top1})
    finally:
        logger.close()
    params = trainable_summary(model)
    info = dict(
        method=acfg.method,
        scale=cand.scale,
        conv_init=cand.conv_init,
        num_classes=splits.num_classes,
        adapt_config=to_dict(acfg),
        model_config=to_dict(loaded.model_cfg),
        data_config=input_spec.to_dict(),
        checkpoint=loaded.source,
        dataset=dataset,
    )
    if acfg.save_adapter:
        save_adapter(Path(out_dir) / "adapter.safetensors", model, backbone_hash, info)
    res = {
        "top1": top1,
        "dataset": dataset,
        "checkpoint": loaded.source,
        "method": acfg.method,
        "metric": f"adapt_{acfg.method}",
        "n_train": len(splits.final_train),
        "n_test": len(splits.test),
        "n_select_train": len(splits.select_train),
        "n_val": len(splits.select_val),
        "num_classes": splits.num_classes,
        "splits": splits.names,
        **params,
        "scale": cand.scale,
        "conv_init": cand.conv_init,
        "epoch": epoch,
        "epochs": acfg.epochs,
        "val_top1": None if val_top1 is None else round(val_top1, 3),
        "selection": table,
        "skipped_steps_final": skipped,
        "backbone_sha256": backbone_hash,
        "protocol": (
            "scale/init and epoch chosen on val, retrained on the final train split, test evaluated once"
            if acfg.select_on_val
            else f"trained {acfg.epochs} epochs on the final train split with the "
            f"first candidate, last epoch tested once"
        ),
        "adapt_config": to_dict(acfg),
        "precision": precision.name,
        "wall_s": round(time.perf_counter() - t0, 3),
    }
    res.update(describe_backbone(loaded))
    return res
