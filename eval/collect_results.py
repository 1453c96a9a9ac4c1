"""Gather the results.json files of many runs into one table (Markdown and/or CSV).

The logic is :mod:`ssl_vit.evaluation.collect`; this is its command line.

Example::

    .venv/bin/python eval/collect_results.py runs/ /tmp/exp --md results.md --csv results.csv
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout
from ssl_vit.evaluation.collect import collect_rows, to_csv, to_markdown  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Collect results.json files into one Markdown / CSV table.")
    ap.add_argument("paths", nargs="+", help="run folders (searched recursively) or results.json files")
    ap.add_argument("--md", help="write the Markdown table here (default: print it)")
    ap.add_argument("--csv", help="write a CSV here")
    ap.add_argument("--sort", default="dataset,metric,top1", help="comma-separated sort keys (top1 sorts descending)")
    args = ap.parse_args(argv)
    rows = collect_rows(args.paths, args.sort)
    if not rows:
        print(
            "error: no results.json found under " + ", ".join(args.paths) + "; run an evaluation first", file=sys.stderr
        )
        return 2
    md = to_markdown(rows)
    if args.md:
        Path(args.md).write_text(md)
    else:
        print(md, end="")
    if args.csv:
        Path(args.csv).write_text(to_csv(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
