"""Weighted k-nearest-neighbour classification (DINO protocol), searched with faiss.

Features are L2-normalised; the k most similar training features (inner product = cosine) vote
with weight ``exp(sim / T)``; defaults k = 20, T = 0.07 (Wu et al. 2018, DINO ``eval_knn.py``).

Example::

    top1 = knn_top1(train_feats, train_labels, test_feats, test_labels, k=20, temperature=0.07)
"""

from __future__ import annotations

import time
from typing import Optional

import faiss
import numpy as np
import torch
import torch.nn.functional as F

from ssl_vit.config.schema import Config, DataConfig
from ssl_vit.config.validate import check_knn_temperature
from ssl_vit.core.input_spec import InputSpec
from ssl_vit.core.precision import Precision
from ssl_vit.data.labelled import load_eval_splits, require_labels
from ssl_vit.evaluation.features import extract_features


def knn_predict(
    train_feats: torch.Tensor,
    train_labels: torch.Tensor,
    test_feats: torch.Tensor,
    k: int = 20,
    temperature: float = 0.07,
    num_classes: int | None = None,
    batch_size: int = 4096,
) -> torch.Tensor:
    """train (N, D), labels (N,), test (M, D) -> predicted labels (M,)."""
    train = F.normalize(train_feats.float(), dim=1).contiguous().numpy()
    test = F.normalize(test_feats.float(), dim=1).contiguous().numpy()
    num_classes = num_classes or int(train_labels.max()) + 1
    k = min(k, train.shape[0])
    index = faiss.IndexFlatIP(train.shape[1])
    index.add(train)
    labels = train_labels.long()
    preds = []
    for i in range(0, test.shape[0], batch_size):
        sims, idx = index.search(np.ascontiguousarray(test[i : i + batch_size]), k)  # (b, k) each
        sims, idx = torch.from_numpy(sims), torch.from_numpy(idx)
        weights = (sims / temperature).exp()  # (b, k)
        votes = torch.zeros(idx.shape[0], num_classes)
        votes.scatter_add_(1, labels[idx], weights)  # (b, C)
        preds.append(votes.argmax(1))
    return torch.cat(preds)


def knn_top1(train_feats, train_labels, test_feats, test_labels, k: int = 20, temperature: float = 0.07) -> float:
    """Top-1 accuracy in percent."""
    n_cls = int(max(train_labels.max(), test_labels.max())) + 1
    pred = knn_predict(train_feats, train_labels, test_feats, k, temperature, n_cls)
    return 100.0 * (pred == test_labels.long()).float().mean().item()


def run_knn(
    backbone,
    input_spec: InputSpec,
    dataset: str,
    data_cfg: DataConfig,
    *,
    k: int = 20,
    temperature: float = 0.07,
    batch_size: int = 512,
    max_train: int = 0,
    max_test: int = 0,
    device=None,
    precision: Optional[Precision] = None,
    progress: bool = False,
    cache=None,
    weights_hash: str = "",
) -> dict:
    """Extract features of a labelled dataset's train and test splits and return kNN top-1 (percent).
    ``input_spec``: what ``backbone`` takes; ``data_cfg``: the config's data section (workers, dataset options).

    ``precision``: autocast of the extraction (None: fp32). With a
    :class:`~ssl_vit.evaluation.cache.FeatureCache` the features are read from / written to it
    (key: ``weights_hash`` or a hash of the backbone's state, dataset, split, subset, data config)."""
    check_knn_temperature(temperature, "kNN temperature")
    t0 = time.perf_counter()
    splits = load_eval_splits(dataset, data_cfg, max_train, max_test)
    train, test = splits.train, splits.test
    require_labels(train, f"dataset '{dataset}' split '{splits.train_split}'", "kNN")
    tl, vl = train.targets, test.targets
    keep = tl >= 0  # features of the whole subsample (the cache key), votes of the labelled ones
    kw = dict(
        batch_size=batch_size, device=device, precision=precision, progress=progress, num_workers=data_cfg.num_workers
    )
    if cache is None:
        ftr = extract_features(backbone, train, input_spec, desc="kNN train features", **kw)[keep]
        fte = extract_features(backbone, test, input_spec, desc="kNN test features", **kw)
    else:
        kw.update(weights_hash=weights_hash, dataset=dataset)
        n_events = len(cache.events)
        ftr = cache.features(
            backbone,
            train,
            input_spec,
            split=splits.train_split,
            subset=f"{max_train}:0",
            desc="kNN train features",
            **kw,
        )[keep]
        fte = cache.features(
            backbone, test, input_spec, split=splits.test_split, subset=f"{max_test}:1", desc="kNN test features", **kw
        )
    t1 = time.perf_counter()
    top1 = knn_top1(ftr, tl[keep], fte, vl, k, temperature)
    res = {
        "top1": top1,
        "dataset": dataset,
        "n_train": int(keep.sum()),
        "n_test": len(test),
        "k": min(k, int(keep.sum())),
        "temperature": temperature,  # the k and T the votes used
        "search_s": round(time.perf_counter() - t1, 3),
        "wall_s": round(time.perf_counter() - t0, 3),
    }
    if cache is not None:
        res.update(cache.summary(n_events))
    return res


def run_knn_as_configured(
    backbone,
    input_spec: InputSpec,
    cfg: Config,
    dataset: str,
    *,
    device=None,
    precision: Optional[Precision] = None,
    cache=None,
    weights_hash: str = "",
) -> dict:
    """:func:`run_knn` with what the config asks for: ``eval.knn_k``, ``eval.knn_temperature``, ``eval.batch_size``,
    ``eval.max_train`` / ``max_test``, ``data`` (workers, dataset options), ``log.progress``. The one call of
    pretraining's final kNN, supervised training's kNN and ``sslvit knn``."""
    e = cfg.eval
    return run_knn(
        backbone,
        input_spec,
        dataset,
        cfg.data,
        k=e.knn_k,
        temperature=e.knn_temperature,
        batch_size=e.batch_size,
        max_train=e.max_train,
        max_test=e.max_test,
        device=device,
        precision=precision,
        progress=cfg.log.progress,
        cache=cache,
        weights_hash=weights_hash,
    )
