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
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

ROOT = Path(__file__).resolve().parents[2]


def sslvit_cmd(command: str, *args: str, sets: List[str] = ()) -> List[str]:
    """``python -m ssl_vit <command> <args> --set s ...`` as an argument list."""
    return [sys.executable, "-m", "ssl_vit", command, *args, *[x for s in sets for x in ("--set", s)]]


def run_arms(cmds: Dict[str, List[str]], runs: Path, jobs: int = 2, threads: int = 1,
             fresh: bool = True, env: Optional[dict] = None) -> Dict[str, dict]:
    """Run ``cmds[name]`` (output dir ``runs/<name>``, log ``runs/<name>.log``), at most ``jobs`` at once,
    in the given order. ``fresh`` removes an old ``runs/<name>`` first. Returns ``{name: {"exit", "cpu_s",
    "wall_s"}}`` and writes it next to each run as ``runs/<name>/arm.json``."""
    runs.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "TQDM_DISABLE": "1", "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(threads),
           **(env or {})}
    todo, running, done = list(cmds), [], {}
    while todo or running:
        while todo and len(running) < jobs:
            name = todo.pop(0)
            if fresh and (runs / name).exists():
                shutil.rmtree(runs / name)
            print("+", name, ":", " ".join(cmds[name][2:]), flush=True)
            log = open(runs / f"{name}.log", "w")
            p = subprocess.Popen(cmds[name], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
            running.append((name, p, log, time.time()))
        time.sleep(1)
        for item in list(running):
            name, p, log, t0 = item
            pid, status, ru = os.wait4(p.pid, os.WNOHANG)       # this run's own CPU time (user + system)
            if pid == 0:
                continue
            log.close()
            running.remove(item)
            p.returncode = os.waitstatus_to_exitcode(status)
            done[name] = {"exit": p.returncode, "cpu_s": round(ru.ru_utime + ru.ru_stime, 1),
                          "wall_s": round(time.time() - t0, 1)}
            if (runs / name).is_dir():
                (runs / name / "arm.json").write_text(json.dumps(done[name]) + "\n")
            tag = "ok" if p.returncode == 0 else f"FAILED (exit {p.returncode}; see {runs / f'{name}.log'})"
            print(f"{name}: {tag}, {done[name]['cpu_s']:.0f} CPU-s", flush=True)
    return done


def arm_record(run: Path) -> dict:
    """What :func:`run_arms` recorded for a finished run (``{}`` if it was not run by it)."""
    f = run / "arm.json"
    return json.loads(f.read_text()) if f.is_file() else {}
