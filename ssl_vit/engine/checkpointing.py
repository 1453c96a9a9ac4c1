"""Crash-proof checkpoint management for a run directory.

Layout of ``<run>/checkpoints/``::

    last.pt            full training state, always the newest (atomic replace)
    last.safetensors   the backbone of last.pt (timm keys, self-describing metadata)
    step_00001000.pt   periodic copies, the newest ``keep_last`` kept (hard links when possible)
    best.pt            the checkpoint with the best monitor value (e.g. online kNN top-1)
    manifest.json      file, step, size and sha256 of each of the above

Every file is written to a temp file, fsynced and renamed, so SIGKILL at any moment leaves the
previous complete file. On resume, :meth:`CheckpointManager.load_latest` verifies ``last.pt``
(it must load with ``weights_only=True``; its size and hash must match the manifest when listed)
and falls back to the newest valid periodic checkpoint with a warning.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import torch

from ssl_vit.checkpoints.formats import TRAIN_FORMAT, load_pt, save_backbone
from ssl_vit.core.atomic import atomic_path, atomic_write_text
from ssl_vit.core.input_spec import InputSpec
from ssl_vit.errors import SslvitError


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class CheckpointManager:
    def __init__(self, ckpt_dir: Path, keep_last: int = 2, enabled: bool = True):
        self.dir, self.keep_last, self.enabled = Path(ckpt_dir), keep_last, enabled
        self.manifest_path = self.dir / "manifest.json"
        self.manifest: Dict[str, Any] = self._read_manifest()

    # ---------------------------------------------------------------------------------- writing
    def _read_manifest(self) -> Dict[str, Any]:
        try:
            return json.loads(self.manifest_path.read_text())
        except (OSError, ValueError):
            return {"last": None, "periodic": [], "best": None}

    def _entry(self, path: Path, step: int, **extra) -> Dict[str, Any]:
        return {"file": path.name, "step": step, "size": path.stat().st_size, "sha256": _sha256(path), **extra}

    def save(
        self,
        state: Dict[str, Any],
        backbone: Dict[str, torch.Tensor],
        model_cfg: Dict,
        input_spec: InputSpec,
        periodic: bool = False,
        monitor: Optional[float] = None,
    ) -> None:
        """Write last.pt (+ a periodic copy, + best.pt when ``monitor`` improves) and last.safetensors."""
        if not self.enabled:
            return
        step = int(state["step"])
        last = self.dir / "last.pt"
        with atomic_path(last) as tmp:
            torch.save({"format": TRAIN_FORMAT, **state}, tmp)
            entry = self._entry(tmp, step)
            entry["file"] = last.name
            if periodic:
                self._link_or_copy(tmp, self.dir / f"step_{step:08d}.pt")
                self.manifest["periodic"] = [p for p in self.manifest["periodic"] if p["step"] != step] + [
                    {**entry, "file": f"step_{step:08d}.pt"}
                ]
            best = self.manifest.get("best")
            if monitor is not None and (best is None or monitor > best.get("monitor", float("-inf"))):
                self._link_or_copy(tmp, self.dir / "best.pt")
                self.manifest["best"] = {**entry, "file": "best.pt", "monitor": monitor}
            self.manifest["last"] = entry
            self._prune()
            atomic_write_text(self.manifest_path, json.dumps(self.manifest, indent=1))
        # the run's whole config rides along, so evaluating the run dir (last.safetensors) reads the same eval /
        # probe settings as evaluating last.pt
        extra = {"step": str(step), "config": json.dumps(state["config"])}
        save_backbone(self.dir / "last.safetensors", backbone, model_cfg, input_spec, extra)

    def _link_or_copy(self, src: Path, dst: Path) -> None:
        with atomic_path(dst) as tmp:
            tmp.unlink()
            try:
                os.link(src, tmp)
            except OSError:
                shutil.copyfile(src, tmp)

    def _prune(self) -> None:
        periodic = sorted(self.manifest["periodic"], key=lambda p: p["step"])
        drop, keep = (
            periodic[: -self.keep_last] if self.keep_last > 0 else periodic,
            periodic[-self.keep_last :] if self.keep_last > 0 else [],
        )
        for p in drop:
            (self.dir / p["file"]).unlink(missing_ok=True)
        self.manifest["periodic"] = keep

    # ---------------------------------------------------------------------------------- reading
    @staticmethod
    def _valid(path: Path) -> Tuple[Optional[Dict[str, Any]], str]:
        """A checkpoint is usable when it loads weights-only and is a training state. (The manifest's size
        and hash are for users and tools; they may lag last.pt by one save after a kill between renames.)"""
        if not path.is_file():
            return None, "missing"
        try:
            state = load_pt(path)
        except SslvitError as e:
            return None, str(e)
        if state.get("format") != TRAIN_FORMAT or "step" not in state:
            return None, "not an sslvit training checkpoint"
        lacking = [k for k in ("config", "model", "optimizer") if not isinstance(state.get(k), dict)]
        if lacking:
            return None, f"an incomplete training checkpoint (no valid '{lacking[0]}' entry)"
        return state, ""

    def load_last(self) -> Optional[Dict[str, Any]]:
        """``last.pt`` as a training state, or None when there is none (yet) or it is unusable: what a
        rollback restores (every rank reads it; only rank 0 writes)."""
        state, _ = self._valid(self.dir / "last.pt")
        return state

    def load_latest(self, log=print) -> Optional[Dict[str, Any]]:
        """Newest loadable training state, or None when the directory has none."""
        candidates = [self.dir / "last.pt"] + [
            self.dir / p["file"] for p in sorted(self.manifest["periodic"], key=lambda p: -p["step"])
        ]
        candidates += sorted(self.dir.glob("step_*.pt"), reverse=True)
        seen, problems = set(), []
        for path in candidates:
            if path in seen:
                continue
            seen.add(path)
            state, why = self._valid(path)
            if state is not None:
                if problems:  # said once, on the run's log (stderr for the CLI)
                    log(
                        f"warning: skipped unusable checkpoint(s): {'; '.join(problems)}; falling back to {path.name} "
                        f"(step {state['step']})"
                    )
                return state
            if why != "missing":
                problems.append(f"{path.name}: {why}")
        if problems:
            raise SslvitError(
                f"no usable checkpoint in '{self.dir}' ({'; '.join(problems)}); start a new run without --resume"
            )
        return None
