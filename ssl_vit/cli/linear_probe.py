"""`sslvit linear-probe`: a linear classifier on a frozen backbone's features (fast or MoCo v3 protocol)."""

from __future__ import annotations

from pathlib import Path

import click

from ssl_vit.cli.common import Reads, checkpoint_option, default_output_dir, overwrite_option, set_option
from ssl_vit.core.rundir import refuse_to_replace
from ssl_vit.engine.cpu import cpu_threads
from ssl_vit.evaluation.linear_probe import run_linear_probe
from ssl_vit.evaluation.results import RESULT_FILES, write_results
from ssl_vit.evaluation.runner import describe_backbone, prepare_eval

#: What `sslvit linear-probe` reads; a --set of any other key is refused (it would have no effect).
READS = Reads(
    "linear-probe",
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
        "eval.feature_cache",
        "eval.cache_dir",
        "probe",
        "log.progress",
        "train.device",
        "train.precision",
        "train.threads",
    ),
)


@click.command("linear-probe")
@checkpoint_option
@click.option(
    "--dataset", required=True, help="Labelled dataset spec: fmnist | cifar10:<root> | imagefolder:<root> ..."
)
@click.option(
    "--output-dir",
    type=click.Path(file_okay=False),
    help="Where results.json goes (default: runs/linear-probe-<time>).",
)
@overwrite_option("results.json / results.md in --output-dir")
@set_option
def linear_probe_cmd(checkpoint, dataset, output_dir, overwrite, overrides):
    """Linear probe of a frozen backbone (CLS token after the final norm). Prints top1=<percent> last.

    \b
    Modes (--set probe.mode=...):
      fast      (default) logistic regression on cached features; lr / weight decay chosen on a held-out
                part of train (probe.val_fraction), then refit on all of train
      protocol  MoCo v3 main_lincls: SGD momentum 0.9, lr 3 x batch/256, 90 epochs cosine, no weight decay,
                random-resized-crop + flip; reports the last-epoch top1 and the best epoch's top1_best
    Features (both modes): the CLS token after the final norm (MoCo v3); DINO's instead with
      --set probe.n_last_blocks=4                      CLS of the last 4 blocks, concatenated (DINO ViT-S)
      --set probe.avgpool_patchtokens=true             + the mean of the last block's patch tokens (DINO ViT-B)
    Features are cached (eval.cache_dir, $SSLVIT_CACHE_DIR or ~/.cache/sslvit/features) and shared with `sslvit knn`.

    \b
    Examples:
      sslvit linear-probe --checkpoint runs/demo --dataset fmnist
      sslvit linear-probe --checkpoint vit-s-300ep.pth.tar --dataset cifar10:/data/cifar --set probe.mode=protocol
      sslvit linear-probe --checkpoint timm_vit.safetensors --dataset fmnist --set model.num_heads=6
    """

    log = lambda m: click.echo(m, err=True)  # noqa: E731
    READS.check_sets(overrides)
    out = Path(output_dir) if output_dir else default_output_dir("linear-probe")
    refuse_to_replace([out / f for f in RESULT_FILES], overwrite, "results of an earlier evaluation")
    s = prepare_eval(checkpoint, dataset, overrides, log)
    with cpu_threads(s.cfg.train.threads):
        res = run_linear_probe(s.loaded, dataset, s.cfg, s.cache, s.device, s.precision, log)
    res.update(describe_backbone(s.loaded), checkpoint=s.loaded.source, precision=s.precision.name)
    write_results(out, res, f"linear probe ({res['mode']})")
    if res["mode"] == "protocol":
        click.echo(
            f"top-1 last epoch {res['top1_last']:.2f} (reported), best epoch {res['best_epoch']}: "
            f"{res['top1_best']:.2f} (chosen on test, optimistic)"
        )
    else:
        click.echo(f"chose lr={res['lr']:g}, weight_decay={res['weight_decay']:g} (val top-1 {res['val_top1']:.2f})")
    click.echo(f"results: {out / 'results.json'}")
    click.echo(f"top1={res['top1']:.2f}")
