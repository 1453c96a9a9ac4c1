"""`sslvit train`: supervised training from scratch, optionally bootstrapped with an agent CNN."""

from __future__ import annotations

import click

from ssl_vit.cli.common import Reads, run_config, run_training, training_options
from ssl_vit.runs import train_supervised

#: What `sslvit train` reads: pretrain's sections but method.* (supervised: cross-entropy, no momentum encoder;
#: method.local_crops only to refuse multi-crop).
READS = Reads("train", ("seed", "data", "aug", "model", "method.local_crops", "optim", "train", "log", "eval", "diag"))

_EPILOG = """\b
Examples:
  sslvit train --recipe smoke
  sslvit train --recipe bootstrap_fmnist10 --set model.bootstrap.enabled=true --output-dir runs/bs
  sslvit train --recipe bootstrap_fmnist10 --set model.bootstrap.mode=joint ...
  sslvit train --output-dir runs/bs --resume          # continue where it stopped
  tensorboard --logdir runs/bs/tensorboard            # train/ce_vit, train/hint_loss, train/kd_loss, ...
"""


@click.command("train", epilog=_EPILOG)
@training_options("train")
def train_cmd(recipe, output_dir, overrides, resume, force, overwrite):
    """Supervised training of a ViT from scratch on a labelled dataset.

    Crop + flip augmentation, AdamW with the recipe's optim/train settings, cross-entropy on a linear head.
    --set model.bootstrap.enabled=true trains the bootstrapped ViT (Zhang et al., CVPR 2022): an agent CNN
    built from the ViT's own weights (model.bootstrap.mode=shared) or a copy (joint), mutual distillation and
    hints. Writes config.yaml, metrics.jsonl, tensorboard/, checkpoints/{last.pt,last.safetensors} and
    results.json (test top-1), and prints top1=<percent> last.
    """

    cfg, out = run_config(READS, recipe, output_dir, overrides, resume, force, overwrite)
    summary = run_training(train_supervised, cfg, out, resume, force, overwrite)
    if summary is None:
        return
    if "test" in summary:
        r = summary["test"]
        if "top1_agent" in r:
            click.echo(f"agent CNN test top-1: {r['top1_agent']:.2f}")
        if "knn_top1" in r:
            click.echo(f"kNN top-1 (backbone): {r['knn_top1']:.2f}")
        click.echo(f"ViT test top-1 on {r['dataset']}: {r['n_train']} train / {r['n_test']} test")
        click.echo(f"top1={r['top1']:.2f}")
