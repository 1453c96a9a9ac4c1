"""Run commands side by side as subprocesses, at most ``jobs`` at once, and measure each one's own CPU time.

Why processes and not threads: each run gets its own thread count (``OMP_NUM_THREADS`` / ``train.threads``),
so on a small CPU two single-thread runs side by side use the cores fully without OpenMP barriers fighting
each other, and ``os.wait4`` gives each run's own CPU seconds (user + system, its children included).

Used by ``sslvit sweep`` (:mod:`ssl_vit.sweep.runner`) and by the reproduction scripts' ``eval/reproduce/arms.py``.

Example::

    jobs = [Job("a", [sys.executable, "-c", "print(1)"], log=Path("a.log"))]
    res = run_jobs(jobs, max_jobs=2)          # {"a": JobResult(name="a", exit=0, cpu_s=0.1, wall_s=0.2, ...)}
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional


@dataclass
class Job:
    """One command: ``cmd`` (argv), its stdout + stderr appended to ``log``; ``env`` replaces the environment."""

    name: str
    cmd: List[str]
    log: Path
    cwd: Optional[Path] = None
    env: Optional[Dict[str, str]] = None
    log_mode: str = "w"  # "a": keep what earlier attempts wrote
    header: str = ""  # written to the log before the command's own output
    data: dict = field(default_factory=dict)  # caller's own fields (passed back untouched)


@dataclass
class JobResult:
    name: str
    exit: int  # exit code; -N when killed by signal N
    cpu_s: float  # the process's own user + system CPU seconds (and its children's)
    wall_s: float
    log: Path
    log_offset: int  # where this attempt's output starts in the log
    job: Job
    interrupted: bool = False  # it ended while the runner was stopping (Ctrl-C)

    def last_line(self) -> str:
        """The last non-empty line this attempt wrote to its log ('' if none)."""
        return last_log_line(self.log, self.log_offset)


def last_log_line(path: Path, offset: int = 0) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            text = f.read()[-65536:].decode("utf-8", errors="replace")
    except OSError:
        return ""
    lines = [ln.strip() for ln in text.replace("\r", "\n").splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def _child_setup(deathsig: bool):
    def setup() -> None:  # runs in the child between fork and exec
        os.setpgrp()  # its own process group: a terminal's Ctrl-C reaches the runner only
        if deathsig:
            try:
                ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_DEATHSIG
            except (OSError, AttributeError):
                pass

    return setup


def run_jobs(
    jobs: Iterable[Job],
    max_jobs: int = 1,
    before_start: Optional[Callable[[Job], None]] = None,
    on_start: Optional[Callable[[Job, int], None]] = None,
    on_finish: Optional[Callable[[JobResult], None]] = None,
    poll_s: float = 0.1,
    die_with_parent: bool = True,
) -> Dict[str, JobResult]:
    """Run the jobs in order, at most ``max_jobs`` at once. ``before_start(job)`` runs just before a job's
    process starts (prepare its dir, print a line), ``on_start(job, pid)`` right after, ``on_finish(result)``
    when it exits. With ``die_with_parent`` (Linux) a job gets SIGTERM when this process dies, so a killed
    runner leaves no orphans (``sslvit pretrain`` then checkpoints and exits).

    Each job runs in its own process group. On KeyboardInterrupt the running jobs get one SIGINT each, are
    waited for (``sslvit pretrain`` checkpoints and exits) and recorded through ``on_finish``; then it
    re-raises. A second Ctrl-C kills them."""
    todo: List[Job] = list(jobs)
    running: List[tuple] = []
    done: Dict[str, JobResult] = {}
    use_deathsig = die_with_parent and sys.platform.startswith("linux")
    stopping = False

    def reap(block: bool) -> None:
        for item in list(running):
            job, p, fh, t0, offset = item
            pid, status, ru = os.wait4(p.pid, 0 if block else os.WNOHANG)
            if pid == 0:
                continue
            fh.close()
            running.remove(item)
            code = os.waitstatus_to_exitcode(status)
            p.returncode = code
            res = JobResult(
                job.name,
                code,
                round(ru.ru_utime + ru.ru_stime, 2),
                round(time.time() - t0, 2),
                job.log,
                offset,
                job,
                stopping,
            )
            done[job.name] = res
            if on_finish:
                on_finish(res)

    try:
        while todo or running:
            while todo and len(running) < max(1, max_jobs):
                job = todo.pop(0)
                if before_start:
                    before_start(job)
                job.log.parent.mkdir(parents=True, exist_ok=True)
                fh = open(job.log, job.log_mode + "b")
                if job.header:
                    fh.write(job.header.encode())
                    fh.flush()
                offset = fh.tell()
                try:
                    p = subprocess.Popen(
                        job.cmd,
                        cwd=job.cwd,
                        env=job.env,
                        stdout=fh,
                        stderr=subprocess.STDOUT,
                        stdin=subprocess.DEVNULL,
                        preexec_fn=_child_setup(use_deathsig),
                    )
                except OSError as e:  # e.g. the program does not exist: a failed job, not a crash
                    fh.write(f"cannot start {job.cmd[0]}: {e}\n".encode())
                    fh.close()
                    res = JobResult(job.name, 127, 0.0, 0.0, job.log, offset, job)
                    done[job.name] = res
                    if on_finish:
                        on_finish(res)
                    continue
                running.append((job, p, fh, time.time(), offset))
                if on_start:
                    on_start(job, p.pid)
            time.sleep(poll_s)
            reap(block=False)
    except KeyboardInterrupt:
        stopping = True
        for _job, p, *_ in running:
            try:
                p.send_signal(signal.SIGINT)
            except ProcessLookupError:
                pass
        while running:
            try:
                reap(block=True)
            except KeyboardInterrupt:  # a second Ctrl-C: stop waiting, kill them
                for _job, p, *_ in running:
                    p.kill()
        raise
    return done
