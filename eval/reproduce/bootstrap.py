"""Reproduce "Bootstrapping ViTs" (Zhang et al., CVPR 2022) at CPU scale, and try its agent inside MoCo v3.

Paper claim (Table 1, ViT-S from scratch): CIFAR-10 87.3 % -> 93.7 % (shared) / 95.1 % (joint); CIFAR-100
61.3 -> 75.5 / 76.2. Here, on limited data: a fixed 10 % of Fashion-MNIST (6,000 images,
``fmnist?subset=6000&subset_seed=0``), ViT-micro (64-d, 4 blocks, 2 heads, 7 x 7 patches), the same step
budget for every arm:

* supervised (``recipes/bootstrap_fmnist10.yaml``, ``sslvit train``): scratch ViT vs bootstrapped
  (``model.bootstrap.mode=shared`` and ``joint``); test top-1 on the full 10,000-image test split
  (the ViT's head; the agent's own top-1 and the ViT backbone's kNN are reported too);
* self-supervised (``recipes/bootstrap_mocov3_fmnist10.yaml``, ``sslvit pretrain``): MoCo v3 with vs
  without the agent (shared); kNN top-1 (bank: the 6,000 images, queries: the test split).

Every arm runs as its own process with one thread; all in parallel by default. Outputs: the runs under
``--runs`` and ``table.md`` + ``summary.json`` (top-1s, CPU seconds of each arm) in ``--out``.

Example::

    OMP_NUM_THREADS=1 nice -n 5 .venv/bin/python eval/reproduce/bootstrap.py --runs runs/bootstrap
    .venv/bin/python eval/reproduce/bootstrap.py --arms scratch,shared --set train.max_steps=300
    .venv/bin/python eval/reproduce/bootstrap.py --set data.dataset=cifar10:/data/cifar --set model.in_chans=3 \\
        --set model.img_size=32 --set model.patch_size=4          # the CIFAR-format run, for users who have CIFAR
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from arms import ROOT, run_arms, sslvit_cmd  # noqa: E402

SUP, SSL = "bootstrap_fmnist10", "bootstrap_mocov3_fmnist10"
# arm -> (command, recipe, extra --set)
ARMS = {
    "scratch": ("train", SUP, []),
    "shared": ("train", SUP, ["model.bootstrap.enabled=true", "model.bootstrap.mode=shared"]),
    "joint": ("train", SUP, ["model.bootstrap.enabled=true", "model.bootstrap.mode=joint"]),
    "mocov3": ("pretrain", SSL, []),
    "mocov3_agent": ("pretrain", SSL, ["model.bootstrap.enabled=true", "model.bootstrap.mode=shared"]),
}


def _cmd(arm: str, out: Path, sets, threads: int) -> list:
    command, recipe, extra = ARMS[arm]
    return sslvit_cmd(
        command,
        "--recipe",
        recipe,
        "--output-dir",
        str(out),
        "--overwrite",  # re-running starts over
        sets=[f"train.threads={threads}", *extra, *sets],
    )


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", default=str(ROOT / "runs" / "bootstrap"), help="where the runs go")
    ap.add_argument("--out", default=str(ROOT / "eval" / "reproduce" / "bootstrap"), help="table.md + summary.json")
    ap.add_argument("--arms", default=",".join(ARMS), help=f"comma-separated subset of {','.join(ARMS)}")
    ap.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        help="extra --set for the supervised arms (prefix 'ssl:' for the MoCo arms only, 'all:' for both)",
    )
    ap.add_argument("--threads", type=int, default=1, help="CPU threads per run")
    ap.add_argument("--sequential", action="store_true", help="one arm after the other (CPU seconds per arm exact)")
    a = ap.parse_args(argv)

    arms = [x for x in a.arms.split(",") if x]
    unknown = [x for x in arms if x not in ARMS]
    if unknown:
        ap.error(f"unknown arm(s) {unknown}; valid: {', '.join(ARMS)}")
    runs, out = Path(a.runs), Path(a.out)
    runs.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)

    def sets_for(arm):
        ssl = ARMS[arm][0] == "pretrain"
        picked = []
        for s in a.sets:
            if s.startswith("all:"):
                picked.append(s[4:])
            elif s.startswith("ssl:"):
                picked += [s[4:]] if ssl else []
            elif not ssl:
                picked.append(s)
        return picked

    t0 = time.time()
    cmds = {arm: _cmd(arm, runs / arm, sets_for(arm), a.threads) for arm in arms}
    done = run_arms(cmds, runs, jobs=1 if a.sequential else len(arms), threads=a.threads, fresh=False)
    cpu = {arm: r["cpu_s"] for arm, r in done.items()}

    rows, summary = [], {"arms": {}, "cpu_s": cpu, "wall_s": round(time.time() - t0, 1), "sets": a.sets}
    for arm in arms:
        res_path = runs / arm / "results.json"
        if not res_path.is_file():
            summary["arms"][arm] = {"error": f"no results.json (see {runs / f'{arm}.log'})"}
            continue
        r = json.loads(res_path.read_text())
        summary["arms"][arm] = r
        if ARMS[arm][0] == "train":
            rows.append(
                f"| {arm} | `sslvit train` | {r['top1']:.2f} | {_fmt(r.get('top1_agent'))} | "
                f"{_fmt(r.get('knn_top1'))} |"
            )
        else:
            rows.append(f"| {arm} | `sslvit pretrain` | – | – | {r['top1']:.2f} |")
    table = (
        "| arm | command | ViT test top-1 | agent test top-1 | kNN top-1 (ViT backbone) |\n"
        "|---|---|---|---|---|\n" + "\n".join(rows) + "\n"
    )
    (out / "table.md").write_text(table)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    print(table)
    print(f"CPU seconds: {cpu}; wall {summary['wall_s']} s")
    failed = [arm for arm, r in summary["arms"].items() if "error" in r]
    if failed:
        print(f"failed arm(s): {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


def _fmt(v) -> str:
    return "–" if v is None else f"{v:.2f}"


if __name__ == "__main__":
    sys.exit(main())
