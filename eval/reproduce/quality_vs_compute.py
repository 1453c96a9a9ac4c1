"""kNN top-1 against CPU-minutes: sslvit's recipes and the straightforward lightly + timm MoCo v3 (issue 20).

Each point is one training run of its own length (its own cosine schedule), as a user with that budget
would run it, in its own process with one thread; its x is the process's measured CPU time (user + sys,
``os.wait4``: start-up, training and the final kNN included, for both toolkits alike). Raw-pixel and
standardised-pixel kNN (the same kNN: cosine, k 20, T 0.07, the 60k train images as the bank) are measured
here too and drawn as horizontal lines.

    # one point (skipped when its results are there; points are the resumable unit)
    .venv/bin/python eval/reproduce/quality_vs_compute.py run sslvit_micro_1000 --toolkit sslvit \\
        --recipe fmnist_vit_tiny --steps 1000
    .venv/bin/python eval/reproduce/quality_vs_compute.py run ref_micro_370 --toolkit reference --steps 370
    # the table and the plot from every finished point
    .venv/bin/python eval/reproduce/quality_vs_compute.py report

Points live in ``--runs`` (default ``runs/quality``); ``report`` writes ``eval/reproduce/quality_vs_compute.md``'s
table to ``eval/reproduce/quality/points.md`` and the plot ``eval/reproduce/quality/quality_vs_compute.png``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from arms import ROOT, run_arms, sslvit_cmd  # noqa: E402

from ssl_vit.core.input_spec import InputSpec  # noqa: E402
from ssl_vit.data.specs import load_dataset  # noqa: E402
from ssl_vit.evaluation.knn import knn_top1  # noqa: E402
from ssl_vit.transforms.eval import to_model_input  # noqa: E402

OUT = ROOT / "eval" / "reproduce" / "quality"


def pixel_knn() -> dict:
    """Raw and standardised (per-pixel z-score from the train split) pixel kNN top-1 on Fashion-MNIST, at the native
    28 px and downsampled to 21 px the way a 21-px model's input is (bilinear, antialiased: ``to_model_input``)."""
    tr, te = load_dataset("fmnist", "train"), load_dataset("fmnist", "test")
    out = {}
    for size, suffix in ((28, ""), (21, "_21")):
        spec = InputSpec(size, 1, (0.0,), (1.0,))  # resize only: pixels in [0, 1]
        xtr = to_model_input(tr.images, spec).flatten(1)  # (60000, size * size)
        xte = to_model_input(te.images, spec).flatten(1)  # (10000, size * size)
        mu, sd = xtr.mean(0), xtr.std(0).clamp_min(1e-6)
        out["raw" + suffix] = knn_top1(xtr, tr.targets, xte, te.targets)
        out["standardised" + suffix] = knn_top1((xtr - mu) / sd, tr.targets, (xte - mu) / sd, te.targets)
    return out


def run_point(a) -> int:
    runs = Path(a.runs)
    res = runs / a.name / "results.json"
    if res.is_file() and (runs / a.name / "arm.json").is_file():
        print(f"{a.name}: done ({json.loads(res.read_text())['top1']:.2f})")
        return 0
    if a.toolkit == "sslvit":
        cmd = sslvit_cmd(
            "pretrain",
            "--recipe",
            a.recipe,
            "--output-dir",
            str(runs / a.name),
            "--overwrite",
            sets=["train.threads=1", "log.progress=false", f"train.max_steps={a.steps}", *a.sets],
        )
    else:
        cmd = [
            sys.executable,
            str(ROOT / "eval" / "reproduce" / "reference_moco.py"),
            "--steps",
            str(a.steps),
            "--out",
            str(runs / a.name),
            *a.ref_args,
        ]
    done = run_arms({a.name: cmd}, runs, jobs=1, threads=1, fresh=True)
    meta = {
        "toolkit": a.toolkit,
        "recipe": a.recipe if a.toolkit == "sslvit" else "reference_moco.py",
        "series": a.series,
        "steps": a.steps,
        "sets": a.sets,
        "ref_args": a.ref_args,
        **done[a.name],
    }
    if done[a.name]["exit"] != 0:
        return 1
    (runs / a.name / "arm.json").write_text(json.dumps(meta, indent=2) + "\n")
    return 0


def report(a) -> int:
    import matplotlib  # heavy; only the report draws

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    OUT.mkdir(parents=True, exist_ok=True)
    pix_path = OUT / "pixels.json"
    pix = json.loads(pix_path.read_text()) if pix_path.is_file() else {}
    if "raw_21" not in pix:  # missing, or written before the 21-px baselines
        pix = pixel_knn()
        pix_path.write_text(json.dumps(pix, indent=2) + "\n")
    points = []
    for arm in sorted(Path(a.runs).glob("*/arm.json")):
        meta = json.loads(arm.read_text())
        res = json.loads((arm.parent / "results.json").read_text())
        points.append({"name": arm.parent.name, "cpu_min": meta["cpu_s"] / 60, "top1": res["top1"], **meta})
    rows = ["| point | toolkit | recipe / settings | steps | CPU-min | kNN top-1 |", "|---|---|---|---:|---:|---:|"]
    for p in sorted(points, key=lambda p: (p["toolkit"], p["name"], p["cpu_min"])):
        settings = p.get("series") or f"`{p['recipe']}` " + (" ".join(p["sets"] or p["ref_args"]) or "defaults")
        rows.append(
            f"| {p['name']} | {p['toolkit']} | {settings} | {p['steps']} | {p['cpu_min']:.1f} | {p['top1']:.2f} |"
        )
    rows.append(f"| raw pixels | – | – | – | – | {pix['raw']:.2f} |")
    rows.append(f"| standardised pixels | – | – | – | – | {pix['standardised']:.2f} |")
    rows.append(f"| raw pixels at 21 px | – | – | – | – | {pix['raw_21']:.2f} |")
    rows.append(f"| standardised pixels at 21 px | – | – | – | – | {pix['standardised_21']:.2f} |")
    (OUT / "points.md").write_text("\n".join(rows) + "\n")
    print("\n".join(rows))

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    series = {}
    for p in points:
        label = p.get("series") or (
            p["toolkit"] if p["toolkit"] == "reference" else f"sslvit {p['recipe']} {' '.join(p['sets'])}".strip()
        )
        series.setdefault(label, []).append(p)
    for label, ps in sorted(series.items()):
        ps.sort(key=lambda p: p["cpu_min"])
        name = label
        ax.plot([p["cpu_min"] for p in ps], [p["top1"] for p in ps], "o-", label=name)
    ax.axhline(pix["raw"], color="grey", ls="--", lw=1, label=f"raw pixels {pix['raw']:.1f}")
    ax.axhline(pix["standardised"], color="grey", ls=":", lw=1, label=f"standardised pixels {pix['standardised']:.1f}")
    ax.axhline(pix["raw_21"], color="tan", ls="--", lw=1, label=f"raw pixels at 21 px {pix['raw_21']:.1f}")
    ax.set_xlabel("CPU-minutes (one thread; training + final kNN)")
    ax.set_ylabel("kNN top-1 on Fashion-MNIST test (%)")
    ax.set_title(f"MoCo v3 on Fashion-MNIST, {a.machine}")
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(OUT / "quality_vs_compute.png", dpi=110)
    print(f"wrote {OUT / 'points.md'} and {OUT / 'quality_vs_compute.png'}")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="train and evaluate one point (skipped when finished)")
    r.add_argument("name")
    r.add_argument("--toolkit", choices=["sslvit", "reference"], required=True)
    r.add_argument("--steps", type=int, required=True)
    r.add_argument("--recipe", default="fmnist_vit_tiny")
    r.add_argument("--set", dest="sets", action="append", default=[], help="sslvit --set (repeatable)")
    r.add_argument(
        "--ref-arg",
        dest="ref_args",
        action="append",
        default=[],
        help="an argument for reference_moco.py, e.g. --ref-arg=--embed-dim=128 (repeatable)",
    )
    r.add_argument("--series", help="the point's series in the table and the plot (default: toolkit + recipe)")
    r.add_argument("--runs", default=str(ROOT / "runs" / "quality"))
    p = sub.add_parser("report", help="table + plot from the finished points")
    p.add_argument("--runs", default=str(ROOT / "runs" / "quality"))
    p.add_argument("--machine", default="2-core CPU with AVX-512 BF16 (bf16)")
    a = ap.parse_args(argv)
    return run_point(a) if a.cmd == "run" else report(a)


if __name__ == "__main__":
    torch.set_num_threads(1)
    sys.exit(main())
