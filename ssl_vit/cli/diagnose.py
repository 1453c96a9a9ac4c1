"""`sslvit diagnose`: stability report of one or more runs (plots + Markdown), also while they train."""

from __future__ import annotations

from pathlib import Path

import click

from ssl_vit.cli.common import Reads, default_output_dir, set_option
from ssl_vit.diagnostics.report import read_run, write_comparison, write_run_report

#: What `sslvit diagnose` reads: the report thresholds (diag.*) and the run facts it reports against (log, model,
#: train); a --set of any other key is refused (it would have no effect).
READS = Reads("diagnose", ("diag", "log", "model", "train"))


@click.command("diagnose")
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(file_okay=False))
@click.option(
    "--output-dir",
    type=click.Path(file_okay=False),
    help="Where the comparison of several runs goes (default: runs/diagnose-<time>).",
)
@set_option
def diagnose_cmd(run_dirs, output_dir, overrides):
    """Stability report of RUN_DIR(s) from metrics.jsonl: curves with spikes marked, a table (spike
    count, largest spike and where, kNN dips, final kNN, rank/collapse warnings) and a verdict.

    Writes report.md, diag_training.png and diag_representation.png into each run dir; with several
    runs also a comparison (report.md, compare.png, compare_first_vs_last.png) into --output-dir.
    Works on a run that is still training. --set overrides report thresholds, e.g. --set diag.knn_dip=1.

    \b
    Example:
      sslvit diagnose runs/fm
      sslvit diagnose runs/trainable runs/frozen --output-dir runs/compare
    """

    READS.check_sets(overrides)
    runs = [read_run(d, overrides) for d in run_dirs]
    for run in runs:
        paths = write_run_report(run)
        click.echo(f"report: {paths[0]}")
    if len(runs) > 1:
        out = Path(output_dir) if output_dir else default_output_dir("diagnose")
        paths = write_comparison(runs, out)
        click.echo(f"comparison: {paths[0]}")
    elif output_dir:
        paths = write_run_report(runs[0], Path(output_dir))
        click.echo(f"report: {paths[0]}")
