#!/usr/bin/env python
"""Soak test for crash-proof resume: SIGKILL a pretrain at random moments, resume each time, and check
the final weights equal an uninterrupted run's, bit for bit.

    python eval/soak_resume.py --kills 20 --steps 60            # a few minutes on 2 cores
    python eval/soak_resume.py --kills 3 --steps 24 --out /tmp/soak

Prints one line per kill and a summary: kills, resumes, unusable checkpoints found, bit-identical.
Uses the `smoke` recipe on Fashion-MNIST (any --set overrides can be appended after `--`).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch


def _cmd(out: Path, steps: int, extra, resume: bool):
    sets = [
        "train.max_steps=%d" % steps,
        "train.checkpoint_every=2",
        "log.progress=false",
        "eval.final_knn=false",
        "log.every=1",
        *extra,
    ]
    cmd = [sys.executable, "-m", "ssl_vit", "pretrain", "--recipe", "smoke", "--output-dir", str(out)]
    cmd += [a for s in sets for a in ("--set", s)]
    return cmd + (["--resume"] if resume else [])


def _logged_step(metrics: Path) -> int:
    try:
        lines = metrics.read_text().splitlines()
        return json.loads(lines[-1])["step"] if lines else 0
    except (OSError, ValueError, KeyError):
        return 0


def _weights(out: Path):
    return torch.load(out / "checkpoints" / "last.pt", weights_only=True)


def soak(out: Path, kills: int, steps: int, extra=(), seed: int = 0, log=print) -> dict:
    rng = random.Random(seed)
    shutil.rmtree(out, ignore_errors=True)
    env = {**os.environ, "TQDM_DISABLE": "1"}
    ref = out / "reference"
    subprocess.run(_cmd(ref, steps, extra, False), check=True, env=env, capture_output=True)
    run = out / "killed"
    metrics = run / "metrics.jsonl"
    done_kills, bad = 0, 0
    t0 = time.time()
    # kill points: random distinct steps, so kills land during steps, checkpoint writes and start-up alike
    targets = sorted(rng.sample(range(1, steps - 1), min(kills, steps - 2)))
    for target in targets:
        p = subprocess.Popen(
            _cmd(run, steps, extra, done_kills > 0), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        while p.poll() is None and _logged_step(metrics) < target:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.3))
        p.send_signal(signal.SIGKILL)
        p.wait()
        done_kills += 1
        step = None
        last = run / "checkpoints" / "last.pt"
        if last.exists():
            try:
                step = torch.load(last, weights_only=True)["step"]
            except Exception:  # noqa: BLE001 - counted as an unusable checkpoint
                bad += 1
        log(f"kill {done_kills} near step {target}: last.pt step={step}")
    r = subprocess.run(_cmd(run, steps, extra, True), env=env, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"resumed run failed: {r.stderr[-2000:]}")
    resumes = done_kills
    a, b = _weights(ref), _weights(run)
    same = a["step"] == b["step"] and all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    res = {
        "kills": done_kills,
        "resumes": resumes,
        "unusable_checkpoints": bad,
        "bit_identical": same,
        "steps": steps,
        "wall_s": round(time.time() - t0, 1),
    }
    log(json.dumps(res))
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--out", default="runs/soak")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("extra", nargs="*", help="extra --set overrides (key=value)")
    a = ap.parse_args()
    res = soak(Path(a.out), a.kills, a.steps, a.extra, a.seed)
    sys.exit(0 if res["bit_identical"] and res["unusable_checkpoints"] == 0 else 1)


if __name__ == "__main__":
    main()
