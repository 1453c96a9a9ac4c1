"""Table and plot of the bootstrapped-ViT data-size study (issue 24; runs by ``bootstrap_datasize.sh``).

Reads ``eval/reproduce/bootstrap/datasize/n<images>_s<seed>/summary.json`` (written by ``bootstrap.py``) and
writes ``table.md`` and ``datasize.png`` next to them: test top-1 of the ViT per arm (scratch / shared /
joint) against the number of training images, the seed mean with the seed range as error bars, and the
joint agent CNN's own top-1.

    .venv/bin/python eval/reproduce/bootstrap_datasize.py
"""

from __future__ import annotations

import json
import re
import statistics
import sys
from pathlib import Path

DIR = Path(__file__).resolve().parent / "bootstrap" / "datasize"
ARMS = ("scratch", "shared", "joint")
FMNIST_TRAIN = 60_000


def collect(root: Path = DIR) -> dict:
    """{(n_images, arm): {"vit": [top1 per seed], "agent": [...], "seeds": [...], "cpu_s": [...]}}."""
    out: dict = {}
    for path in sorted(root.glob("n*_s*/summary.json")):
        n, seed = map(int, re.fullmatch(r"n(\d+)_s(\d+)", path.parent.name).groups())
        s = json.loads(path.read_text())
        for arm in ARMS:
            r = s["arms"].get(arm, {})
            if "top1" not in r:
                continue
            cell = out.setdefault((n, arm), {"vit": [], "agent": [], "seeds": [], "cpu_s": []})
            cell["vit"].append(r["top1"])
            cell["seeds"].append(seed)
            cell["cpu_s"].append(s["cpu_s"].get(arm, float("nan")))
            if r.get("top1_agent") is not None:
                cell["agent"].append(r["top1_agent"])
    return out


def _fmt(xs) -> str:
    if not xs:
        return "–"
    if len(xs) == 1:
        return f"{xs[0]:.2f}"
    return f"{statistics.mean(xs):.2f} ({min(xs):.2f}–{max(xs):.2f})"


def table(cells: dict) -> str:
    sizes = sorted({n for n, _ in cells})
    rows = [
        "| images (share of FMNIST) | steps (200 epochs, B128) | seeds | scratch ViT | shared ViT | joint ViT | "
        "shared − scratch | joint − scratch | shared agent CNN | joint agent CNN | "
        "CPU-s per seed (scratch / shared / joint) |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for n in sizes:
        c = {arm: cells.get((n, arm), {"vit": [], "agent": [], "seeds": [], "cpu_s": []}) for arm in ARMS}
        seeds = sorted(set(c["scratch"]["seeds"]))
        mean = {arm: statistics.mean(c[arm]["vit"]) if c[arm]["vit"] else float("nan") for arm in ARMS}
        cpu = " / ".join(f"{statistics.mean(c[a]['cpu_s']):.0f}" if c[a]["cpu_s"] else "–" for a in ARMS)
        rows.append(
            f"| {n} ({100 * n / FMNIST_TRAIN:g} %) | {(n * 200 + 127) // 128} | {','.join(map(str, seeds))} | "
            f"{_fmt(c['scratch']['vit'])} | {_fmt(c['shared']['vit'])} | {_fmt(c['joint']['vit'])} | "
            f"{mean['shared'] - mean['scratch']:+.2f} | {mean['joint'] - mean['scratch']:+.2f} | "
            f"{_fmt(c['shared']['agent'])} | {_fmt(c['joint']['agent'])} | {cpu} |"
        )
    return "\n".join(rows) + "\n"


def plot(cells: dict, path: Path) -> None:
    import matplotlib  # heavy; only the plot needs it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    series = [(arm, "vit", f"{arm} ViT") for arm in ARMS] + [("joint", "agent", "joint agent CNN")]
    for arm, key, label in series:
        pts = sorted((n, c[key]) for (n, a), c in cells.items() if a == arm and c[key])
        if not pts:
            continue
        xs = [100 * n / FMNIST_TRAIN for n, _ in pts]
        mids = [statistics.mean(v) for _, v in pts]
        lo = [m - min(v) for m, (_, v) in zip(mids, pts)]
        hi = [max(v) - m for m, (_, v) in zip(mids, pts)]
        ax.errorbar(xs, mids, yerr=[lo, hi], marker="o", capsize=3, ls="--" if key == "agent" else "-", label=label)
    ax.set_xscale("log")
    shares = sorted({100 * n / FMNIST_TRAIN for n, _ in cells})
    ax.set_xticks(shares, [f"{x:g}" for x in shares])
    ax.minorticks_off()
    ax.set_xlabel("share of Fashion-MNIST train used (%)")
    ax.set_ylabel("test top-1 (%)")
    ax.set_title("Bootstrapped ViT vs data size (200 epochs; mean, seed range)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> int:
    cells = collect()
    if not cells:
        print(f"no finished chunks under {DIR}; run eval/reproduce/bootstrap_datasize.sh first", file=sys.stderr)
        return 2
    md = table(cells)
    (DIR / "table.md").write_text(md)
    plot(cells, DIR / "datasize.png")
    print(md + f"wrote {DIR / 'table.md'} and {DIR / 'datasize.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
