"""`sslvit search`: train (or load) a ViTAS superformer, search it under ``search.max_gflops``, write results.

Steps: (1) the superformer -- ``search.supernet`` (a run dir) or, when unset, ``sslvit pretrain`` of the
recipe into ``<output>/supernet`` (resumed if interrupted); (2) :class:`EvolutionarySearch` with FLOPs from
:func:`count_gflops` and held-out kNN top-1 (:class:`HeldOutKnn`), state in ``<output>/search_state.json``
(an existing state is resumed); (3) :mod:`ssl_vit.search.outputs`.

Example::

    summary = run_search(load_config("vitas_smoke"), Path("runs/search"))
    summary["best"][0]["recipe"]        # runs/search/best_0.yaml
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Callable, Dict

import torch

from ssl_vit.checkpoints import load_backbone
from ssl_vit.config.loading import to_dict
from ssl_vit.config.schema import Config
from ssl_vit.errors import SslvitError
from ssl_vit.evaluation.results import write_results
from ssl_vit.models.flops import count_gflops
from ssl_vit.models.vitas import ViTASSuperformer
from ssl_vit.models.vitas_space import SubNet
from ssl_vit.runs import pretrain
from ssl_vit.search.evolution import EvolutionarySearch
from ssl_vit.search.outputs import subnet_recipe, write_best, write_history, write_pareto
from ssl_vit.search.scoring import HeldOutKnn

# search settings that may change between a run and its resumption
_RESUMABLE = ("supernet", "generations", "top_k")


def validate_search(cfg: Config) -> None:
    s = cfg.search
    if s.max_gflops <= 0 or s.min_gflops < 0 or s.min_gflops >= s.max_gflops:
        raise SslvitError(f"search.max_gflops must be > search.min_gflops >= 0, got {s.max_gflops} and {s.min_gflops}")
    if s.population < 2 or s.generations < 1 or s.offspring < 1 or s.top_k < 1:
        raise SslvitError("search.population must be >= 2 and search.generations, search.offspring, search.top_k >= 1")
    if not (0 <= s.crossover_prob <= 1 and 0 <= s.mutation_prob <= 1):
        raise SslvitError("search.crossover_prob and search.mutation_prob must be in [0, 1]")
    if s.knn_train < 1 or s.knn_val < 1:
        raise SslvitError("search.knn_train and search.knn_val must be >= 1")


def run_search(cfg: Config, out: Path, log: Callable[[str], None] = print) -> Dict:

    validate_search(cfg)
    t0 = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.search.supernet:
        sup_dir = Path(cfg.search.supernet)
    else:
        if cfg.model.name != "vitas_super":
            raise SslvitError(
                f"the recipe trains model.name={cfg.model.name}; set model.name=vitas_super or point "
                f"search.supernet at a trained superformer run"
            )
        sup_dir = out / "supernet"
        log(f"training the superformer into {sup_dir}")
        pretrain(replace(cfg, search=type(cfg.search)()), sup_dir, resume=True, log=log)
    full = sup_dir / "checkpoints" / "last.pt"  # a run dir: last.pt also holds the training config
    loaded = load_backbone(full if full.is_file() else sup_dir)
    sf = loaded.model
    if not isinstance(sf, ViTASSuperformer):
        raise SslvitError(
            f"'{sup_dir}' holds a {loaded.model_cfg.name} backbone, not a ViTAS superformer "
            f"(model.name=vitas_super); point search.supernet at a superformer run"
        )
    sf.eval()
    torch.set_grad_enabled(False)
    train_cfg = loaded.config or cfg
    mc = loaded.model_cfg
    dataset = cfg.eval.dataset or train_cfg.data.dataset
    scorer = HeldOutKnn(
        dataset,
        cfg.data,
        loaded.input_spec,
        cfg.search.knn_train,
        cfg.search.knn_val,
        cfg.seed,
        cfg.eval.knn_k,
        cfg.eval.knn_temperature,
        cfg.eval.batch_size,
    )

    def flops_fn(net):
        sf.set_subnet(net)
        return count_gflops(sf, mc.img_size, mc.in_chans)

    def score_fn(net):
        sf.set_subnet(net)
        return scorer(sf)

    fingerprint = {
        "weights": loaded.weights_hash,
        "dataset": dataset,
        "seed": cfg.seed,
        **{f"search.{k}": v for k, v in to_dict(cfg.search).items() if k not in _RESUMABLE},
    }
    search = EvolutionarySearch(
        sf.space,
        cfg.search,
        cfg.seed,
        flops_fn,
        score_fn,
        canon=lambda n: n.canonical(sf.identity_shifting),
        fingerprint=fingerprint,
        progress=cfg.log.progress,
    )
    state = search.run(out / "search_state.json", log)
    ev = state["evaluated"]
    write_history(out / "history.jsonl", ev)
    front = write_pareto(out, ev, cfg.search.max_gflops)
    ranked = sorted(ev, key=lambda k: (-ev[k]["top1"], ev[k]["gflops"]))[: cfg.search.top_k]
    best = []
    for i, key in enumerate(ranked):
        net = SubNet.from_dict(ev[key]["subnet"])
        recipe = subnet_recipe(train_cfg, sf.subnet_model_config(net))
        best.append(write_best(out, i, key, ev[key], recipe, sf.subnet_state_dict(net), loaded.input_spec))
    torch.set_grad_enabled(True)
    res = {
        "top1": best[0]["top1"],
        "metric": "held-out kNN top-1 of the best sub-network (inherited weights)",
        "dataset": dataset,
        "checkpoint": str(sup_dir),
        "n_train": cfg.search.knn_train,
        "n_test": cfg.search.knn_val,
        "gflops": best[0]["gflops"],
        "best": best,
        "pareto": [{"key": k, **{x: ev[k][x] for x in ("top1", "gflops")}} for k in front],
        "evaluated": len(ev),
        "generations": state["generation"] + 1,
        "max_gflops": cfg.search.max_gflops,
        "wall_s": round(time.perf_counter() - t0, 2),
    }
    write_results(out, res, "ViTAS search")
    return res
