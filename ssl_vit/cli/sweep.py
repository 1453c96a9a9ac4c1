"""`sslvit sweep`: a recipe over a grid of --set values and seeds, side by side, resumable, summarised."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import click

from ssl_vit.cli.common import Reads, default_output_dir, set_option
from ssl_vit.cli.pretrain import READS as PRETRAIN_READS
from ssl_vit.config import load_config
from ssl_vit.errors import SslvitError
from ssl_vit.sweep.grid import EVAL_DEFAULTS, SweepSpec, check_sets, expand, parse_grid, parse_seeds, validate
from ssl_vit.sweep.records import check_output_dir, load_spec_file
from ssl_vit.sweep.runner import default_threads, pretrain_command, run_sweep
from ssl_vit.sweep.summary import PLOT, SUMMARY_JSON, SUMMARY_MD, write_summary

#: Every run of a sweep is an `sslvit pretrain`: --set and --grid keys are what it reads.
READS = Reads("sweep", PRETRAIN_READS.keys)


@click.command("sweep")
@click.option("--recipe", help="Recipe name (recipes/<name>.yaml) or path to a YAML file.")
@click.option(
    "--grid",
    "grid",
    multiple=True,
    metavar="KEY=V1,V2,...",
    help="A swept config key and its values (repeatable; one run per combination). Commas inside "
    "[...] stay, e.g. --grid aug.crop_scale=[0.2,1.0],[0.5,1.0].",
)
@click.option(
    "--seeds",
    metavar="S1,S2,...",
    help="Seeds, each point is run once per seed (default: the recipe's seed). 0-2 means 0,1,2.",
)
@set_option
@click.option(
    "--output-dir",
    type=click.Path(),
    help="Sweep directory (default: runs/sweep-<time>). Rerunning with the same directory continues the sweep.",
)
@click.option(
    "--jobs",
    type=int,
    default=None,
    help="Runs at once, as separate processes (default: 1, or what the sweep being continued used).",
)
@click.option(
    "--threads",
    type=int,
    default=None,
    help="CPU threads per run: train.threads and OMP_NUM_THREADS (default: cores / jobs).",
)
@click.option(
    "--retry-failed", is_flag=True, help="Run again the runs that failed earlier (default: keep them as failed)."
)
@click.option(
    "--summarize-only",
    is_flag=True,
    help="Only re-read the runs of --output-dir and rewrite sweep.json, sweep.md and the plot; runs nothing.",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="Validate every point and list the runs and their commands; runs nothing, writes nothing.",
)
def sweep_cmd(recipe, grid, seeds, overrides, output_dir, jobs, threads, retry_failed, summarize_only, dry_run):
    """Pretrain a recipe over a grid of config values and seeds, up to --jobs runs at once, and
    summarise: final kNN, spikes, kNN dips, alarms, RankMe, attention logits and CPU time per run, and the
    LR sensitivity (Wortsman et al. 2023) per arm with an lr-sensitivity plot.

    \b
    Every point's config is loaded and checked first (a bad key or value: one error line, nothing run).
    One run dir per point, named from its grid values (e.g. lr=1.2e-2_frozen=false_seed=0), each an
    ordinary `sslvit pretrain` run (`--set seed=S --set train.threads=T`, plus eval.max_train=0
    eval.max_test=0 so the final kNN uses the full splits; your --set wins), its output in <run>/run.log.
    Rerun the same command (or just `sslvit sweep --output-dir D`) to continue a stopped sweep: finished
    runs are skipped, half-done ones continue with `pretrain --resume`, failed ones stay failed unless
    --retry-failed. An output dir that holds a different sweep is refused.

    \b
    Writes into the output dir: sweep.json and sweep.md (one row per run; LR sensitivity per arm, an arm
    being the grid values other than optim.lr, or other than the first numeric key when optim.lr is not
    swept) and lr_sensitivity.png (kNN vs lr, log axis, mean and min-max over seeds). Exit 1 if a run failed.

    \b
    Examples:
      sslvit sweep --recipe instability_fmnist \\
          --grid optim.lr=1.5e-3,3e-3,6e-3,1.2e-2,2.4e-2,4.8e-2 --grid model.patch_embed.frozen=false,true \\
          --seeds 0,1 --output-dir runs/sweep --jobs 2 --threads 1
      sslvit sweep --recipe smoke --grid optim.lr=1e-3,3e-3 --set train.max_steps=10 --dry-run
      sslvit sweep --output-dir runs/sweep                    # continue a stopped sweep
      sslvit sweep --output-dir runs/sweep --summarize-only   # re-read the runs, rewrite the summary
      tensorboard --logdir runs/sweep                         # every run's curves, overlaid
    """

    log = lambda m: click.echo(m, err=True)  # noqa: E731 -- progress on stderr, results on stdout
    given = bool(recipe or grid or seeds or overrides)
    if summarize_only:
        if dry_run:
            raise SslvitError("--summarize-only and --dry-run do not go together; pass one of them")
        if not output_dir:
            raise SslvitError("--summarize-only needs --output-dir pointing at a sweep")
        out = Path(output_dir)
        check_output_dir(out, _spec_from_args(recipe, grid, seeds, overrides) if given else None)
        _report(write_summary(out), out)
        return
    if jobs is not None and jobs < 1:
        raise SslvitError(f"--jobs must be >= 1, got {jobs}")
    if threads is not None and threads < 0:
        raise SslvitError(f"--threads must be >= 0 (0: all cores), got {threads}")
    out = Path(output_dir) if output_dir else default_output_dir("sweep")
    if given:
        spec = _spec_from_args(recipe, grid, seeds, overrides)
    else:
        stored = load_spec_file(out) if output_dir else None
        if stored is None:
            raise SslvitError(
                "nothing to sweep: pass --recipe and at least one --grid key=v1,v2 (e.g. --recipe smoke "
                "--grid optim.lr=1e-3,3e-3), or the --output-dir of a sweep to continue"
            )
        spec = SweepSpec.from_dict(stored)
        threads = stored.get("threads") if threads is None else threads
        jobs = stored.get("jobs") if jobs is None else jobs
    jobs = jobs or 1
    threads = default_threads(jobs) if threads is None else threads
    cfgs = validate(spec, threads)
    check_output_dir(out, spec)
    if dry_run:
        for p in expand(spec):
            cmd = pretrain_command(spec, p, out / p.name, False, threads)
            click.echo(f"{p.name}: {' '.join(shlex.quote(c) for c in cmd[1:])}")
        click.echo(f"{len(cfgs)} runs, {jobs} at once, {threads} thread(s) each; nothing run (--dry-run)")
        return
    res = run_sweep(spec, out, cfgs, jobs=jobs, threads=threads, retry_failed=retry_failed, log=log)
    _report(res.summary, out)
    if res.failed:
        sys.exit(1)


def _spec_from_args(recipe, grid, seeds, overrides):

    if not recipe:
        raise SslvitError(
            "no recipe given; pass --recipe NAME (e.g. --recipe smoke) with --grid, or only "
            "--output-dir to continue a stored sweep"
        )
    axes = parse_grid(grid)
    if not axes:
        raise SslvitError("empty grid: give at least one --grid key=v1,v2, e.g. --grid optim.lr=1.5e-3,3e-3")
    check_sets(overrides, axes)
    READS.check_sets(overrides)
    READS.check([a.key for a in axes], how="--grid")
    seed_list = parse_seeds(seeds)
    if seed_list is None:
        seed_list = [int(load_config(recipe, [*EVAL_DEFAULTS, *overrides]).seed)]
    return SweepSpec(recipe, axes, seed_list, list(overrides))


def _report(s, out) -> None:
    counts = ", ".join(f"{n} {k}" for k, n in s["status_counts"].items())
    click.echo(f"sweep dir:   {out} ({SUMMARY_JSON}, {SUMMARY_MD}" + (f", {PLOT})" if s.get("plot") else ")"))
    click.echo(f"runs:        {s['n_runs']} ({counts}); {s['cpu_s_total']:.0f} CPU-s")
    if s["lr_key"]:
        click.echo(
            f"LR sensitivity over {s['lr_key']} (Wortsman et al. 2023; mean kNN gap to the arm's best lr, points):"
        )
        for a in s["arms"]:
            sens = "–" if a["lr_sensitivity"] is None else f"{a['lr_sensitivity']:.2f}"
            best = "" if a["best_lr"] is None else f"  (best lr {a['best_lr']:g}: kNN {a['best_knn']:.2f})"
            part = "" if a["n_lr"] == a["n_lr_grid"] else f"  [{a['n_lr']} of {a['n_lr_grid']} lrs]"
            click.echo(f"  {a['arm']}: {sens}{best}{part}")
    failed = [r for r in s["runs"] if r["status"] == "failed"]
    for r in failed:
        click.echo(f"FAILED {r['name']}: exit {r['exit']}, {r['last_line']!r}; log {r['log']}")
    click.echo(f"TensorBoard: {s['tensorboard']}    # every run's curves, overlaid")
