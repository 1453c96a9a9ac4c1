"""Run a sweep: one ``python -m ssl_vit pretrain`` subprocess per point, up to ``jobs`` at once, resumably.

Layout of the output dir ``D``::

    D/sweep_spec.json          the sweep (recipe, grid, seeds, --set) + its points; a rerun must match it
    D/<run name>/              an ordinary pretrain run dir (config.yaml, metrics.jsonl, tensorboard/, ...)
    D/<run name>/run.log       the run's stdout + stderr, every attempt appended
    D/<run name>/sweep_run.json  status (running / ok / failed / interrupted), exit code, last log line, CPU s
    D/sweep.json, D/sweep.md, D/lr_sensitivity.png   the summary (:mod:`ssl_vit.sweep.summary`)

What a rerun does with each point:

* finished (``sweep_run.json`` says ok, or the run wrote ``results.json``): skipped;
* a checkpoint but not finished (killed, interrupted): continued through ``pretrain --resume``;
* failed earlier (non-zero exit on its own): skipped and still reported as failed, unless ``retry_failed``
  (then resumed from its checkpoint if it has one);
* nothing yet: started (with ``--resume`` if an earlier attempt left records but no checkpoint, so they
  are purged rather than appended to). ``--overwrite`` is never passed.

Each run gets ``--set seed=S --set train.threads=T`` and ``OMP_NUM_THREADS=T`` (also MKL / OpenBLAS).
"""

from __future__ import annotations

import os
import shlex
import signal
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import ssl_vit
from ssl_vit.errors import SslvitError
from ssl_vit.sweep.grid import Point, SweepSpec, expand, run_overrides
from ssl_vit.sweep.procs import Job, JobResult, run_jobs
from ssl_vit.sweep.records import (
    LOCK_FILE,
    RUN_LOG,
    RUN_RECORD,
    STOPPED_CODES,
    CommandFn,
    check_output_dir,
    holds_run,
    read_json,
    run_state,
    write_json,
    write_spec,
)
from ssl_vit.sweep.summary import write_summary


def pretrain_command(spec: SweepSpec, point: Point, run_dir: Path, resume: bool, threads: int) -> List[str]:
    """``python -m ssl_vit pretrain --recipe R --output-dir D --set ... [--resume]``."""
    cmd = [sys.executable, "-m", "ssl_vit", spec.command, "--recipe", spec.recipe, "--output-dir", str(run_dir)]
    for s in run_overrides(spec, point, threads):
        cmd += ["--set", s]
    return cmd + (["--resume"] if resume else [])


def run_env(threads: int) -> Dict[str, str]:
    """The environment of a run: this one, thread counts pinned, progress bars off, and this ``ssl_vit``
    first on the path (the run uses the same code as the sweep)."""
    root = str(Path(ssl_vit.__file__).resolve().parents[1])
    env = {**os.environ, "TQDM_DISABLE": "1"}
    env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    if threads > 0:
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            env[var] = str(threads)
    return env


def default_threads(jobs: int) -> int:
    return max(1, (os.cpu_count() or 1) // max(1, jobs))


# ----------------------------------------------------------------------------------------- the run
@dataclass
class SweepResult:
    out: Path
    n: int
    ran: List[str]
    skipped: List[str]
    failed: List[str]
    summary: Dict[str, Any]


class _Lock:
    """An exclusive lock on ``D/.sweep.lock`` (released when this process ends, even by SIGKILL)."""

    def __init__(self, out: Path):
        self.path = Path(out) / LOCK_FILE
        self.fh = None

    def __enter__(self):
        import fcntl  # lazy: fcntl is POSIX only (the sweep lock)

        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fh = open(self.path, "a+")
        try:
            fcntl.flock(self.fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self.fh.seek(0)
            pid = self.fh.read().strip() or "?"
            self.fh.close()
            raise SslvitError(
                f"another sslvit sweep (pid {pid}) is running in '{self.path.parent}'; wait for it "
                f"to finish or stop it, then rerun"
            ) from None
        self.fh.seek(0)
        self.fh.truncate()
        self.fh.write(str(os.getpid()))
        self.fh.flush()
        return self

    def __exit__(self, *exc):
        if self.fh:
            self.fh.close()


@contextmanager
def _term_as_interrupt():
    """SIGTERM stops the sweep as Ctrl-C does: the runs get SIGINT, checkpoint, are recorded as interrupted."""

    def handler(signum, frame):
        raise KeyboardInterrupt

    try:
        old = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def run_sweep(
    spec: SweepSpec,
    out: Path,
    cfgs: Dict[str, Any],
    jobs: int = 1,
    threads: Optional[int] = None,
    retry_failed: bool = False,
    log: Callable[[str], None] = print,
    command: CommandFn = pretrain_command,
    plot: bool = True,
) -> SweepResult:
    """Run every point not finished yet (see the module doc), then write the summary. ``cfgs`` are the
    validated configs (:func:`ssl_vit.sweep.grid.validate`). ``command(spec, point, run_dir, resume,
    threads)`` builds a run's argv (tests inject a fake one)."""

    out = Path(out)
    threads = default_threads(jobs) if threads is None else threads
    points = expand(spec)
    n = len(points)
    check_output_dir(out, spec)
    with _Lock(out):
        write_spec(out, spec, cfgs, jobs, threads)
        env = run_env(threads)
        todo: List[Job] = []
        skipped: List[str] = []
        done = 0
        for p in points:
            rd = out / p.name
            state = run_state(rd)
            if state == "running":
                rec = read_json(rd / RUN_RECORD) or {}
                raise SslvitError(
                    f"run {p.name} is still running (pid {rec.get('pid')}, started by an earlier sweep); "
                    f"wait for it or stop it (kill {rec.get('pid')}), then rerun"
                )
            if state == "ok" or (state == "failed" and not retry_failed):
                skipped.append(p.name)
                done += 1
                why = "finished earlier" if state == "ok" else "failed earlier; --retry-failed runs it again"
                log(f"[{p.index + 1}/{n}] skipped {p.name} ({why}); {done} of {n} done")
                continue
            resume = holds_run(rd)  # a checkpoint to continue, or records to purge; never --overwrite
            cmd = command(spec, p, rd, resume, threads)
            header = (
                f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} sslvit sweep: {' '.join(shlex.quote(c) for c in cmd)}\n"
            )
            todo.append(
                Job(
                    p.name,
                    cmd,
                    rd / RUN_LOG,
                    env=env,
                    log_mode="a",
                    header=header,
                    data={"point": p, "resume": resume, "state": state},
                )
            )

        failed: List[str] = []
        ran: List[str] = []

        def on_start(job: Job, pid: int) -> None:
            rd = out / job.name
            rec = read_json(rd / RUN_RECORD) or {}
            rec.update(
                name=job.name, status="running", pid=pid, log=RUN_LOG, command=" ".join(shlex.quote(c) for c in job.cmd)
            )
            write_json(rd / RUN_RECORD, rec)
            p = job.data["point"]
            how = {"partial": "resuming", "started": "restarting", "failed": "retrying"}.get(
                job.data["state"], "started"
            )
            log(f"[{p.index + 1}/{n}] {how} {job.name} (pid {pid}; log {rd / RUN_LOG})")

        def on_finish(res: JobResult) -> None:
            nonlocal done
            rd = out / res.name
            rec = read_json(rd / RUN_RECORD) or {"name": res.name}
            last = res.last_line()
            status = (
                "ok" if res.exit == 0 else "interrupted" if (res.interrupted or res.exit in STOPPED_CODES) else "failed"
            )
            attempts = rec.get("attempts", [])
            attempts.append(
                {
                    "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(time.time() - res.wall_s)),
                    "resumed": bool(res.job.data["resume"]),
                    "exit": res.exit,
                    "cpu_s": res.cpu_s,
                    "wall_s": res.wall_s,
                    "last_line": last,
                }
            )
            rec.update(
                status=status,
                exit=res.exit,
                last_line=last,
                pid=None,
                attempts=attempts,
                cpu_s=round(sum(a["cpu_s"] for a in attempts), 2),
                wall_s=round(sum(a["wall_s"] for a in attempts), 2),
            )
            write_json(rd / RUN_RECORD, rec)
            p = res.job.data["point"]
            if status != "interrupted":
                done += 1
                ran.append(res.name)
            if status == "ok":
                knn = (read_json(rd / "results.json") or {}).get("top1")
                knn_txt = f"kNN {knn:.2f}" if isinstance(knn, (int, float)) else "kNN –"
                log(
                    f"[{p.index + 1}/{n}] finished {res.name}: {knn_txt}, {res.wall_s:.1f} s wall, "
                    f"{res.cpu_s:.1f} CPU-s; {done} of {n} done"
                )
            elif status == "failed":
                failed.append(res.name)
                log(
                    f"[{p.index + 1}/{n}] FAILED {res.name}: exit {res.exit}, {last!r} (log {rd / RUN_LOG}); "
                    f"{res.wall_s:.1f} s wall, {res.cpu_s:.1f} CPU-s; {done} of {n} done"
                )
            else:
                log(f"[{p.index + 1}/{n}] interrupted {res.name} (exit {res.exit}); a rerun resumes it")
            try:
                write_summary(out, plot=False)
            except Exception as e:  # noqa: BLE001 -- a summary problem must not stop the runs
                log(f"warning: could not update the summary: {e}")

        if skipped and not todo:
            log(f"all {n} runs finished earlier; nothing to run")
        try:
            with _term_as_interrupt():
                run_jobs(todo, jobs, on_start=on_start, on_finish=on_finish)
        except KeyboardInterrupt:
            write_summary(out, plot=plot)
            raise
        summary = write_summary(out, plot=plot)
    failed_all = [r["name"] for r in summary["runs"] if r["status"] == "failed"]
    return SweepResult(out, n, ran, skipped, failed_all, summary)
