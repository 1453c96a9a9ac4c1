"""Feature cache: extract a frozen backbone's features once, reuse them for kNN and the linear probe.

A cache entry is one safetensors file ``<cache_dir>/<key>.safetensors`` holding ``features`` (N, D)
float32 and ``labels`` (N,) int64, plus its key parts as JSON metadata. The key is a hash of

* the weights (content hash of the loaded state dict + model config, so ``last.pt`` and
  ``last.safetensors`` of one step share entries and any ``--set model.*`` change makes a new one),
* the input spec the images are converted to (size, channels, mean/std) and the eval transform
  version, the autocast dtype (bf16 features differ from fp32 ones),
* which features (``pooling``: the CLS token, or DINO's last-blocks concatenation),
* the dataset spec, split, subset (size + seed) and a fingerprint of the data itself (image bytes
  for in-memory sets, paths + sizes + mtimes for file sets), so regenerated data is never confused
  with the old.

Files are written atomically; a corrupt or mismatched entry is re-extracted. The cache lives in
``eval.cache_dir``, else ``$SSLVIT_CACHE_DIR``, else ``~/.cache/sslvit/features``;
``--set eval.feature_cache=false`` turns it off.

Example::

    cache = FeatureCache.from_config(cfg.eval)
    f = cache.features(model, data, input_spec, weights_hash=loaded.weights_hash, dataset="fmnist",
                       split="train")          # (N, D); second call reads the file
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ssl_vit.core.atomic import atomic_save
from ssl_vit.core.input_spec import InputSpec
from ssl_vit.core.precision import Precision
from ssl_vit.data.images import FileImages, TensorImages
from ssl_vit.evaluation import features as feature_extraction  # looked up per call: tests count the calls

# Bump when extraction or the eval input conversion changes meaning (old entries are then ignored).
TRANSFORM_VERSION = "eval-v1:to_model_input(bilinear,antialias);files:resize+centercrop"


def default_cache_dir() -> Path:
    env = os.environ.get("SSLVIT_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "sslvit" / "features"


def data_fingerprint(data) -> str:
    """Cheap content fingerprint of a dataset (image bytes / file list), part of the cache key."""
    h = hashlib.blake2b(digest_size=16)
    if isinstance(data, TensorImages):
        h.update(str(tuple(data.images.shape)).encode())
        h.update(data.images.contiguous().numpy().tobytes())
        if data.targets is not None:
            h.update(data.targets.contiguous().numpy().tobytes())
    elif isinstance(data, FileImages):
        for path, label in data.samples:
            try:
                st = os.stat(path)
                h.update(f"{path}|{label}|{st.st_size}|{st.st_mtime_ns};".encode())
            except OSError:
                h.update(f"{path}|{label}|missing;".encode())
    else:
        raise TypeError(f"cannot fingerprint {type(data).__name__}")
    return h.hexdigest()


def _dtype_name(precision: Optional[Precision]) -> str:
    """The dtype features are computed in, as keys name it ('torch.float32' for fp32, 'torch.bfloat16' ...)."""
    dtype = None if precision is None else precision.dtype
    return str(dtype or torch.float32)


def state_hash(model: torch.nn.Module) -> str:
    """Content hash of a module's state dict (used when the caller has no checkpoint hash)."""
    h = hashlib.blake2b(digest_size=16)
    for k, t in sorted(model.state_dict().items()):
        t = t.detach().contiguous().cpu()
        h.update(f"{k}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


@dataclass
class CacheEvent:
    key: str
    split: str
    hit: bool
    n: int
    seconds: float
    images_per_s: float = 0.0


@dataclass
class FeatureCache:
    root: Optional[Path] = None  # None: caching off (features are still extracted fast)
    events: List[CacheEvent] = field(default_factory=list)

    @classmethod
    def from_config(cls, eval_cfg) -> "FeatureCache":
        if not getattr(eval_cfg, "feature_cache", True):
            return cls(None)
        d = getattr(eval_cfg, "cache_dir", None)
        return cls(Path(d) if d else default_cache_dir())

    @staticmethod
    def key(parts: Dict) -> str:
        return hashlib.blake2b(json.dumps(parts, sort_keys=True, default=str).encode(), digest_size=20).hexdigest()

    def path(self, key: str) -> Optional[Path]:
        return None if self.root is None else self.root / f"{key}.safetensors"

    @property
    def extracted(self) -> int:
        return sum(1 for e in self.events if not e.hit)

    def features(
        self,
        model,
        data,
        input_spec: InputSpec,
        *,
        weights_hash: str = "",
        dataset: str = "",
        split: str = "",
        subset: str = "all",
        batch_size: int = 512,
        device=None,
        precision: Optional[Precision] = None,
        progress: bool = False,
        desc: str = "features",
        pooling: str = "cls",
        num_workers: int = 2,
    ) -> torch.Tensor:
        """(N, D) float32 features of ``data`` in order: read from the cache or extracted (and stored).
        ``pooling`` names what ``model`` outputs when it is not the backbone's own CLS feature
        (:func:`~ssl_vit.evaluation.pooling.pooling_name`); it is part of the key. ``num_workers``: DataLoader
        workers of an extraction (file datasets; not part of the key)."""

        parts = {
            "weights": weights_hash or state_hash(model),
            "data_cfg": input_spec.to_dict(),  # (key name kept: old entries stay valid)
            "transform": TRANSFORM_VERSION,
            "dtype": _dtype_name(precision),
            "dataset": dataset,
            "split": split,
            "subset": subset,
            "n": len(data),
        }
        if pooling != "cls":  # (CLS keys stay as before: old entries stay valid)
            parts["pooling"] = pooling
        labels = data.targets if data.targets is not None else torch.full((len(data),), -1, dtype=torch.long)
        t0 = time.perf_counter()
        key, path = None, None
        if self.root is not None:
            parts["data"] = data_fingerprint(data)
            key = self.key(parts)
            path = self.path(key)
            if path.is_file():
                try:
                    t = load_file(str(path))
                    f = t["features"]
                    if f.shape[0] == len(data) and torch.equal(t["labels"], labels.long()):
                        self.events.append(CacheEvent(key, split, True, len(data), time.perf_counter() - t0))
                        return f
                except (SafetensorError, OSError, KeyError, RuntimeError):
                    pass  # corrupt: re-extract
        t1 = time.perf_counter()
        f = feature_extraction.extract_features(
            model,
            data,
            input_spec,
            batch_size=batch_size,
            device=device,
            precision=precision,
            num_workers=num_workers,
            progress=progress,
            desc=desc,
        )
        dt = time.perf_counter() - t1
        if path is not None:
            meta = {
                "key_parts": json.dumps(parts, sort_keys=True, default=str),
                "images_per_s": f"{len(data) / dt:.1f}",
            }
            tensors = {"features": f.contiguous(), "labels": labels.long().contiguous()}
            try:
                atomic_save(path, lambda tmp: save_file(tensors, str(tmp), metadata=meta))
            except Exception as e:  # noqa: BLE001 - a read-only cache must not fail the evaluation
                warnings.warn(f"feature cache not written ({e}); set eval.cache_dir to a writable folder", stacklevel=2)
        self.events.append(
            CacheEvent(key or "", split, False, len(data), time.perf_counter() - t0, len(data) / max(dt, 1e-9))
        )
        return f

    def summary(self, since: int = 0) -> Dict:
        """What happened to the features since event ``since`` (e.g. ``len(cache.events)`` before a run)."""
        events = self.events[since:]
        ext = [e for e in events if not e.hit]
        n = sum(e.n for e in ext)
        return {
            "feature_cache": str(self.root) if self.root else "off",
            "features_cached": [e.split for e in events if e.hit],
            "features_extracted": [e.split for e in ext],
            "extract_s": round(sum(e.seconds for e in ext), 3),
            "extract_img_per_s": round(n / max(sum(e.seconds for e in ext), 1e-9), 1) if ext else None,
        }
