"""CPU thread settings that don't fight other processes.

PyTorch's CPU kernels run OpenMP parallel regions that end in a barrier: when another busy process holds
one of the cores, every region waits for the descheduled thread. Measured here (2 cores, one other
busy process): a (256, 1024) BatchNorm forward takes 0.29 ms on 1 thread and 91 ms on 2 threads, and a
whole training step slows down 5-10x. On a shared machine, ``train.threads=1`` is often the faster setting.
"""

from __future__ import annotations

import contextlib
import os
from typing import Optional

import torch


def busy_cpu_warning(threads: int) -> Optional[str]:
    """A one-line warning when other processes already load the cores this run wants to use."""
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):  # not on every platform
        return None
    cores = os.cpu_count() or 1
    n = threads or torch.get_num_threads()
    if n > 1 and load > 0.5 * cores:
        return (
            f"warning: the CPU is busy (load {load:.1f} on {cores} cores) and this run uses {n} threads; "
            f"OpenMP kernels stall when a core is taken, so consider --set train.threads=1 "
            f"(or stop the other jobs) for a much faster run"
        )
    return None


@contextlib.contextmanager
def cpu_threads(n: int):
    """Run a block with ``n`` intra-op threads (0: leave as is), then restore the previous count, so a run
    started from Python (tests, notebooks) does not change the thread count of everything after it."""
    before = torch.get_num_threads()
    if n > 0:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
