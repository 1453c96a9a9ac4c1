"""`sslvit knn`: weighted kNN top-1 of a frozen backbone (DINO protocol, faiss)."""

from __future__ import annotations

from pathlib import Path

import click

from ssl_vit.cli.common import Reads, alias_flags, checkpoint_option, default_output_dir, overwrite_option, set_option
from ssl_vit.config.schema import EvalConfig
from ssl_vit.config.validate import check_knn_temperature, validate_knn
from ssl_vit.core.rundir import refuse_to_replace
from ssl_vit.engine.cpu import cpu_threads
from ssl_vit.evaluation.knn import run_knn_as_configured
from ssl_vit.evaluation.results import RESULT_FILES, write_results
from ssl_vit.evaluation.runner import describe_backbone, prepare_eval

#: What `sslvit knn` reads; a --set of any other key is refused (it would have no effect).
READS = Reads(
    "knn",
    (
        "model",
        "data.data_dir",
        "data.download",
        "data.num_workers",
        "data.on_bad_image",
        "eval.dataset",
        "eval.knn_k",
        "eval.knn_temperature",
        "eval.batch_size",
        "eval.max_train",
        "eval.max_test",
        "eval.feature_cache",
        "eval.cache_dir",
        "log.progress",
        "train.device",
        "train.precision",
        "train.threads",
    ),
)


@click.command("knn")
@checkpoint_option
@click.option(
    "--dataset",
    required=True,
    help="Labelled dataset spec: fmnist | cifar10:<root> | imagefolder:<root> ... (an alias of --set eval.dataset).",
)
@click.option(
    "--k",
    "k",
    default=None,
    type=click.IntRange(min=1),
    help=f"Neighbours: an alias of --set eval.knn_k (default: the checkpoint's config, else {EvalConfig.knn_k}).",
)
@click.option(
    "--temperature",
    default=None,
    type=float,
    help=f"Vote weight exp(sim / T); T in [0.02, 10]: an alias of --set eval.knn_temperature (default: the "
    f"checkpoint's config, else {EvalConfig.knn_temperature}).",
)
@click.option(
    "--output-dir", type=click.Path(file_okay=False), help="Where results.json goes (default: runs/knn-<time>)."
)
@overwrite_option("results.json / results.md in --output-dir")
@set_option
def knn_cmd(checkpoint, dataset, k, temperature, output_dir, overwrite, overrides):
    """kNN evaluation of a frozen backbone: CLS features after the final norm, L2-normalised,
    k nearest training images vote with weight exp(cos / T). Prints top1=<percent> last; results.json
    records the k and T used. Features are cached (eval.cache_dir; --set eval.feature_cache=false to turn
    off) and shared with `sslvit linear-probe`.

    \b
    Example:
      sslvit knn --checkpoint runs/demo --dataset fmnist
      sslvit knn --checkpoint runs/demo --dataset fmnist --k 10      # the same as --set eval.knn_k=10
    """

    READS.check_sets(overrides)
    if temperature is not None:
        check_knn_temperature(temperature, "--temperature")
    overrides = alias_flags(
        overrides,
        ("--dataset", "eval.dataset", dataset),
        ("--k", "eval.knn_k", k),
        ("--temperature", "eval.knn_temperature", temperature),
    )
    out = Path(output_dir) if output_dir else default_output_dir("knn")
    refuse_to_replace([out / f for f in RESULT_FILES], overwrite, "results of an earlier evaluation")
    s = prepare_eval(checkpoint, dataset, overrides, lambda m: click.echo(m, err=True))
    cfg = s.cfg
    validate_knn(cfg.eval)
    with cpu_threads(cfg.train.threads):
        res = run_knn_as_configured(
            s.loaded.model,
            s.loaded.input_spec,
            cfg,
            cfg.eval.dataset,
            device=s.device,
            precision=s.precision,
            cache=s.cache,
            weights_hash=s.loaded.weights_hash,
        )
    res.update(describe_backbone(s.loaded), checkpoint=s.loaded.source, metric="knn", precision=s.precision.name)
    write_results(out, res, "kNN")
    click.echo(f"results: {out / 'results.json'}")
    click.echo(f"top1={res['top1']:.2f}")
