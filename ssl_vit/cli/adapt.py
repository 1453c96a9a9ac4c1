"""`sslvit adapt`: Convpass or a PETL baseline on a frozen backbone; select on val, report test once."""

from __future__ import annotations

import typing
from pathlib import Path

import click

from ssl_vit.adapt.methods import get_method
from ssl_vit.adapt.train import run_adapt
from ssl_vit.cli.common import Reads, alias_flags, checkpoint_option, default_output_dir, overwrite_option, set_option
from ssl_vit.config.loading import dump_yaml, load_config
from ssl_vit.config.schema import AdaptMethodName
from ssl_vit.config.validate import validate_adapt
from ssl_vit.core.rundir import delete_outputs, run_files
from ssl_vit.data import parse_spec
from ssl_vit.engine.cpu import cpu_threads
from ssl_vit.errors import SslvitError
from ssl_vit.evaluation.results import write_results

ADAPT_FILES = ("config.yaml", "metrics.jsonl", "results.json", "results.md", "adapter.safetensors")

#: What `sslvit adapt` reads; a --set of any other key is refused (it would have no effect).
READS = Reads(
    "adapt",
    (
        "seed",
        "model",
        "data.data_dir",
        "data.download",
        "data.num_workers",
        "data.on_bad_image",
        "eval.batch_size",
        "eval.max_train",
        "eval.max_test",
        "adapt",
        "log.progress",
        "log.tensorboard",
        "train.device",
        "train.precision",
        "train.threads",
    ),
)

METHOD_NAMES = list(typing.get_args(AdaptMethodName))  # the choices of adapt.method


@click.command("adapt")
@click.option(
    "--method",
    type=click.Choice(METHOD_NAMES),
    default=None,
    help="Adaptation method: an alias of --set adapt.method (default: the recipe's adapt.method, else convpass).",
)
@checkpoint_option
@click.option(
    "--dataset",
    required=True,
    help="Labelled dataset spec: vtab:<root>/<task> | fewshot:<root>?shots=k&seed=s | fmnist | cifar100:<root> ...",
)
@click.option(
    "--recipe",
    default=None,
    help="Recipe with an adapt: section (vtab_convpass, fewshot_convpass, vtab_cpu) or a .yaml path.",
)
@click.option(
    "--output-dir",
    type=click.Path(file_okay=False),
    help="Where results.json, adapter.safetensors and tensorboard/ go (default: runs/adapt-<time>).",
)
@overwrite_option(
    "outputs of an earlier run in --output-dir (config.yaml, metrics.jsonl, results.*, "
    "adapter.safetensors, tensorboard/: deleted first, said in one line)"
)
@set_option
def adapt_cmd(method, checkpoint, dataset, recipe, output_dir, overwrite, overrides):
    """Adapt a frozen ViT to a labelled dataset and print top1=<percent> last.

    \b
    Protocol: every scale in adapt.scales (convpass, convpass_attn, lora) and conv init in adapt.conv_init
    (convpass) is trained on train800 and scored on val200 after every epoch; the best (scale, init, epoch)
    is retrained on train800val200 and the test split is evaluated ONCE (the published Convpass code
    keeps the best test epoch instead). Datasets without a val split hold out adapt.val_fraction of train.
    Writes results.json / results.md (top1, trainable_params, trainable_share, chosen scale and epoch),
    adapter.safetensors (trained tensors only + the backbone's sha256), metrics.jsonl and tensorboard/.

    \b
    Examples:
      sslvit adapt --method convpass --checkpoint runs/fm --dataset vtab:/data/vtab-1k/cifar --recipe vtab_convpass
      sslvit adapt --method lora --checkpoint vit-b-300ep.pth.tar --dataset 'fewshot:/data/fgvc/pets?shots=4&seed=0' \\
          --recipe fewshot_convpass
      sslvit adapt --method linear --checkpoint runs/fm --dataset fmnist --recipe vtab_cpu --set eval.max_train=2000
    """

    log = lambda m: click.echo(m, err=True)  # noqa: E731
    READS.check_sets(overrides)
    overrides = alias_flags(overrides, ("--method", "adapt.method", method))
    model_sets = [o for o in overrides if o.split("=", 1)[0].strip().startswith("model.")]
    cfg = load_config(recipe, [o for o in overrides if o not in model_sets], validate_cfg=False)
    get_method(cfg.adapt.method)
    validate_adapt(cfg)
    parse_spec(dataset)
    out = Path(output_dir) if output_dir else default_output_dir("adapt")
    found = run_files(out, ADAPT_FILES, ("tensorboard",))
    if found and not overwrite:
        raise SslvitError(
            f"'{out}' already holds outputs ({', '.join(found)}); pass --overwrite to replace them "
            f"or choose another --output-dir"
        )
    if found:
        delete_outputs(out, found, log, "the earlier outputs")
    out.mkdir(parents=True, exist_ok=True)
    dump_yaml(cfg, out / "config.yaml", header=f"sslvit adapt --checkpoint {checkpoint} --dataset {dataset}")
    with cpu_threads(cfg.train.threads):
        res = run_adapt(checkpoint, dataset, cfg, out, model_sets, log)
    write_results(out, res, f"adapt ({res['method']})")
    click.echo(
        f"{res['method']}: trainable {res['trainable_params']:,} params "
        f"({100 * res['trainable_share']:.3f} % of {res['total_params']:,}); "
        f"scale {res['scale']}, conv init {res['conv_init']}, epoch {res['epoch']}/{res['epochs']}"
        + (f", val top-1 {res['val_top1']:.2f}" if res["val_top1"] is not None else "")
    )
    click.echo(f"results: {out / 'results.json'}")
    click.echo(f"top1={res['top1']:.2f}")
