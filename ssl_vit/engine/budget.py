"""``train.time_budget_min``: size the schedule to a wall-clock budget from the measured step time.

A recipe that must finish in, say, 15 minutes on whatever machine runs it (bf16 in hardware or not, 2 cores
or 16) cannot fix its length in epochs: the same epochs take 2-3x longer where bf16 is emulated and fp32
runs instead. With a budget, the loop times the steps of the warm-up (whose length does not depend on the
total), and at the warm-up's end fixes the cosine schedule's length to what fits in the rest of the budget;
``train.max_steps`` / ``train.epochs`` stay the upper bound. The resolved length is logged, written to
``metrics.jsonl`` (event ``budget``) and kept in the checkpoint, so a resumed run keeps it and a user can
repeat the schedule with ``--set train.max_steps=N --set optim.warmup_steps=W``.

What the budget covers: the training loop (steps, periodic diagnostics and checkpoints, at the warm-up's
rate); start-up and the final evaluation come on top (seconds).

Example::

    b = TimeBudget(seconds=900, cap=50_000, warmup=234)
    b.begin(step=0, now=time.perf_counter())
    ...                                     # after each step:
    total = b.observe(run.step, time.perf_counter())   # None, then once the schedule's length
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

from ssl_vit.errors import SslvitError

MIN_CALIBRATION_STEPS = 10  # the warm-up must be at least this long to time steps in it


@dataclass
class TimeBudget:
    seconds: float  # train.time_budget_min x 60
    cap: int  # train.max_steps, else train.epochs x steps per epoch
    warmup: int  # warm-up steps: the schedule's length is fixed at its end
    calib_start: int = 0  # first step of the timed window (set by begin)
    t_begin: Optional[float] = None  # when training (re)started
    t_calib_start: Optional[float] = None
    total: Optional[int] = None  # the resolved schedule length
    step_s: Optional[float] = None  # measured seconds per step

    def __post_init__(self):
        if self.warmup < MIN_CALIBRATION_STEPS:
            raise SslvitError(
                f"train.time_budget_min needs a warm-up of at least {MIN_CALIBRATION_STEPS} steps to "
                f"time the steps in (it has {self.warmup}); raise optim.warmup_epochs or set "
                f"optim.warmup_steps"
            )

    def begin(self, step: int, now: float) -> None:
        """Training starts (or resumes) at ``step``: the first third of what is left of the warm-up is start-up
        (allocations, caches) and is not timed; the rest of it is."""
        self.t_begin = now
        self.calib_start = step + max(0, self.warmup - step) // 3

    def observe(self, steps_done: int, now: float) -> Optional[int]:
        """After a step (``steps_done`` completed): the schedule's length when the warm-up has just ended, else
        None. The length is what fits into the budget left at the measured rate, at most ``cap`` and at least
        the warm-up."""
        if self.total is not None:
            return None
        if self.t_calib_start is None and steps_done >= self.calib_start:  # >=: that step may have been skipped
            self.calib_start, self.t_calib_start = steps_done, now
            return None
        if steps_done < self.warmup or self.t_calib_start is None:
            return None
        self.step_s = (now - self.t_calib_start) / (steps_done - self.calib_start)
        left = self.seconds - (now - self.t_begin)
        self.total = min(self.cap, steps_done + max(0, math.floor(left / self.step_s)))
        return self.total

    def message(self, steps_per_epoch: int) -> str:
        capped = " (the upper bound train.max_steps / train.epochs)" if self.total == self.cap else ""
        return (
            f"time budget {self.seconds / 60:g} min: {1000 * self.step_s:.0f} ms/step over the warm-up -> "
            f"{self.total} steps ({self.total / steps_per_epoch:.1f} epochs){capped}; to repeat this schedule: "
            f"--set train.time_budget_min=0 --set train.max_steps={self.total} --set optim.warmup_steps={self.warmup}"
        )
