"""VTAB-1k table (per task, per group, mean of group means) and few-shot curves (mean +- std over seeds, PNG)
from the results.json files of `sslvit adapt` runs. The logic is in ``ssl_vit/evaluation/vtab_table.py``.

Example::

    .venv/bin/python eval/vtab_table.py runs/adapt --out runs/tables
    # -> runs/tables/vtab_table.{md,csv,json}, runs/tables/fewshot_curves.{md,csv,json,png}
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ssl_vit.errors import SslvitError  # noqa: E402
from ssl_vit.evaluation.vtab_table import (
    fewshot_markdown,
    load_results,
    vtab_markdown,  # noqa: E402
    write_fewshot_curves,
    write_vtab_table,
)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="VTAB-1k table and few-shot curves from results.json files.")
    ap.add_argument("paths", nargs="+", help="results.json files or folders (searched recursively)")
    ap.add_argument("--out", required=True, help="folder for vtab_table.* and fewshot_curves.*")
    args = ap.parse_args(argv)
    try:
        res = load_results(args.paths)
        kinds = {r["dataset"].partition(":")[0] for r in res}
        if "vtab" in kinds:
            print(vtab_markdown(write_vtab_table(res, Path(args.out))))
        if "fewshot" in kinds:
            print(fewshot_markdown(write_fewshot_curves(res, Path(args.out))))
        if not kinds & {"vtab", "fewshot"}:
            raise SslvitError("no vtab: or fewshot: results among the given files")
    except SslvitError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
