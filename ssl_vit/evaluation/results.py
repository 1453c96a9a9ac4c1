"""Result files of every evaluation: ``results.json`` plus a one-row Markdown table, written atomically."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict

from ssl_vit.core.atomic import atomic_write_text

RESULT_FILES = ("results.json", "results.md")  # what write_results writes into its dir


def markdown_table(rows, columns) -> str:
    head = "| " + " | ".join(columns) + " |\n|" + "---|" * len(columns) + "\n"

    def fmt(v):
        return f"{v:.2f}" if isinstance(v, float) else str(v)

    return head + "".join("| " + " | ".join(fmt(r.get(c, "")) for c in columns) + " |\n" for r in rows)


def write_results(out_dir: Path, result: Dict, title: str = "results") -> Path:
    out_dir = Path(out_dir)
    path = out_dir / "results.json"
    atomic_write_text(path, json.dumps(result, indent=2, sort_keys=True) + "\n")
    cols = [
        c
        for c in (
            "backbone",
            "dataset",
            "metric",
            "features",
            "method",
            "top1",
            "top1_best",
            "n_train",
            "n_test",
            "trainable_params",
            "trainable_share",
            "wall_s",
            "checkpoint",
        )
        if c in result
    ]
    atomic_write_text(out_dir / "results.md", f"# {title}\n\n" + markdown_table([result], cols))
    return path
