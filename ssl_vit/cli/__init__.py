"""The `sslvit` command line: one click command per file, parsing and validation only."""

from __future__ import annotations

import click

from ssl_vit import __version__
from ssl_vit.cli.adapt import adapt_cmd
from ssl_vit.cli.common import SslvitGroup
from ssl_vit.cli.data import data_group
from ssl_vit.cli.diagnose import diagnose_cmd
from ssl_vit.cli.export import export_cmd
from ssl_vit.cli.knn import knn_cmd
from ssl_vit.cli.linear_probe import linear_probe_cmd
from ssl_vit.cli.pretrain import pretrain_cmd
from ssl_vit.cli.search import search_cmd
from ssl_vit.cli.sweep import sweep_cmd
from ssl_vit.cli.train import train_cmd


@click.group(cls=SslvitGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="sslvit")
def cli():
    """sslvit: self-supervised ViT pretraining (MoCo v3) with live stability diagnostics.

    \b
    Quick tour:
      sslvit pretrain --recipe smoke                  # 20 s on a laptop CPU
      tensorboard --logdir runs/<run>/tensorboard     # curves
      sslvit knn --checkpoint runs/<run> --dataset fmnist
      sslvit train --recipe smoke                     # supervised (model.bootstrap.enabled=true: bootstrapped ViT)
      sslvit data build-vtab --root data/vtab-1k      # VTAB-1k-format tasks (Fashion-MNIST here)
      sslvit adapt --method convpass --checkpoint runs/<run> --dataset vtab:data/vtab-1k/fmnist_rot --recipe vtab_cpu
      sslvit search --recipe vitas_smoke              # ViTAS superformer + evolutionary search
      sslvit sweep --recipe smoke --grid optim.lr=1e-3,3e-3 --seeds 0,1 --output-dir runs/sw   # lr sweep
    """


cli.add_command(pretrain_cmd)
cli.add_command(adapt_cmd)
cli.add_command(train_cmd)
cli.add_command(knn_cmd)
cli.add_command(linear_probe_cmd)
cli.add_command(export_cmd)
cli.add_command(diagnose_cmd)
cli.add_command(search_cmd)
cli.add_command(sweep_cmd)
cli.add_command(data_group)


def main():
    cli(prog_name="sslvit")
