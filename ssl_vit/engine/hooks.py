"""What the loop lets observers do. Diagnostics implement :class:`Hook`; the loop does not know which
hooks exist. A hook's ``state_dict`` goes into every checkpoint so resumed runs continue its windows."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import torch


@dataclass
class RunState:
    """What hooks may read (and, for ``stop``/``skip``, write)."""
    cfg: Any
    model: torch.nn.Module            # the method module (unwrapped)
    optimizer: torch.optim.Optimizer
    logger: Any
    ctx: Any
    out_dir: Any
    step: int = 0                     # steps completed
    total_steps: int = 0
    loss: float = float("nan")
    lr: float = 0.0
    lr_scale: float = 1.0             # multiplies the scheduled lr (e.g. lowered after a rollback); checkpointed
    stop: bool = False                # a hook asks the loop to checkpoint and stop
    extra: Dict[str, Any] = field(default_factory=dict)


class Hook:
    name = "hook"

    def on_start(self, run: RunState) -> None: ...

    def after_backward(self, run: RunState, step: int) -> Optional[str]:
        """Gradients are ready, the update is not yet applied. Return 'skip' to drop this update."""
        return None

    def after_step(self, run: RunState, step: int) -> None: ...

    def on_end(self, run: RunState) -> None: ...

    def state_dict(self) -> Dict[str, Any]:
        return {}

    def load_state_dict(self, state: Dict[str, Any]) -> None: ...


class Hooks:
    def __init__(self, hooks: List[Hook]):
        self.hooks = list(hooks)

    def on_start(self, run):
        for h in self.hooks:
            h.on_start(run)

    def after_backward(self, run, step) -> bool:
        """True when any hook asks to skip this update."""
        return any([h.after_backward(run, step) == "skip" for h in self.hooks])

    def after_step(self, run, step):
        for h in self.hooks:
            h.after_step(run, step)

    def on_end(self, run):
        for h in self.hooks:
            h.on_end(run)

    def state_dict(self):
        return {f"{i}:{h.name}": h.state_dict() for i, h in enumerate(self.hooks)}

    def load_state_dict(self, state):
        for i, h in enumerate(self.hooks):
            if f"{i}:{h.name}" in state:
                h.load_state_dict(state[f"{i}:{h.name}"])
