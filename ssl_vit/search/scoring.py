"""Score a sub-network's inherited weights: weighted kNN top-1 on a held-out split of the *train* set.

The train split is permuted once (seed ``(search-split, seed)``): the first ``knn_train`` images are the
memory bank, the next ``knn_val`` the queries, so the test set stays untouched for the final comparison.
Reuses :func:`~ssl_vit.evaluation.features.extract_features` and :func:`~ssl_vit.evaluation.knn.knn_top1`.

Example::

    scorer = HeldOutKnn("fmnist", data_cfg, input_spec, n_train=5000, n_val=1000, seed=0)
    superformer.set_subnet(net); top1 = scorer(superformer)        # percent
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ssl_vit.core.input_spec import InputSpec
from ssl_vit.core.seeding import derive_seed
from ssl_vit.data.specs import eval_splits, load_dataset
from ssl_vit.errors import SslvitError
from ssl_vit.evaluation.features import extract_features
from ssl_vit.evaluation.knn import knn_top1


class HeldOutKnn:
    def __init__(
        self,
        dataset: str,
        data_cfg,
        input_spec: InputSpec,
        n_train: int,
        n_val: int,
        seed: int,
        k: int = 20,
        temperature: float = 0.07,
        batch_size: int = 512,
    ):
        train = load_dataset(dataset, eval_splits(dataset)[0], data_cfg)
        if train.targets is None or (train.targets < 0).all():
            raise SslvitError(f"dataset '{dataset}' has no labels; the search scores sub-networks by kNN on labels")
        labelled = torch.nonzero(train.targets >= 0).flatten()
        if n_train + n_val > len(labelled):
            raise SslvitError(
                f"search.knn_train + search.knn_val = {n_train + n_val} exceeds the {len(labelled)} "
                f"labelled train images; lower them"
            )
        g = torch.Generator().manual_seed(derive_seed("search-split", seed))
        perm = labelled[torch.randperm(len(labelled), generator=g)]
        self.bank = train.subset(perm[:n_train].sort().values)
        self.val = train.subset(perm[n_train : n_train + n_val].sort().values)
        self.input_spec, self.k, self.t, self.bs = input_spec, k, temperature, batch_size

    def __call__(self, model: nn.Module) -> float:
        kw = dict(batch_size=self.bs, num_workers=0)
        fb = extract_features(model, self.bank, self.input_spec, **kw)  # (n_train, D)
        fv = extract_features(model, self.val, self.input_spec, **kw)  # (n_val, D)
        return knn_top1(fb, self.bank.targets, fv, self.val.targets, self.k, self.t)
