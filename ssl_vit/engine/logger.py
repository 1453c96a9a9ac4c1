"""Run records: ``metrics.jsonl`` (one JSON object per logged step) and TensorBoard, rank 0 only."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Dict, Optional


class RunLogger:
    def __init__(self, out_dir: Path, enabled: bool = True, tensorboard: bool = True, purge_step: Optional[int] = None):
        self.enabled = enabled
        self.path = Path(out_dir) / "metrics.jsonl"
        self.tb = None
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if purge_step is not None and self.path.exists():  # resume: drop records past the checkpoint
            kept = []
            for line in self.path.read_text().splitlines():
                try:
                    if json.loads(line).get("step", 0) <= purge_step:
                        kept.append(line)
                except json.JSONDecodeError:
                    continue  # a line cut by a crash
            self.path.write_text("".join(k + "\n" for k in kept))
        self._f = open(self.path, "a", buffering=1)
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter  # lazy: tensorboard is heavy

            self.tb = SummaryWriter(str(Path(out_dir) / "tensorboard"), purge_step=purge_step)

    def log(self, step: int, values: Dict[str, float], **extra) -> None:
        if not self.enabled:
            return
        rec = {
            "step": step,
            **{k: (v if v is None or math.isfinite(v) else str(v)) for k, v in values.items()},
            **extra,
        }
        self._f.write(json.dumps(rec) + "\n")
        if self.tb is not None:
            for k, v in values.items():
                if v is not None:
                    self.tb.add_scalar(k, v, step)

    def flush(self) -> None:
        if self.enabled:
            self._f.flush()
            if self.tb is not None:
                self.tb.flush()

    def close(self) -> None:
        if self.enabled:
            self._f.close()
            if self.tb is not None:
                self.tb.close()
