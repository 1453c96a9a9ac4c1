"""What a sweep's output dir holds, and the state of each run in it (the layout is in
:mod:`ssl_vit.sweep.runner`): the spec file, the per-run records and logs, whether a run finished, failed, is
running or holds a checkpoint. Read by the runner (what to start) and the summary (what to report).
"""

from __future__ import annotations

import json
import os
import shlex
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from ssl_vit.core.atomic import atomic_write_text
from ssl_vit.errors import SslvitError
from ssl_vit.sweep.grid import Point, SweepSpec, expand, numeric_key, resolved_values

SPEC_FILE = "sweep_spec.json"
RUN_RECORD = "sweep_run.json"
RUN_LOG = "run.log"
LOCK_FILE = ".sweep.lock"
#: exit codes of a run stopped by SIGINT / SIGTERM (``pretrain`` checkpoints, exits 128 + signal)
STOPPED_CODES = {130, 143, -2, -15}

CommandFn = Callable[[SweepSpec, Point, Path, bool, int], List[str]]


# ----------------------------------------------------------------------------------------- files
def read_json(path: Path) -> Optional[Dict[str, Any]]:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def write_json(path: Path, data: Dict[str, Any]) -> None:
    atomic_write_text(Path(path), json.dumps(data, indent=2) + "\n")


def load_spec_file(out: Path) -> Optional[Dict[str, Any]]:
    """The stored sweep of ``out`` (None when there is none); a one-line error when it is unreadable."""
    f = Path(out) / SPEC_FILE
    if not f.is_file():
        return None
    data = read_json(f)
    if not isinstance(data, dict) or "recipe" not in data or "grid" not in data:
        raise SslvitError(f"'{f}' is unreadable or not a sweep spec; use another --output-dir (or remove that file)")
    return data


def check_output_dir(out: Path, spec: Optional[SweepSpec]) -> Optional[SweepSpec]:
    """Refuse an output dir that is a file, holds another sweep, or holds files but no sweep. Returns the
    stored spec (None for a new / empty dir). With ``spec=None`` the dir must hold a sweep."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise SslvitError(f"--output-dir '{out}' is a file; pass a directory")
    stored = load_spec_file(out)
    if stored is None:
        if spec is None:
            raise SslvitError(
                f"'{out}' holds no sweep ({SPEC_FILE} missing); pass the sweep's --output-dir, or "
                f"--recipe and --grid to start one"
            )
        if out.is_dir() and any(out.iterdir()):
            raise SslvitError(
                f"--output-dir '{out}' is not empty and holds no sweep ({SPEC_FILE} missing); pass a "
                f"new or empty --output-dir"
            )
        return None
    old = SweepSpec.from_dict(stored)
    if spec is not None:
        diff = old.difference(spec)
        if diff:
            raise SslvitError(
                f"--output-dir '{out}' holds a different sweep ({diff}); use another --output-dir, "
                f"or repeat the original command to continue it"
            )
    return old


def sweep_command(spec: SweepSpec, out: Path) -> str:
    """The ``sslvit sweep`` command line that (re)creates / continues this sweep."""
    parts = ["sslvit", "sweep", "--recipe", spec.recipe]
    for a in spec.grid:
        parts += ["--grid", f"{a.key}={','.join(a.values)}"]
    parts += ["--seeds", ",".join(str(s) for s in spec.seeds)]
    for s in spec.sets:
        parts += ["--set", s]
    parts += ["--output-dir", str(out)]
    return " ".join(shlex.quote(p) for p in parts)


def write_spec(out: Path, spec: SweepSpec, cfgs: Dict[str, Any], jobs: int, threads: int) -> Dict[str, Any]:
    """``sweep_spec.json``: the spec, the points (names, values, typed values) and the lr key."""
    lr_key = numeric_key(spec, cfgs)
    data = {
        **spec.to_dict(),
        "lr_key": lr_key,
        "jobs": jobs,
        "threads": threads,
        "command_line": sweep_command(spec, out),
        "points": [
            {
                "name": p.name,
                "seed": p.seed,
                "values": dict(p.values),
                "resolved": resolved_values(cfgs[p.name], spec.keys),
            }
            for p in expand(spec)
        ],
    }
    old = load_spec_file(out)
    if old is not None:
        data["created"] = old.get("created")
    data.setdefault("created", None)
    data["created"] = data["created"] or time.strftime("%Y-%m-%dT%H:%M:%S")
    Path(out).mkdir(parents=True, exist_ok=True)
    write_json(Path(out) / SPEC_FILE, data)
    return data


# ----------------------------------------------------------------------------------------- run states
def has_checkpoint(run_dir: Path) -> bool:
    d = Path(run_dir) / "checkpoints"
    return d.is_dir() and any(d.glob("*.pt"))


def holds_run(run_dir: Path) -> bool:
    """Has an earlier attempt left run files (then ``pretrain`` needs ``--resume`` to continue / purge them)?"""
    d = Path(run_dir)
    return (
        has_checkpoint(d)
        or any((d / f).is_file() for f in ("config.yaml", "metrics.jsonl", "results.json"))
        or ((d / "tensorboard").is_dir() and any(p.is_file() for p in (d / "tensorboard").rglob("*")))
    )


def _pid_runs(pid: Optional[int], run_dir: Path) -> bool:
    """Is ``pid`` alive and (where /proc tells) a process working on ``run_dir``?"""
    if not pid:
        return False
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, PermissionError, ValueError, OverflowError):
        return False
    try:
        cmdline = Path(f"/proc/{int(pid)}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return True
    return str(run_dir) in cmdline or Path(run_dir).name in cmdline


def run_state(run_dir: Path) -> str:
    """``ok`` | ``failed`` | ``running`` | ``partial`` (a checkpoint, not finished) | ``started`` (records, no
    checkpoint) | ``pending`` (nothing)."""
    run_dir = Path(run_dir)
    rec = read_json(run_dir / RUN_RECORD) or {}
    if rec.get("status") == "ok" or (run_dir / "results.json").is_file():
        return "ok"
    if rec.get("status") == "running" and _pid_runs(rec.get("pid"), run_dir):
        return "running"
    if rec.get("status") == "failed":
        return "failed"
    if has_checkpoint(run_dir):
        return "partial"
    if holds_run(run_dir):
        return "started"
    return "pending"
