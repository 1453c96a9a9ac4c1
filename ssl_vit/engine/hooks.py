"""What the loop lets observers see and ask for. Diagnostics implement :class:`Hook`; the loop does not
know which hooks exist (the caller passes them: ``ssl_vit.runs.pretrain`` / ``train_supervised`` put the
diagnostics first).

Per step (0-based ``step``) the loop (``ssl_vit/engine/trainer.py``) does::

    forward, backward                         -> run.loss, run.grad_norm (host floats)
    a = hooks.after_backward(run, step)       # gradients ready, update not applied
    CONTINUE: optimizer step | SKIP: no update |
    ROLLBACK: restore checkpoints/last.pt, lr_scale *= diag.rollback_lr_factor
    STOP: no update, then checkpoint and end
    b = hooks.after_step(run, step)           # run.step == step + 1; run.record holds this step's log values
    write run.record (one metrics.jsonl object + TensorBoard, then its events); STOP: checkpoint and end

Every hook is called every time, in list order; the loop carries out the most severe action returned
(``STOP > ROLLBACK > SKIP > CONTINUE``; ``None`` counts as CONTINUE). Hooks never touch the optimizer, the
grad scaler or checkpoints: ROLLBACK is done by the loop through ``CheckpointManager``, and its outcome is
in ``run.rollback`` during that step's ``after_step``. A STOP with ``run.stop_reason`` set ends ``fit`` with
:class:`~ssl_vit.errors.RunStopped` after the checkpoint (the CLI prints that one line and exits 1); a STOP
without a reason ends the run quietly (as a preemption does, minus the signal).

A hook's ``state_dict`` goes into every checkpoint, so a resumed run continues its windows.

Example::

    class StopAtLoss(Hook):
        name = "stop_at_loss"
        def after_step(self, run, step):
            if run.loss < 1.0:
                run.stop_reason = f"loss {run.loss:.3f} < 1 at step {run.step}"
                return Action.STOP
            return Action.CONTINUE
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import torch

from ssl_vit.core.input_spec import InputSpec


class Action(enum.IntEnum):
    """What a hook asks the loop to do; a larger value wins when hooks disagree."""

    CONTINUE = 0
    SKIP = 1  # after_backward: drop this update (the gradients are discarded)
    ROLLBACK = 2  # after_backward: restore checkpoints/last.pt instead of the update, lower lr_scale
    STOP = 3  # checkpoint and end the run (from after_backward: without this update)


@dataclass
class Event:
    """A metrics.jsonl record of its own: ``{"step", **values, "event": kind, **fields}`` (values also to
    TensorBoard)."""

    kind: str
    values: Dict[str, float] = field(default_factory=dict)
    fields: Dict[str, Any] = field(default_factory=dict)


@dataclass
class StepRecord:
    """This step's part of the log, filled by hooks in ``after_step``: ``values`` ({TensorBoard tag: float},
    into the step's metrics.jsonl object and TensorBoard), ``fields`` (JSON values, metrics.jsonl only) and
    ``events`` (separate records after the step's object)."""

    values: Dict[str, float] = field(default_factory=dict)
    fields: Dict[str, Any] = field(default_factory=dict)
    events: List[Event] = field(default_factory=list)

    def add(self, values: Optional[Dict[str, float]] = None, **fields) -> None:
        if values:
            self.values.update(values)
        if fields:
            self.fields.update(fields)

    def event(self, kind: str, values: Optional[Dict[str, float]] = None, **fields) -> None:
        self.events.append(Event(kind, dict(values or {}), fields))


@dataclass
class Rollback:
    """A rollback the loop carried out this step: back to the weights of ``to_step``, lr now x ``lr_scale``."""

    to_step: int
    lr_scale: float


@dataclass
class RunState:
    """What hooks read. Hooks write only ``record`` (via ``record.add`` / ``record.event``), ``monitor``
    (best-checkpoint value), ``group_grad_norms`` (the grad-norm hook) and ``stop_reason``."""

    cfg: Any  # ssl_vit.config.Config
    model: Any  # the method (ssl_vit.methods.base.Method), unwrapped from DDP
    logger: Any  # RunLogger (``.tb``: the SummaryWriter or None)
    ctx: Any  # DistContext (rank, world size, is_main)
    out_dir: Path
    input_spec: InputSpec  # the backbone's input (img_size, in_chans, mean, std)
    device: torch.device
    precision: Any  # ssl_vit.core.precision.Precision (name, dtype, autocast)
    total_steps: int
    warmup_steps: int = 0
    global_batch: int = 0  # train.batch_size: the batch over all ranks
    log: Callable[[str], None] = print  # one-line console messages (rank 0 should gate its own)
    step: int = 0  # steps completed
    loss: float = float("nan")  # this step's loss (global mean)
    lr: float = 0.0  # this step's lr (base group, before per-group multipliers)
    momentum: Optional[float] = None  # this step's momentum-encoder coefficient (MoCo), else None
    lr_scale: float = 1.0  # multiplies the scheduled lr (lowered at a rollback); checkpointed
    grad_norm: float = float("nan")  # L2 norm of all trained gradients, every step
    group_grad_norms: Dict[str, float] = field(default_factory=dict)  # {group: norm}, diag steps only
    monitor: Optional[float] = None  # latest online kNN top-1 (best.pt is chosen by it)
    rollback: Optional[Rollback] = None  # set by the loop on the step it rolled back
    stop_reason: Optional[str] = None  # with Action.STOP: fit raises RunStopped(stop_reason)
    record: StepRecord = field(default_factory=StepRecord)


class Hook:
    """Base observer: every method is a no-op. Return an :class:`Action` (or None) from the two step calls."""

    name = "hook"

    def on_start(self, run: RunState) -> None: ...

    def after_backward(self, run: RunState, step: int) -> Optional[Action]:
        """Gradients are ready, the update is not yet applied (SKIP / ROLLBACK / STOP act on it)."""
        return Action.CONTINUE

    def after_step(self, run: RunState, step: int) -> Optional[Action]:
        """The update is applied, ``run.step == step + 1``; add to ``run.record`` here (STOP acts)."""
        return Action.CONTINUE

    def on_end(self, run: RunState) -> None: ...

    def state_dict(self) -> Dict[str, Any]:
        return {}

    def load_state_dict(self, state: Dict[str, Any]) -> None: ...


def _most_severe(actions) -> Action:
    return max((Action(a) if a is not None else Action.CONTINUE for a in actions), default=Action.CONTINUE)


class Hooks:
    """The hook list: calls every hook in order, combines their actions, (de)serialises their state."""

    def __init__(self, hooks: List[Hook]):
        self.hooks = list(hooks)

    def on_start(self, run: RunState) -> None:
        for h in self.hooks:
            h.on_start(run)

    def after_backward(self, run: RunState, step: int) -> Action:
        return _most_severe([h.after_backward(run, step) for h in self.hooks])

    def after_step(self, run: RunState, step: int) -> Action:
        return _most_severe([h.after_step(run, step) for h in self.hooks])

    def on_end(self, run: RunState) -> None:
        for h in self.hooks:
            h.on_end(run)

    def state_dict(self) -> Dict[str, Any]:
        return {f"{i}:{h.name}": h.state_dict() for i, h in enumerate(self.hooks)}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        for i, h in enumerate(self.hooks):
            if f"{i}:{h.name}" in state:
                h.load_state_dict(state[f"{i}:{h.name}"])
