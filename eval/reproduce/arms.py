"""Run a few ``sslvit`` commands ("arms") side by side and record each one's exit code and CPU time.

Shared by the reproduction scripts in this folder. Why not a thread pool: each arm is a separate
process with its own thread count (``train.threads``) so that, on a small CPU, two single-thread runs
side by side use the cores fully without OpenMP barriers fighting each other (see the README's
performance notes), and ``os.wait4`` gives each run's own CPU seconds.

Example::

    from arms import run_arms                      # scripts here put their own folder on sys.path
    res = run_arms({"a": [sys.executable, "-m", "ssl_vit", "pretrain", ...]}, runs=Path("runs/x"), jobs=2)
    res["a"]["exit"], res["a"]["cpu_s"]
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Dict, List, Optional

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # the scripts run from a checkout; ssl_vit is importable from its root
    sys.path.insert(0, str(ROOT))


def sslvit_cmd(command: str, *args: str, sets: List[str] = ()) -> List[str]:
    """``python -m ssl_vit <command> <args> --set s ...`` as an argument list."""
    return [sys.executable, "-m", "ssl_vit", command, *args, *[x for s in sets for x in ("--set", s)]]


def run_arms(
    cmds: Dict[str, List[str]],
    runs: Path,
    jobs: int = 2,
    threads: int = 1,
    fresh: bool = True,
    env: Optional[dict] = None,
) -> Dict[str, dict]:
    """Run ``cmds[name]`` (output dir ``runs/<name>``, log ``runs/<name>.log``), at most ``jobs`` at once,
    in the given order. ``fresh`` removes an old ``runs/<name>`` first. Returns ``{name: {"exit", "cpu_s",
    "wall_s"}}`` and writes it next to each run as ``runs/<name>/arm.json``. The process pool is the one
    ``sslvit sweep`` uses (:func:`ssl_vit.sweep.procs.run_jobs`)."""
    from ssl_vit.sweep.procs import Job, run_jobs

    runs.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "TQDM_DISABLE": "1", "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(threads), **(env or {})}
    done: Dict[str, dict] = {}

    def before_start(job):
        if fresh and (runs / job.name).exists():
            shutil.rmtree(runs / job.name)
        print("+", job.name, ":", " ".join(job.cmd[2:]), flush=True)

    def on_finish(res):
        name = res.name
        done[name] = {"exit": res.exit, "cpu_s": round(res.cpu_s, 1), "wall_s": round(res.wall_s, 1)}
        if (runs / name).is_dir():
            (runs / name / "arm.json").write_text(json.dumps(done[name]) + "\n")
        tag = "ok" if res.exit == 0 else f"FAILED (exit {res.exit}; see {runs / f'{name}.log'})"
        print(f"{name}: {tag}, {done[name]['cpu_s']:.0f} CPU-s", flush=True)

    run_jobs(
        [Job(name, cmd, runs / f"{name}.log", cwd=ROOT, env=env) for name, cmd in cmds.items()],
        jobs,
        before_start=before_start,
        on_finish=on_finish,
        poll_s=0.2,
    )
    return done


def arm_record(run: Path) -> dict:
    """What :func:`run_arms` recorded for a finished run (``{}`` if it was not run by it)."""
    f = run / "arm.json"
    return json.loads(f.read_text()) if f.is_file() else {}
