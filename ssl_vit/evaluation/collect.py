"""Many runs' ``results.json`` -> one table (Markdown / CSV): what ``eval/collect_results.py`` prints.

Every sslvit evaluation (pretrain's final kNN, ``sslvit knn``, ``sslvit linear-probe``, ``sslvit adapt``) writes a
``results.json``; :func:`collect_rows` finds them under the given folders and makes one row each: backbone,
method, dataset, metric, probe features, top-1 (and best-epoch top-1 where reported), parameters, train/test
sizes, wall time and where the row came from. Missing columns are filled from the run's ``config.yaml`` and the
checkpoint's safetensors header (shapes only; no weights are read).

Example::

    rows = collect_rows(["runs/"], sort="dataset,metric,top1")
    print(to_markdown(rows))
"""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path
from typing import Callable, Dict, Iterable, List

import yaml
from safetensors import safe_open

from ssl_vit.config.loading import from_dict
from ssl_vit.config.schema import ModelConfig
from ssl_vit.evaluation.runner import backbone_label

COLUMNS = [
    "backbone",
    "method",
    "dataset",
    "metric",
    "features",
    "top1",
    "top1_best",
    "params",
    "n_train",
    "n_test",
    "wall_s",
    "source",
]


def config_near(path: Path) -> Dict:
    for d in (path.parent, path.parent.parent):
        cfg = d / "config.yaml"
        if cfg.is_file():
            try:
                return yaml.safe_load(cfg.read_text()) or {}
            except (OSError, yaml.YAMLError):
                return {}
    return {}


def params_from_checkpoint(ckpt: str):
    """Parameter count from a safetensors header (shapes only); None when not available."""
    p = Path(ckpt) if ckpt else None
    if p is None or p.suffix != ".safetensors" or not p.is_file():
        return None
    try:
        n = 0
        with safe_open(str(p), framework="pt") as f:
            for k in f.keys():
                size = 1
                for s in f.get_slice(k).get_shape():
                    size *= s
                n += size
        return n
    except Exception:  # noqa: BLE001 - a table row without params is better than no table
        return None


def row_for(path: Path) -> Dict:
    r = json.loads(path.read_text())
    cfg = config_near(path)
    model = cfg.get("model") or {}
    backbone = r.get("backbone")
    if not backbone and model:
        try:
            backbone = backbone_label(from_dict(ModelConfig, model, "model."))
        except Exception:  # noqa: BLE001 - a config of another version: show its name only
            backbone = str(model.get("name"))
    metric = r.get("metric") or ("linear" if "mode" in r else "knn")
    return {
        "backbone": backbone or "?",
        "method": r.get("method")
        or (r.get("pretrain_method") if r.get("pretrain_method") != "unknown" else None)
        or (cfg.get("method") or {}).get("name")
        or "?",
        "dataset": r.get("dataset", "?"),
        "metric": metric,
        "features": r.get("features"),
        "top1": r.get("top1"),
        "top1_best": r.get("top1_best"),
        "params": r.get("params") or params_from_checkpoint(r.get("checkpoint")),
        "n_train": r.get("n_train"),
        "n_test": r.get("n_test"),
        "wall_s": r.get("wall_s"),
        "source": str(path.parent),
    }


def find_results(paths: Iterable[str], warn: Callable[[str], None] = print) -> List[Path]:
    """results.json files: the given ones, and every one under the given folders (recursively)."""
    out: List[Path] = []
    for p in map(Path, paths):
        if p.is_file() and p.name.endswith(".json"):
            out.append(p)
        elif p.is_dir():
            out += sorted(p.rglob("results.json"))
        else:
            warn(f"'{p}' is neither a results.json nor a folder; skipped")
    return out


def fmt_cell(v, col: str = "") -> str:
    if v is None:
        return ""
    if col == "params" and isinstance(v, int):
        return f"{v / 1e6:.2f}M"
    if isinstance(v, float):
        return f"{v:.2f}"
    return str(v)


def to_markdown(rows: List[Dict]) -> str:
    cols = [c for c in COLUMNS if any(r.get(c) is not None for r in rows)]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt_cell(r.get(c), c) for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def to_csv(rows: List[Dict]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS, extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in COLUMNS})
    return buf.getvalue()


def sort_rows(rows: List[Dict], sort: str = "dataset,metric,top1") -> List[Dict]:
    """Sorted by the comma-separated keys, the first one most significant; ``top1`` sorts descending."""
    for key in reversed(sort.split(",")):
        desc = key == "top1"
        rows.sort(key=lambda r: (r.get(key) is None, -(r.get(key) or 0) if desc else str(r.get(key))))
    return rows


def collect_rows(
    paths: Iterable[str],
    sort: str = "dataset,metric,top1",
    warn: Callable[[str], None] = lambda m: print(f"warning: {m}", file=sys.stderr),
) -> List[Dict]:
    """One row per results.json found under ``paths`` (an unreadable one is skipped with a warning)."""
    rows = []
    for f in find_results(paths, warn):
        try:
            rows.append(row_for(f))
        except (OSError, ValueError) as e:
            warn(f"skipping '{f}': {e}")
    return sort_rows(rows, sort)
