"""`sslvit pretrain`: MoCo v3 pretraining from a recipe."""

from __future__ import annotations

import click

from ssl_vit.cli.common import Reads, run_config, run_training, training_options
from ssl_vit.config import available_recipes
from ssl_vit.data import dataset_kinds
from ssl_vit.models import backbone_names, stem_names
from ssl_vit.runs import pretrain

#: What `sslvit pretrain` reads (a --set of probe.*, search.* or adapt.* is refused: it would have no effect).
READS = Reads("pretrain", ("seed", "data", "aug", "model", "method", "optim", "train", "log", "eval", "diag"))


def _epilog() -> str:
    return (
        "\b\nRecipes: "
        + ", ".join(available_recipes())
        + "\nBackbones (model.name): "
        + ", ".join(backbone_names())
        + "\nStems (model.stem): "
        + ", ".join(stem_names())
        + "\nDatasets (data.dataset): "
        + ", ".join(dataset_kinds())
        + "\n\b\nExamples:\n  sslvit pretrain --recipe smoke\n"
        "  sslvit pretrain --recipe fmnist_demo --set train.time_budget_min=3 --output-dir runs/demo\n"
        "  sslvit pretrain --output-dir runs/demo --resume       # continue where it stopped\n"
        "  tensorboard --logdir runs/demo/tensorboard"
    )


class _EpilogCommand(click.Command):
    def format_epilog(self, ctx, formatter):
        formatter.write_paragraph()
        for line in _epilog().split("\n"):
            formatter.write_text(line) if line != "\b" else None


@click.command("pretrain", cls=_EpilogCommand)
@training_options("pretrain")
def pretrain_cmd(recipe, output_dir, overrides, resume, force, overwrite):
    """Self-supervised MoCo v3 pretraining of a ViT.

    Writes config.yaml, metrics.jsonl, tensorboard/ and checkpoints/{last.pt,last.safetensors} into the
    output dir, then prints the kNN top-1 of the final backbone.
    """

    cfg, out = run_config(READS, recipe, output_dir, overrides, resume, force, overwrite)
    summary = run_training(pretrain, cfg, out, resume, force, overwrite)
    if summary is None:
        return
    if "knn" in summary:
        k = summary["knn"]
        click.echo(
            f"kNN (k={k['k']}, T={k['temperature']}) on {k['dataset']}: {k['n_train']} train / {k['n_test']} test"
        )
        click.echo(f"top1={k['top1']:.2f}")
