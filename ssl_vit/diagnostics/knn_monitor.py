"""Online kNN monitor: weighted kNN top-1 of the current backbone on a fixed held-out subset, every
``log.knn_every`` steps (and at the last step), with detection of dips.

Paper: Chen, Xie, He 2021, "An Empirical Study of Training Self-Supervised Vision Transformers",
sec. 4.1 / Fig. 4: an instability shows as a dip of the accuracy curve that recovers only partly
(kNN accuracy during training, as in Fig. 2 / Fig. 4 of the paper). The kNN protocol is DINO's
(Caron et al. 2021, sec. 4.1; ``ssl_vit.evaluation.knn``): L2-normalised CLS features, k = 20
neighbours voting with weight exp(cos / 0.07).

Data: ``log.knn_subset`` images drawn once (fixed generator, the same in every run so runs compare)
from the train split of ``eval.dataset`` (default ``data.dataset``) as the memory bank, and as many from
its test split as queries. Features ``(n, D)`` come from ``ssl_vit.evaluation.features`` in eval mode.

Dip: top-1 at least ``diag.knn_dip`` points below the best value so far. Logged as
``diag/knn_top1``, ``diag/knn_drop`` (best so far minus now) and a ``knn_dip`` field in
``metrics.jsonl``. The latest value is also put in ``run.monitor`` (best-checkpoint choice).

Example::

    dips = find_dips([(500, 70.1), (1000, 74.0), (1500, 69.5), (2000, 75.2)], min_drop=2.0)
    # [{'step': 1500, 'top1': 69.5, 'best': 74.0, 'best_step': 1000, 'drop': 4.5}]
"""

from __future__ import annotations

import warnings
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch

from ssl_vit.data.labelled import has_labels, labelled_only, load_eval_splits
from ssl_vit.engine.hooks import Hook, RunState
from ssl_vit.evaluation.features import extract_features
from ssl_vit.evaluation.knn import knn_top1

_SUBSET_SEED = 1234


def find_dips(history: Sequence[Tuple[int, float]], min_drop: float) -> List[Dict[str, float]]:
    """(step, top1) pairs in step order -> the points at least ``min_drop`` below the best so far."""
    best, best_step, out = float("-inf"), None, []
    for step, v in history:
        if best - v >= min_drop:
            out.append(
                {"step": int(step), "top1": float(v), "best": best, "best_step": best_step, "drop": round(best - v, 4)}
            )
        if v > best:
            best, best_step = float(v), int(step)
    return out


class KnnMonitorHook(Hook):
    name = "diag_knn"

    def __init__(self, cfg):
        self.cfg = cfg
        self.every = cfg.log.knn_every
        self.history: List[Tuple[int, float]] = []
        self._data: Optional[Tuple[Any, torch.Tensor, Any, torch.Tensor]] = None
        self._disabled = False

    def on_start(self, run: RunState) -> None:
        if self.history:  # resumed: the monitor value of the checkpoint
            run.monitor = self.history[-1][1]

    def _load(self):
        spec = self.cfg.eval.dataset or self.cfg.data.dataset
        n = self.cfg.log.knn_subset
        splits = load_eval_splits(spec, self.cfg.data, n, n, _SUBSET_SEED)
        bank, query = splits.train, splits.test
        if query.targets is None or not has_labels(bank):
            return None
        bank = labelled_only(bank)
        return bank, bank.targets, query, query.targets

    def measure(self, run: RunState) -> Optional[float]:
        if self._data is None:
            self._data = self._load()
            if self._data is None:
                warnings.warn("online kNN monitor off: the eval dataset has no labels; set eval.dataset", stacklevel=2)
                self._disabled = True
                return None
        bank, bl, query, ql = self._data
        kw = dict(
            batch_size=self.cfg.eval.batch_size,
            device=run.device,
            precision=run.precision,
            num_workers=self.cfg.data.num_workers,
        )
        spec = run.input_spec
        fb = extract_features(run.model.backbone, bank, spec, **kw)  # (n, D)
        fq = extract_features(run.model.backbone, query, spec, **kw)  # (m, D)
        return knn_top1(fb, bl, fq, ql, min(self.cfg.eval.knn_k, len(bank)), self.cfg.eval.knn_temperature)

    def after_step(self, run: RunState, step: int) -> None:
        if self.every <= 0 or self._disabled or not run.ctx.is_main:
            return
        if run.step % self.every != 0 and run.step != run.total_steps:
            return
        top1 = self.measure(run)
        if top1 is None:
            return
        self.history.append((run.step, top1))
        best = max(v for _, v in self.history)
        drop = best - top1
        run.monitor = top1
        fields = {}
        dips = find_dips(self.history, self.cfg.diag.knn_dip)
        if dips and dips[-1]["step"] == run.step:
            fields["knn_dip"] = dips[-1]
        run.record.add({"diag/knn_top1": top1, "diag/knn_drop": drop}, **fields)

    def state_dict(self) -> Dict[str, Any]:
        return {"history": [[int(s), float(v)] for s, v in self.history]}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.history = [(int(s), float(v)) for s, v in state.get("history", [])]
