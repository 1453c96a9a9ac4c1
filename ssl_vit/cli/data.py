"""`sslvit data`: write downstream datasets in the layouts the readers expect (VTAB-1k, few-shot)."""

from __future__ import annotations

from pathlib import Path

import click

from ssl_vit.data.build_fewshot import build_fewshot_fmnist
from ssl_vit.data.build_vtab import build_vtab_task
from ssl_vit.errors import SslvitError


def _ints(text: str, what: str):
    try:
        vals = [int(t) for t in text.replace(" ", "").split(",") if t]
    except ValueError:
        raise SslvitError(f"--{what} takes comma-separated integers, e.g. --{what} 1,2,4; got '{text}'") from None
    if not vals:
        raise SslvitError(f"--{what} is empty; give comma-separated integers")
    return vals


@click.group("data")
def data_group():
    """Build downstream datasets on disk: VTAB-1k task folders and few-shot lists (NOAH's layouts)."""


@data_group.command("build-vtab")
@click.option(
    "--root",
    required=True,
    type=click.Path(file_okay=False),
    help="The vtab-1k folder: each task is written to <root>/<task>/ (then use vtab:<root>/<task>).",
)
@click.option(
    "--tasks",
    default="fmnist,fmnist_rot,fmnist_sub",
    show_default=True,
    help="Comma-separated task names: fmnist, fmnist_rot, fmnist_sub (Fashion-MNIST), or cifar, caltech101, "
    "dtd, oxford_flowers102, oxford_iiit_pet, svhn, sun397, patch_camelyon, eurosat, clevr_count, "
    "clevr_dist (torchvision datasets under --data-dir).",
)
@click.option(
    "--data-dir",
    type=click.Path(),
    default=None,
    help="Where the source datasets live (torchvision's layout; Fashion-MNIST IDX files). "
    "Fashion-MNIST is also found in Debian's dataset-fashion-mnist.",
)
@click.option("--seed", default=0, show_default=True, type=int, help="Picks the 800/200 images and the test subset.")
@click.option(
    "--test-size",
    default=2000,
    show_default=True,
    type=click.IntRange(min=0),
    help="Cap on test images (0 = the whole test split, as the VTAB protocol reports).",
)
@click.option("--download", is_flag=True, help="Let torchvision download missing source datasets into --data-dir.")
@click.option("--overwrite", is_flag=True, help="Replace task folders that already exist.")
def build_vtab_cmd(root, tasks, data_dir, seed, test_size, download, overwrite):
    """Write VTAB-1k task folders: train800/val200/train800val200/test lists + images + task.json.

    \b
    Example (runs here, from Fashion-MNIST):
      sslvit data build-vtab --root data/vtab-1k
      sslvit adapt --method convpass --checkpoint runs/demo --dataset vtab:data/vtab-1k/fmnist_rot
    """

    names = [t.strip() for t in tasks.split(",") if t.strip()]
    if not names:
        raise SslvitError("--tasks is empty; e.g. --tasks fmnist,fmnist_rot")
    for task in names:
        meta = build_vtab_task(task, Path(root), seed, test_size, data_dir, download, overwrite)
        c = meta["counts"]
        click.echo(
            f"{Path(root) / task}: train800 {c['train800']}, val200 {c['val200']}, train800val200 "
            f"{c['train800val200']}, test {c['test']}; {len(meta['classes'])} classes ({meta['origin']})"
        )


@data_group.command("build-fewshot")
@click.option(
    "--root",
    required=True,
    type=click.Path(file_okay=False),
    help="The few-shot dataset folder to write (annotations/ + images/; then fewshot:<root>?shots=k&seed=s).",
)
@click.option(
    "--data-dir", type=click.Path(), default=None, help="Folder with the Fashion-MNIST IDX files (else Debian's)."
)
@click.option("--shots", default="1,2,4,8,16", show_default=True, help="Comma-separated shots per class.")
@click.option("--seeds", default="0,1,2", show_default=True, help="Comma-separated split seeds.")
@click.option(
    "--val-per-class", default=20, show_default=True, type=click.IntRange(min=1), help="val_meta.list images per class."
)
@click.option(
    "--test-size", default=2000, show_default=True, type=click.IntRange(min=0), help="Test images (0 = all 10,000)."
)
@click.option("--download", is_flag=True, help="Download Fashion-MNIST with torchvision when it is not on disk.")
@click.option("--overwrite", is_flag=True, help="Replace the folder if it exists.")
def build_fewshot_cmd(root, data_dir, shots, seeds, val_per_class, test_size, download, overwrite):
    """Write few-shot lists (NOAH's layout) from Fashion-MNIST: k shots per class for each seed.

    \b
    Example:
      sslvit data build-fewshot --root data/few-shot/fmnist
      sslvit adapt --method convpass --checkpoint runs/demo --dataset "fewshot:data/few-shot/fmnist?shots=4&seed=0"
    """

    meta = build_fewshot_fmnist(
        Path(root),
        _ints(shots, "shots"),
        _ints(seeds, "seeds"),
        val_per_class,
        test_size,
        data_dir=data_dir,
        download=download,
        overwrite=overwrite,
    )
    c = meta["counts"]
    click.echo(
        f"{root}: {len(meta['classes'])} classes, shots {meta['shots']} x seeds {meta['seeds']}, "
        f"val {c['val_meta.list']}, test {c['test_meta.list']}"
    )
