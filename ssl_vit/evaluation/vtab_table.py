"""VTAB-1k tables and few-shot curves from many ``results.json`` files (one per task / seed / method).

VTAB table (as in the VPT / NOAH / Convpass papers, e.g. Convpass Table 1): one row per method (and
backbone, when the files name more than one), one column per task in the benchmark's order, then the
mean of each group (Natural 7, Specialized 4, Structured 8; tasks outside the benchmark form 'Other'),
the **mean of the group means** (the number the papers compare) and the plain mean over tasks. Several
files for the same (row, task) are averaged. A group mean is only given when the row has every task of
that group that appears in the table (else '-'), so rows stay comparable.

Few-shot curves: per dataset, method (and backbone) and k, the mean and standard deviation (population,
``ddof=0``) of top-1 over the seeds, from ``fewshot:<root>?shots=k&seed=s`` datasets; a PNG with one
panel per dataset, top-1 against k on a log2 axis, error bars +- 1 std.

Example::

    res = load_results(["runs/adapt"])                     # every results.json below, recursively
    write_vtab_table(res, Path("runs/tables"))             # vtab_table.{md,csv,json}
    write_fewshot_curves(res, Path("runs/tables"))         # fewshot_curves.{md,csv,json,png}
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple
from urllib.parse import parse_qsl

from ssl_vit.core.atomic import atomic_write_bytes, atomic_write_text
from ssl_vit.data.vtab import GROUPS, group_of
from ssl_vit.errors import SslvitError

GROUP_ORDER = ("Natural", "Specialized", "Structured", "Other")


# ----------------------------------------------------------------------------- reading
def load_results(paths: Iterable) -> List[Dict]:
    """results.json files (or folders searched recursively) -> list of dicts, each with ``_source``."""
    out = []
    for p in map(Path, paths):
        files = sorted(p.rglob("results.json")) if p.is_dir() else [p]
        if not p.exists():
            raise SslvitError(f"'{p}' does not exist; pass results.json files or folders that hold them")
        for f in files:
            try:
                r = json.loads(f.read_text())
            except (OSError, ValueError) as e:
                raise SslvitError(f"cannot read '{f}' ({e}); delete or re-create it") from None
            if not isinstance(r, dict) or "top1" not in r or "dataset" not in r:
                raise SslvitError(f"'{f}' has no 'top1' / 'dataset'; it is not an sslvit results file")
            out.append({**r, "_source": str(f)})
    return out


def parse_dataset(spec: str) -> Dict:
    """``vtab:/x/vtab-1k/dtd`` -> {kind: vtab, task: dtd}; ``fewshot:/x/pets?shots=4&seed=1`` -> {kind, task: pets,
    shots: 4, seed: 1}; anything else -> {kind, task: spec}."""
    kind, _, rest = str(spec).partition(":")
    root, _, query = rest.partition("?")
    opts = dict(parse_qsl(query))
    task = Path(root.rstrip("/")).name if root else kind
    out = {"kind": kind, "task": task}
    if kind == "fewshot":
        try:
            out.update(shots=int(opts["shots"]), seed=int(opts.get("seed", 0)))
        except (KeyError, ValueError):
            raise SslvitError(
                f"few-shot result with dataset '{spec}' has no integer shots=; expected "
                f"'fewshot:<root>?shots=<k>&seed=<s>'"
            ) from None
    return out


def _row_key(r: Dict, multi_backbone: bool) -> str:
    m = str(r.get("method") or r.get("metric") or "?")
    return f"{m} ({r.get('backbone', '?')})" if multi_backbone else m


def _mean(xs: List[float]) -> Optional[float]:
    return sum(xs) / len(xs) if xs else None


# ----------------------------------------------------------------------------- VTAB table
def vtab_table(results: List[Dict]) -> Dict:
    """-> {"tasks": [...], "groups": {group: [tasks]}, "rows": [{"row", "tasks": {task: top1}, "n": {task: runs},
    "groups": {group: mean|None}, "mean_of_groups", "mean_tasks", "trainable_share"}]}."""
    vt = [r for r in results if parse_dataset(r["dataset"])["kind"] == "vtab"]
    if not vt:
        raise SslvitError("no VTAB results (dataset 'vtab:<root>/<task>') among the given files")
    multi = len({r.get("backbone") for r in vt}) > 1
    cells: Dict[Tuple[str, str], List[Dict]] = defaultdict(list)
    for r in vt:
        cells[_row_key(r, multi), parse_dataset(r["dataset"])["task"]].append(r)
    present = {t for _, t in cells}
    bench = [t for g in GROUPS.values() for t in g]
    order = [t for t in bench if t in present] + sorted(
        (t for t in present if t not in bench), key=lambda t: (GROUP_ORDER.index(group_of(t)), t)
    )
    groups = {g: [t for t in order if group_of(t) == g] for g in GROUP_ORDER}
    groups = {g: ts for g, ts in groups.items() if ts}
    rows = []
    for row in dict.fromkeys(k for k, _ in sorted(cells)):
        tasks = {t: _mean([float(r["top1"]) for r in cells[row, t]]) for t in order if (row, t) in cells}
        gm = {g: (_mean([tasks[t] for t in ts]) if all(t in tasks for t in ts) else None) for g, ts in groups.items()}
        shares = [
            float(r["trainable_share"])
            for t in order
            for r in cells.get((row, t), [])
            if r.get("trainable_share") is not None
        ]
        rows.append(
            {
                "row": row,
                "tasks": tasks,
                "n": {t: len(cells[row, t]) for t in tasks},
                "groups": gm,
                "mean_of_groups": None if None in gm.values() else _mean(list(gm.values())),
                "mean_tasks": _mean(list(tasks.values())) if len(tasks) == len(order) else None,
                "trainable_share": _mean(shares),
            }
        )
    return {"tasks": order, "groups": groups, "rows": rows}


def _fmt(v, digits: int = 1) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def vtab_markdown(table: Dict) -> str:
    cols = table["tasks"] + [f"{g} mean" for g in table["groups"]] + ["mean of groups", "mean (tasks)", "trainable %"]
    lines = [
        "Groups: " + "; ".join(f"{g} = {', '.join(ts)}" for g, ts in table["groups"].items()) + ". Top-1 %.",
        "",
        "| method | " + " | ".join(cols) + " |",
        "|---|" + "---|" * len(cols),
    ]
    for r in table["rows"]:
        vals = [_fmt(r["tasks"].get(t)) for t in table["tasks"]] + [_fmt(r["groups"][g]) for g in table["groups"]]
        vals += [
            _fmt(r["mean_of_groups"]),
            _fmt(r["mean_tasks"]),
            "-" if r["trainable_share"] is None else f"{100 * r['trainable_share']:.3g}",
        ]
        lines.append(f"| {r['row']} | " + " | ".join(vals) + " |")
    return "\n".join(lines) + "\n"


def vtab_csv(table: Dict) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(
        ["method"]
        + table["tasks"]
        + [f"{g}_mean" for g in table["groups"]]
        + ["mean_of_groups", "mean_tasks", "trainable_share"]
    )
    for r in table["rows"]:
        w.writerow(
            [r["row"]]
            + [r["tasks"].get(t, "") for t in table["tasks"]]
            + [("" if r["groups"][g] is None else r["groups"][g]) for g in table["groups"]]
            + ["" if r[k] is None else r[k] for k in ("mean_of_groups", "mean_tasks", "trainable_share")]
        )
    return buf.getvalue()


def write_vtab_table(results: List[Dict], out_dir: Path) -> Dict:
    table = vtab_table(results)
    out_dir = Path(out_dir)
    atomic_write_text(out_dir / "vtab_table.md", vtab_markdown(table))
    atomic_write_text(out_dir / "vtab_table.csv", vtab_csv(table))
    atomic_write_text(out_dir / "vtab_table.json", json.dumps(table, indent=2) + "\n")
    return table


# ----------------------------------------------------------------------------- few-shot curves
def fewshot_curves(results: List[Dict]) -> Dict:
    """-> {"curves": [{"dataset", "method", "points": [{"shots", "mean", "std", "n", "seeds"}]}]}."""
    fs = [(r, parse_dataset(r["dataset"])) for r in results]
    fs = [(r, d) for r, d in fs if d["kind"] == "fewshot"]
    if not fs:
        raise SslvitError("no few-shot results (dataset 'fewshot:<root>?shots=k&seed=s') among the given files")
    multi = len({r.get("backbone") for r, _ in fs}) > 1
    groups: Dict[Tuple[str, str], Dict[int, List[Tuple[int, float]]]] = defaultdict(lambda: defaultdict(list))
    for r, d in fs:
        groups[d["task"], _row_key(r, multi)][d["shots"]].append((d["seed"], float(r["top1"])))
    curves = []
    for (ds, method), by_k in sorted(groups.items()):
        pts = []
        for k in sorted(by_k):
            vals = [v for _, v in by_k[k]]
            m = sum(vals) / len(vals)
            pts.append(
                {
                    "shots": k,
                    "mean": m,
                    "std": math.sqrt(sum((v - m) ** 2 for v in vals) / len(vals)),
                    "n": len(vals),
                    "seeds": sorted(s for s, _ in by_k[k]),
                }
            )
        curves.append({"dataset": ds, "method": method, "points": pts})
    return {"curves": curves}


def fewshot_markdown(curves: Dict) -> str:
    ks = sorted({p["shots"] for c in curves["curves"] for p in c["points"]})
    lines = ["| dataset | method | " + " | ".join(f"{k}-shot" for k in ks) + " |", "|---|---|" + "---|" * len(ks)]
    for c in curves["curves"]:
        by = {p["shots"]: p for p in c["points"]}
        lines.append(
            f"| {c['dataset']} | {c['method']} | "
            + " | ".join(f"{by[k]['mean']:.1f} ± {by[k]['std']:.1f} (n={by[k]['n']})" if k in by else "-" for k in ks)
            + " |"
        )
    return "\n".join(lines) + "\n"


def fewshot_csv(curves: Dict) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["dataset", "method", "shots", "mean", "std", "n", "seeds"])
    for c in curves["curves"]:
        for p in c["points"]:
            w.writerow(
                [c["dataset"], c["method"], p["shots"], p["mean"], p["std"], p["n"], " ".join(map(str, p["seeds"]))]
            )
    return buf.getvalue()


def fewshot_png(curves: Dict) -> bytes:
    import matplotlib  # lazy: matplotlib is heavy (~0.5 s) and only plots need it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: matplotlib is heavy (~0.5 s) and only plots need it

    names = list(dict.fromkeys(c["dataset"] for c in curves["curves"]))
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.4), squeeze=False)
    for ax, name in zip(axes[0], names):
        for c in (c for c in curves["curves"] if c["dataset"] == name):
            ks = [p["shots"] for p in c["points"]]
            ax.errorbar(
                ks,
                [p["mean"] for p in c["points"]],
                yerr=[p["std"] for p in c["points"]],
                marker="o",
                capsize=3,
                label=c["method"],
            )
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted({p["shots"] for c in curves["curves"] for p in c["points"]}))
        ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.set_xlabel("shots per class")
        ax.set_ylabel("top-1 (%), mean ± std over seeds")
        ax.set_title(name)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def write_fewshot_curves(results: List[Dict], out_dir: Path) -> Dict:
    curves = fewshot_curves(results)
    out_dir = Path(out_dir)
    atomic_write_text(out_dir / "fewshot_curves.md", fewshot_markdown(curves))
    atomic_write_text(out_dir / "fewshot_curves.csv", fewshot_csv(curves))
    atomic_write_text(out_dir / "fewshot_curves.json", json.dumps(curves, indent=2) + "\n")
    atomic_write_bytes(out_dir / "fewshot_curves.png", fewshot_png(curves))
    return curves
