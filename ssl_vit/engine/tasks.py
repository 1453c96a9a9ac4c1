"""What differs between ``sslvit pretrain`` and ``sslvit train``; the loop (``trainer.fit``) is shared.

A task supplies the batch stream, the method module, how a batch reaches it (``loss(model, batch, m)``)
and the evaluation at the end. Everything else -- schedules, resume, checkpoints, hooks, logging, signals --
is the loop's.

* :class:`PretrainTask`: MoCo v3 two-view batches; ``forward(x1, x2, m)``, with ``method.local_crops``
  ``(x1, x2, local)`` batches and ``forward(x1, x2, m, local)`` (multi-crop); final kNN top-1.
  ``model.bootstrap.enabled`` swaps in :class:`~ssl_vit.methods.bootstrap_mocov3.BootstrapMoCoV3`.
* :class:`SupervisedTask`: labelled crop+flip batches; ``forward(x, y)``
  (:class:`~ssl_vit.methods.supervised.SupervisedClassifier`, bootstrapped when enabled); final test top-1
  of the ViT (and of the agent), plus kNN on the backbone when ``eval.final_knn``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Dict, Optional

import torch

from ssl_vit.core.input_spec import InputSpec
from ssl_vit.core.precision import Precision
from ssl_vit.data.labelled import load_eval_splits
from ssl_vit.data.labelled_stream import labelled_stream
from ssl_vit.data.specs import load_dataset
from ssl_vit.data.streams import two_view_stream
from ssl_vit.errors import SslvitError
from ssl_vit.evaluation.features import extract_features
from ssl_vit.evaluation.knn import run_knn_as_configured
from ssl_vit.evaluation.results import write_results
from ssl_vit.methods import METHODS
from ssl_vit.methods.bootstrap_mocov3 import BootstrapMoCoV3
from ssl_vit.methods.supervised import SupervisedClassifier, logits_module


class PretrainTask:
    name = "pretrain"
    uses_momentum = True

    def stream(self, cfg, train, input_spec: InputSpec, order, device):
        return two_view_stream(
            train,
            cfg.aug,
            input_spec,
            order,
            device,
            cfg.seed,
            cfg.data.num_workers,
            cfg.data.on_bad_image,
            cfg.method.local_crops,
        )

    def loss(self, model, batch, m: float) -> torch.Tensor:
        """``batch``: ``(x1, x2)`` or, with ``method.local_crops``, ``(x1, x2, local)`` -> the scalar loss."""
        x1, x2, *local = batch
        return model(x1, x2, m, *local)

    def build(self, cfg, backbone, embed_dim: int, train) -> torch.nn.Module:
        if cfg.model.bootstrap.enabled:
            if cfg.method.name != "mocov3":
                raise SslvitError(
                    f"model.bootstrap.enabled works with method.name=mocov3 only, not '{cfg.method.name}'"
                )
            return BootstrapMoCoV3(backbone, embed_dim, cfg.method, cfg.model.bootstrap)
        return METHODS[cfg.method.name](backbone, embed_dim, cfg.method)

    def evaluate(
        self, model, cfg, input_spec: InputSpec, device, precision, out: Path, checkpoint: str, logger, step: int
    ) -> Dict:
        res = run_knn_as_configured(
            model.backbone, input_spec, cfg, cfg.eval.dataset or cfg.data.dataset, device=device, precision=precision
        )
        logger.log(step, {"eval/knn_top1": res["top1"]})
        write_results(out, {**res, "checkpoint": checkpoint, "metric": "knn"}, "pretrain kNN")
        return {"knn": res}


def num_classes_of(train) -> int:
    y = train.targets
    n = max(len(getattr(train, "classes", []) or []), int(y.max()) + 1 if y is not None and len(y) else 0)
    if n < 2:
        raise SslvitError(
            f"dataset '{train.name}' has {n} class(es); `sslvit train` needs a labelled dataset with 2+ classes"
        )
    return n


@torch.no_grad()
def test_top1(
    logits_model: torch.nn.Module,
    data,
    input_spec: InputSpec,
    batch_size: int,
    device,
    precision: Optional[Precision] = None,
) -> float:
    """Top-1 (percent) of a ``x -> logits`` module on a labelled dataset, through the feature extractor."""
    logits = extract_features(
        logits_model, data, input_spec, batch_size=batch_size, device=device, precision=precision
    )  # (N, K)
    return 100.0 * (logits.argmax(1) == data.targets.long()).float().mean().item()


class SupervisedTask:
    name = "train"
    uses_momentum = False

    def stream(self, cfg, train, input_spec: InputSpec, order, device):
        return labelled_stream(train, cfg.aug, input_spec, order, device, cfg.seed, cfg.data.num_workers)

    def loss(self, model, batch, m) -> torch.Tensor:
        """``batch``: ``(x, y)``; ``m`` is None (no momentum encoder) -> the scalar loss."""
        return model(*batch)

    def build(self, cfg, backbone, embed_dim: int, train) -> torch.nn.Module:
        if cfg.method.local_crops:
            raise SslvitError(
                f"method.local_crops={cfg.method.local_crops} is a pretraining (MoCo v3) option; "
                f"`sslvit train` has no multi-crop: set method.local_crops=0"
            )
        return SupervisedClassifier(backbone, embed_dim, num_classes_of(train), cfg.model.bootstrap)

    def evaluate(
        self, model, cfg, input_spec: InputSpec, device, precision, out: Path, checkpoint: str, logger, step: int
    ) -> Dict:
        t0 = time.perf_counter()
        dataset = cfg.data.dataset
        test = load_eval_splits(dataset, cfg.data, max_test=cfg.eval.max_test).test
        kw = dict(batch_size=cfg.eval.batch_size, device=device, precision=precision)
        res = {
            "top1": test_top1(logits_module(model), test, input_spec, **kw),
            "dataset": dataset,
            "n_train": len(load_dataset(dataset, cfg.data.train_split, cfg.data)),
            "n_test": len(test),
            "metric": "test_top1",
            "checkpoint": checkpoint,
            "bootstrap": bool(cfg.model.bootstrap.enabled),
        }
        vals = {"eval/test_top1": res["top1"]}
        if getattr(model, "bootstrap", None) is not None:
            res["bootstrap_mode"] = cfg.model.bootstrap.mode
            res["top1_agent"] = test_top1(logits_module(model, agent=True), test, input_spec, **kw)
            vals["eval/test_top1_agent"] = res["top1_agent"]
        if cfg.eval.final_knn:
            knn = run_knn_as_configured(model.backbone, input_spec, cfg, dataset, device=device, precision=precision)
            res["knn_top1"] = knn["top1"]
            vals["eval/knn_top1"] = knn["top1"]
        res["wall_s"] = round(time.perf_counter() - t0, 3)
        logger.log(step, vals)
        write_results(out, res, "train: test top-1")
        return {"test": res}


TASKS = {"pretrain": PretrainTask(), "train": SupervisedTask()}
