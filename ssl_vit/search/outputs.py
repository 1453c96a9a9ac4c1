"""What a search writes: population history, Pareto front (JSON, Markdown table, PNG), best-candidate recipes.

* ``history.jsonl`` -- one line per evaluated sub-network (generation, key, top-1, GFLOPs, encoding);
* ``pareto.json`` / ``pareto.md`` / ``pareto.png`` -- the non-dominated candidates (top-1 up, GFLOPs down);
* ``best_<i>.yaml`` -- a recipe that ``sslvit pretrain --recipe best_<i>.yaml`` retrains from scratch
  (the superformer's training settings, the sub-network as the backbone: ``vit_micro`` with explicit
  sizes when every block is alike, else ``vitas_subnet`` with ``model.vitas.blocks``);
* ``best_<i>.safetensors`` -- the same network with its inherited superformer weights (an sslvit backbone
  file: ``sslvit knn --checkpoint best_0.safetensors --dataset fmnist`` works).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Dict, List

from ssl_vit.checkpoints.formats import save_backbone
from ssl_vit.config.loading import dump_yaml, to_dict
from ssl_vit.config.schema import Config, SearchConfig, ViTASConfig
from ssl_vit.core.atomic import atomic_path, atomic_write_text
from ssl_vit.core.input_spec import InputSpec
from ssl_vit.models.vitas import parse_blocks
from ssl_vit.models.vitas_space import SubNet
from ssl_vit.search.nsga2 import non_dominated_fronts


def pareto_keys(evaluated: Dict[str, Dict]) -> List[str]:
    keys = list(evaluated)
    front = non_dominated_fronts([(-evaluated[k]["top1"], evaluated[k]["gflops"]) for k in keys])[0]
    return sorted((keys[i] for i in front), key=lambda k: evaluated[k]["gflops"])


def write_history(path: Path, evaluated: Dict[str, Dict]) -> None:
    lines = [
        json.dumps(
            {"generation": v["generation"], "key": k, "top1": v["top1"], "gflops": v["gflops"], "subnet": v["subnet"]}
        )
        for k, v in sorted(evaluated.items(), key=lambda kv: kv[1]["generation"])
    ]
    atomic_write_text(path, "\n".join(lines) + "\n")


def write_pareto(out: Path, evaluated: Dict[str, Dict], max_gflops: float) -> List[str]:
    front = pareto_keys(evaluated)
    atomic_write_text(out / "pareto.json", json.dumps([{"key": k, **evaluated[k]} for k in front], indent=1) + "\n")
    rows = [
        "| GFLOPs | held-out kNN top-1 | depth | width | patch | blocks (heads x MLP ratio) |",
        "|---|---|---|---|---|---|",
    ]
    for k in front:
        n = SubNet.from_dict(evaluated[k]["subnet"])
        rows.append(
            f"| {evaluated[k]['gflops']:.5f} | {evaluated[k]['top1']:.2f} % | {n.depth} | {n.embed_dim} | "
            f"{n.patch_size} | {' '.join(k.split('-', 2)[2].split('|'))} |"
        )
    atomic_write_text(
        out / "pareto.md",
        f"# Pareto front ({len(front)} of {len(evaluated)} evaluated, budget "
        f"{max_gflops} GFLOPs)\n\n" + "\n".join(rows) + "\n",
    )
    import matplotlib  # lazy: matplotlib is heavy (~0.5 s) and only plots need it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: matplotlib is heavy (~0.5 s) and only plots need it

    fig, ax = plt.subplots(figsize=(6, 4))
    gens = [v["generation"] for v in evaluated.values()]
    sc = ax.scatter(
        [v["gflops"] for v in evaluated.values()],
        [v["top1"] for v in evaluated.values()],
        c=gens,
        cmap="viridis",
        s=14,
        label="evaluated",
    )
    ax.plot([evaluated[k]["gflops"] for k in front], [evaluated[k]["top1"] for k in front], "r.-", label="Pareto front")
    ax.axvline(max_gflops, color="grey", ls="--", lw=1, label="budget")
    ax.set_xlabel("GFLOPs (torch flop_counter, 1 image)")
    ax.set_ylabel("held-out kNN top-1 (%)")
    fig.colorbar(sc, ax=ax, label="generation")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    with atomic_path(out / "pareto.png") as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
    return front


def subnet_recipe(train_cfg: Config, sub_model_cfg) -> Config:
    """The superformer's training config with the sub-network as the backbone (retrain from scratch)."""
    specs = parse_blocks(sub_model_cfg.vitas.blocks)
    if len(set(specs)) == 1:  # uniform: a plain vit_* with explicit sizes (exportable with `sslvit export`)
        model = replace(
            sub_model_cfg, name="vit_micro", num_heads=specs[0][0], mlp_ratio=specs[0][1], vitas=ViTASConfig()
        )
    else:
        model = replace(sub_model_cfg, vitas=ViTASConfig(blocks=sub_model_cfg.vitas.blocks))
    return replace(train_cfg, model=model, search=SearchConfig())


def write_best(out: Path, rank: int, key: str, info: Dict, recipe: Config, state_dict, input_spec: InputSpec) -> Dict:
    yaml_path, st_path = out / f"best_{rank}.yaml", out / f"best_{rank}.safetensors"
    dump_yaml(
        recipe,
        yaml_path,
        header=f"ViTAS search result #{rank}: {key}\nheld-out kNN top-1 {info['top1']:.2f} % "
        f"(inherited weights), {info['gflops']:.4f} GFLOPs\n"
        f"retrain from scratch: sslvit pretrain --recipe {yaml_path}",
    )
    save_backbone(st_path, state_dict, to_dict(recipe.model), input_spec, {"source": f"vitas search {key}"})
    return {
        "rank": rank,
        "key": key,
        "top1": info["top1"],
        "gflops": info["gflops"],
        "recipe": str(yaml_path),
        "weights": str(st_path),
    }
