"""Who may write a run directory, and which existing files a command may replace.

A training run claims its output dir for as long as it runs (:func:`claim_run_dir`):

* a lock: ``<run>/run.lock`` is held with ``fcntl.flock`` (released by the kernel when the process dies, so
  a SIGKILLed run never leaves a stale lock); a second process that wants the dir stops with one line
  naming the holder's pid. The file stays after the run and records the last owner
  (``{"pid", "host", "task", "started"}``), which is how ``sslvit train --resume`` on a pretraining run
  (and the reverse) is told apart from a changed architecture;
* a dir that already holds a run (``config.yaml``, ``metrics.jsonl``, checkpoints, TensorBoard events or
  results) is continued only with ``resume=True``; ``overwrite=True`` deletes that run's files first --
  only the files a run writes, each named in one log line; anything else in the dir is left alone.

Only rank 0 (``$RANK``) claims: under torchrun the other ranks write nothing.

:func:`refuse_to_replace` is the same rule for single output files (``sslvit export``, results of the
evaluation commands): an existing file is replaced only with ``--overwrite``.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterable, Iterator, List

from ssl_vit.errors import SslvitError

try:
    import fcntl
except ImportError:  # not POSIX: no lock, the other checks still hold
    fcntl = None

LOCK_NAME = "run.lock"
# What a training run writes into its dir (deleted by overwrite=True; nothing else is touched).
RUN_FILES = (
    "config.yaml",
    "metrics.jsonl",
    "results.json",
    "results.md",
    "report.md",
    "diag_training.png",
    "diag_representation.png",
)
RUN_DIRS = ("checkpoints", "tensorboard")


def run_files(out: Path, files: Iterable[str] = RUN_FILES, dirs: Iterable[str] = RUN_DIRS) -> List[str]:
    """Which of ``files`` / ``dirs`` (default: a training run's) are present in ``out`` (empty folders do not
    count: a run that failed before writing anything left no run)."""
    out = Path(out)
    found = [n for n in files if (out / n).is_file()]
    found += [f"{n}/" for n in dirs if (out / n).is_dir() and any(p.is_file() for p in (out / n).rglob("*"))]
    return found


def _read_owner(f) -> dict:
    try:
        f.seek(0)
        rec = json.loads(f.read() or "{}")
        return rec if isinstance(rec, dict) else {}
    except (OSError, ValueError):
        return {}


def _logged_task(out: Path):
    """The task of a run written before ``run.lock`` recorded it: pretraining logs ``train/momentum`` with every
    loss record, supervised training never does. None when nothing was logged."""
    try:
        with open(out / "metrics.jsonl") as f:
            for line in f:
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                if isinstance(rec, dict) and "train/loss" in rec:
                    return "pretrain" if "train/momentum" in rec else "train"
    except OSError:
        pass
    return None


def delete_outputs(out: Path, found: List[str], log: Callable[[str], None], what: str = "the previous run's") -> None:
    """``--overwrite``: delete ``found`` (names relative to ``out``; folders end in '/'), said in one log line."""
    for name in found:
        p = out / name.rstrip("/")
        try:
            shutil.rmtree(p) if p.is_dir() else p.unlink()
        except OSError as e:
            raise SslvitError(
                f"--overwrite: cannot delete '{p}': {e.strerror}; remove it by hand or choose another --output-dir"
            ) from None
    log(f"--overwrite: deleted {what} {', '.join(found)} in {out}")


@contextmanager
def claim_run_dir(
    output_dir, task: str, resume: bool = False, overwrite: bool = False, log: Callable[[str], None] = print
) -> Iterator[Path]:
    """Hold ``output_dir`` for one ``task`` run (``pretrain`` / ``train``); see the module docstring."""
    out = Path(output_dir)
    if resume and overwrite:
        raise SslvitError("--resume continues the run in the output dir and --overwrite deletes it; pass only one")
    if int(os.environ.get("RANK", "0")) != 0:
        yield out
        return
    try:
        out.mkdir(parents=True, exist_ok=True)
        f = open(out / LOCK_NAME, "a+")
    except OSError as e:
        raise SslvitError(f"cannot create output dir '{out}': {e.strerror}; choose a writable --output-dir") from None
    try:
        if fcntl is not None:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                owner = _read_owner(f)
                who = (
                    f"pid {owner.get('pid', '?')}"
                    + (f" on {owner['host']}" if owner.get("host") else "")
                    + (f", sslvit {owner['task']}" if owner.get("task") else "")
                )
                raise SslvitError(
                    f"run dir '{out}' is in use by another sslvit process ({who}); wait for it to "
                    f"finish or stop it, or choose another --output-dir"
                ) from None
        f.seek(0)
        old_record = f.read()
        previous = _read_owner(f)
        found = run_files(out)
        if found and not resume and not overwrite:
            raise SslvitError(
                f"'{out}' already holds a run ({', '.join(found)}); continue it with --resume, start "
                f"over with --overwrite (deletes those files) or choose another --output-dir"
            )
        held = (previous.get("task") or _logged_task(out)) if resume and found else None
        if held not in (None, task):
            raise SslvitError(
                f"'{out}' holds an `sslvit {held}` run, not an `sslvit {task}` one; resume it with: "
                f"sslvit {held} --output-dir {out} --resume"
            )
        if found and overwrite:
            delete_outputs(out, found, log)
        f.seek(0)
        f.truncate()
        f.write(
            json.dumps(
                {
                    "pid": os.getpid(),
                    "host": socket.gethostname(),
                    "task": task,
                    "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
                }
            )
            + "\n"
        )
        f.flush()
        try:
            yield out
        except SslvitError:  # bad input found later (e.g. no usable checkpoint): the record is left as it was
            f.seek(0)
            f.truncate()
            f.write(old_record)
            f.flush()
            raise
    finally:
        f.close()  # releases the lock


def refuse_to_replace(paths: Iterable[Path], overwrite: bool, what: str = "") -> None:
    """One-line error when any of ``paths`` exists and ``overwrite`` is false."""
    existing = [str(p) for p in paths if Path(p).exists()]
    if existing and not overwrite:
        raise SslvitError(
            f"{' and '.join(repr(p) for p in existing)} already exist{'s' if len(existing) == 1 else ''}"
            f"{' (' + what + ')' if what else ''}; pass --overwrite to replace, or choose another "
            f"output"
        )
