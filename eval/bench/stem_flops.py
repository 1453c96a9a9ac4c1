"""Print the per-stem parameters / FLOPs table (Markdown) documented in ``docs/stems.md``.

Counted with ``torch.utils.flop_counter.FlopCounterMode`` on the meta device (``ssl_vit/models/flops.py``):
conv/matmul FLOPs for one image, eval mode. ``tests/models/test_stems.py`` checks the documented table
equals this output.

Example::

    .venv/bin/python eval/bench/stem_flops.py                # the table for the default settings
    .venv/bin/python eval/bench/stem_flops.py --setting vit_base,224,16,3
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from ssl_vit.models.flops import TABLE_SETTINGS, markdown_table, stem_cost_rows  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--setting",
        action="append",
        default=[],
        metavar="NAME,IMG,PATCH,CHANS",
        help="backbone,img_size,patch_size,in_chans (repeatable; default: the documented settings)",
    )
    a = ap.parse_args(argv)
    settings = [(s.split(",")[0], *map(int, s.split(",")[1:])) for s in a.setting] or list(TABLE_SETTINGS)
    print(markdown_table(stem_cost_rows(settings)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
