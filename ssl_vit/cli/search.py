"""`sslvit search`: ViTAS evolutionary architecture search under a FLOPs budget."""

from __future__ import annotations

from pathlib import Path

import click

from ssl_vit.cli.common import Reads, default_output_dir, set_option
from ssl_vit.cli.pretrain import READS as PRETRAIN_READS
from ssl_vit.config import load_config
from ssl_vit.search.run import run_search

#: What `sslvit search` reads: what pretraining the superformer reads, and search.*.
READS = Reads("search", (*PRETRAIN_READS.keys, "search"))


@click.command("search")
@click.option("--recipe", required=True, help="Recipe name (vitas_smoke, vitas_fmnist) or path to a YAML file.")
@click.option(
    "--output-dir",
    type=click.Path(file_okay=False),
    help="Search directory (default: runs/search-<time>). An existing search_state.json there is resumed.",
)
@set_option
def search_cmd(recipe, output_dir, overrides):
    """ViTAS: train a superformer (unless search.supernet names one), then evolve sub-networks under
    search.max_gflops, scored by kNN top-1 of their inherited weights on a held-out split of the train set.

    \b
    Writes search_state.json (resumable), history.jsonl, pareto.{json,md,png}, results.json and, for the
    search.top_k best, best_<i>.yaml (retrain: sslvit pretrain --recipe best_0.yaml) and
    best_<i>.safetensors (inherited weights). Prints best= and top1= last.

    \b
    Examples:
      sslvit search --recipe vitas_smoke
      sslvit search --recipe vitas_fmnist --set search.max_gflops=0.03 --output-dir runs/vitas
      sslvit search --recipe vitas_fmnist --set search.supernet=runs/vitas/supernet --output-dir runs/vitas_b
    """

    READS.check_sets(overrides)
    cfg = load_config(recipe, overrides)
    out = Path(output_dir) if output_dir else default_output_dir("search")
    res = run_search(cfg, out, log=lambda m: click.echo(m, err=True))
    click.echo(f"search dir:  {out}")
    click.echo(
        f"evaluated:   {res['evaluated']} sub-networks in {res['generations']} generations; "
        f"Pareto front: {len(res['pareto'])} (pareto.md, pareto.png)"
    )
    for b in res["best"]:
        click.echo(f"#{b['rank']}: {b['key']}  {b['gflops']:.4f} GFLOPs  top1={b['top1']:.2f}  -> {b['recipe']}")
    click.echo(f"best={res['best'][0]['key']}")
    click.echo(f"top1={res['top1']:.2f}")
