"""The training loop of ``sslvit pretrain`` and ``sslvit train``. Read it top to bottom: :func:`fit` calls
set-up, resume, start, the steps, the end. What differs between the two commands (batches, method,
evaluation) is a task (``ssl_vit/engine/tasks.py``). The loop calls the method's
:class:`~ssl_vit.methods.base.Method` API (``begin_step``, ``set_progress``, ``set_gather``; hooks read
``terms`` and ``last_features``) and carries out the hooks' :class:`~ssl_vit.engine.hooks.Action`
(skip, rollback through the checkpoint manager, stop); hooks see a typed
:class:`~ssl_vit.engine.hooks.RunState` (``ssl_vit/engine/hooks.py``).

Everything a step depends on is a function of ``(seed, step, rank)`` -- the batch, its augmentation,
the global RNG (drop-path) -- or lives in the checkpoint (weights, optimizer, hook windows), so a
resumed run is bit-identical to an uninterrupted one on the same hardware and thread count.
"""

from __future__ import annotations

import itertools
import math
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import torch
from timm.models import VisionTransformer
from tqdm.auto import tqdm

from ssl_vit.checkpoints.load import load_state_strict
from ssl_vit.config.loading import config_from_dict, diff_configs, dump_yaml, to_dict
from ssl_vit.config.schema import Config
from ssl_vit.core.attention import plan_attention
from ssl_vit.core.input_spec import InputSpec
from ssl_vit.core.precision import Precision, precision_name, resolve_device
from ssl_vit.core.seeding import derive_seed
from ssl_vit.data.specs import load_dataset
from ssl_vit.data.streams import BatchOrder
from ssl_vit.engine.budget import TimeBudget
from ssl_vit.engine.checkpointing import CheckpointManager
from ssl_vit.engine.cpu import busy_cpu_warning
from ssl_vit.engine.distributed import DistContext, gather_no_grad, init_distributed
from ssl_vit.engine.hooks import Action, Hook, Hooks, Rollback, RunState, StepRecord
from ssl_vit.engine.logger import RunLogger
from ssl_vit.engine.method_terms import MethodTermsHook
from ssl_vit.engine.optim import lr_mults, make_optimizer, param_groups, set_lr  # noqa: F401 (make_optimizer: re-export)
from ssl_vit.engine.schedules import lr_at, momentum_at, scaled_lr
from ssl_vit.engine.sync_bn import convert_sync_batchnorm
from ssl_vit.engine.tasks import TASKS
from ssl_vit.errors import RunStopped, SslvitError
from ssl_vit.methods.base import Method
from ssl_vit.models import create_backbone, resolve_model_config

_clock = time.perf_counter  # the time budget's clock (tests replace it with a counter)

# Sections whose change makes a checkpoint a different experiment (resume refuses without --force).
_RESUME_LOCKED = ("seed", "data", "aug", "model", "method")


class _StopOnSignal:
    """SIGTERM / SIGINT -> finish the current step, checkpoint, exit (a second signal aborts at once)."""

    def __init__(self):
        self.signum: Optional[int] = None
        self._old = {}

    def __enter__(self):
        for s in (signal.SIGTERM, signal.SIGINT):
            try:
                self._old[s] = signal.signal(s, self._handle)
            except ValueError:  # not the main thread
                pass
        return self

    def _handle(self, signum, frame):
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum

    def __exit__(self, *exc):
        for s, h in self._old.items():
            signal.signal(s, h)


class Preempted(Exception):
    """Raised after a signal-triggered checkpoint; carries the message telling how to resume."""

    def __init__(self, msg: str, signum: int):
        super().__init__(msg)
        self.signum = signum


def input_spec_of(cfg: Config, train) -> InputSpec:
    """The trained backbone's input: the model's size and channels, the training set's mean / std."""
    c = cfg.model.in_chans
    return InputSpec(
        cfg.model.img_size,
        c,
        tuple(float(v) for v in train.mean)[:c] if len(train.mean) >= c else (float(train.mean[0]),) * c,
        tuple(float(v) for v in train.std)[:c] if len(train.std) >= c else (float(train.std[0]),) * c,
    )


def _grads_finite(params: List[torch.Tensor]) -> tuple[bool, float]:
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return True, 0.0
    norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads))).item()
    return math.isfinite(norm), norm


def build_model(cfg: Config, device: torch.device, task=None, train=None) -> torch.nn.Module:
    """Backbone + the task's method (default: pretraining, e.g. MoCo v3) on ``device``, compiled with
    ``train.compile``. ``train`` (the dataset) is needed by tasks with a classifier head."""
    task = task or TASKS["pretrain"]
    backbone = create_backbone(cfg.model, device.type)
    feat_dim = getattr(backbone, "num_features", None) or resolve_model_config(cfg.model).embed_dim
    model = task.build(cfg, backbone, feat_dim, train).to(device)
    if str(cfg.model.fused_attn).lower() == "auto":  # SDPA or plain per pass and dtype (core/attention.py)
        plan_attention(model, device.type, precision_name(cfg.train.precision, device))
    if cfg.train.compile:
        compile_backbones(model)
    return model


def compile_backbones(model: torch.nn.Module) -> None:
    """``train.compile``: compile every ViT inside ``model`` in place (``nn.Module.compile``, so state-dict
    keys and checkpoints are unchanged); a graph that fails to compile runs eagerly instead."""
    import torch._dynamo  # lazy: torch._dynamo is heavy and only train.compile needs it

    torch._dynamo.config.suppress_errors = True
    for m in model.modules():
        if m is not model and isinstance(m, VisionTransformer):
            m.compile()


def fit(
    cfg: Config,
    output_dir: str | Path,
    task_name: str = "pretrain",
    resume: bool = False,
    force: bool = False,
    hooks: Optional[List[Hook]] = None,
    log=print,
) -> Dict:
    """The loop for any task in :data:`~ssl_vit.engine.tasks.TASKS`, observed by ``hooks`` (in order; the loop
    adds its :class:`MethodTermsHook` last): set-up, resume, the steps, the end."""
    task = TASKS[task_name]
    ctx: DistContext = init_distributed(cfg.train.device)
    device = resolve_device(cfg.train.device, ctx.local_rank)
    precision = Precision.resolve(cfg.train.precision, device)
    if device.type == "cpu" and ctx.is_main and (busy := busy_cpu_warning(cfg.train.threads)):
        log(busy)
    out = Path(output_dir)
    ckpt_dir = out / "checkpoints"
    if ctx.is_main:
        try:
            ckpt_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise SslvitError(
                f"cannot create output dir '{out}': {e.strerror}; choose a writable --output-dir"
            ) from None
    loop = _set_up(cfg, task, ctx, device, precision, out, list(hooks or []), log)
    state = _resume(loop, resume, force)
    run = _start(loop, state, resume)
    end_step = _run_steps(loop, run)
    return _end(loop, run, end_step)


# ---- set-up -------------------------------------------------------------------------------------------
@dataclass
class _Loop:
    """What the set-up builds and the step functions share (hooks see :class:`RunState` instead)."""

    cfg: Config
    task: Any
    ctx: DistContext
    device: torch.device
    precision: Precision
    out: Path
    input_spec: InputSpec
    stream: Any  # .batches(start_step) -> iterator of batches
    steps_per_epoch: int
    total_steps: int  # fixed at set-up, or at the warm-up's end under a time budget
    warmup: int
    peak_lr: float
    min_lr: float
    model: Method  # unwrapped
    train_model: torch.nn.Module  # the DDP wrapper under torchrun, else the model
    params: List[torch.nn.Parameter]  # trained parameters, every optimizer group
    optimizer: torch.optim.Optimizer
    lr_mults: List[float]  # per optimizer group (optim.patch_embed_lr_mult)
    hooks: Hooks
    ckpts: CheckpointManager
    log: Callable[[str], None]
    logger: Optional[RunLogger] = None
    budget: Optional[TimeBudget] = None  # train.time_budget_min > 0
    nonfinite: int = 0  # consecutive non-finite steps
    stopped: bool = False  # a hook returned Action.STOP


def _set_up(
    cfg: Config, task, ctx: DistContext, device: torch.device, precision: Precision, out: Path, hooks: List[Hook], log
) -> _Loop:
    """Data (a stream of batches, a pure function of the step), schedule lengths, the method, the optimizer."""
    train = load_dataset(cfg.data.dataset, cfg.data.train_split, cfg.data)
    input_spec = input_spec_of(cfg, train)
    order = BatchOrder(len(train), cfg.train.batch_size, cfg.seed, ctx.rank, ctx.world_size)
    stream = task.stream(cfg, train, input_spec, order, device)
    spe = order.steps_per_epoch
    total_steps = cfg.train.max_steps or cfg.train.epochs * spe
    if cfg.optim.warmup_steps is not None:
        warmup = cfg.optim.warmup_steps
    elif cfg.train.time_budget_min:  # the total is not known yet: the warm-up is its epochs' worth of steps
        warmup = round(cfg.optim.warmup_epochs * spe)
    else:  # warm-up keeps its share of the schedule when train.max_steps shortens or lengthens it
        warmup = round(cfg.optim.warmup_epochs / max(cfg.train.epochs, 1) * total_steps)
    warmup = min(warmup, total_steps)
    budget = TimeBudget(cfg.train.time_budget_min * 60, total_steps, warmup) if cfg.train.time_budget_min else None
    peak_lr = scaled_lr(cfg.optim.lr, cfg.train.batch_size, cfg.optim.lr_scaling)
    min_lr = scaled_lr(cfg.optim.min_lr, cfg.train.batch_size, cfg.optim.lr_scaling)

    torch.manual_seed(derive_seed("init", cfg.seed))
    model = build_model(cfg, device, task, train)
    train_model = model
    if ctx.enabled:
        model = convert_sync_batchnorm(model, device.type)
        model.set_gather(gather_no_grad, ctx.rank)
        train_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    groups = param_groups(model, cfg.optim.patch_embed_lr_mult)
    optimizer = make_optimizer(groups, cfg.optim, peak_lr, device)
    ckpts = CheckpointManager(out / "checkpoints", cfg.train.keep_last, enabled=ctx.is_main)
    return _Loop(
        cfg,
        task,
        ctx,
        device,
        precision,
        out,
        input_spec,
        stream,
        spe,
        total_steps,
        warmup,
        peak_lr,
        min_lr,
        model,
        train_model,
        [p for g in groups for p in g["params"]],
        optimizer,
        lr_mults(optimizer),
        Hooks(hooks + [MethodTermsHook()]),
        ckpts,
        log,
        budget=budget,
    )


# ---- resume -------------------------------------------------------------------------------------------
def _resume(loop: _Loop, resume: bool, force: bool) -> Dict:
    """With ``resume``: the newest usable checkpoint into the method, optimizer, grad scaler and hooks, after
    checking that it is the same experiment. Returns that state ({} when starting fresh)."""
    cfg, log, is_main, ckpt_dir = loop.cfg, loop.log, loop.ctx.is_main, loop.ckpts.dir
    if not resume:
        return {}
    state = loop.ckpts.load_latest(log) or {}
    if not state:
        if is_main:
            log(f"--resume: no checkpoint in {ckpt_dir}; starting fresh")
        return {}
    try:  # keys added to the config since the checkpoint was written take their defaults
        saved = to_dict(config_from_dict(state["config"]))
    except SslvitError:
        saved = state["config"]
    locked = diff_configs({k: saved.get(k) for k in _RESUME_LOCKED}, {k: to_dict(cfg).get(k) for k in _RESUME_LOCKED})
    if locked and not force:
        raise SslvitError(
            f"resuming '{loop.out}' with a changed config ({'; '.join(locked)}); restore those settings or pass --force"
        )
    sched = diff_configs(saved.get("train", {}), to_dict(cfg.train), "train.")
    load_state_strict(loop.model, state["model"], str(ckpt_dir))
    try:
        loop.optimizer.load_state_dict(state["optimizer"])
    except ValueError as e:  # another number / layout of parameter groups
        raise SslvitError(
            f"the checkpoint's optimizer does not fit this run ({e}); resume with the "
            f"optim.patch_embed_lr_mult it was trained with"
        ) from None
    if loop.precision.scaler is not None and state.get("scaler"):
        loop.precision.scaler.load_state_dict(state["scaler"])
    loop.hooks.load_state_dict(state.get("hooks", {}))
    start_step = int(state["step"])
    if loop.budget is not None:
        _resume_budget(loop, state, start_step)
    if is_main:
        log(
            f"resuming from step {start_step} ({ckpt_dir})"
            + (f"; changed: {'; '.join(sched)}" if sched else "")
            + (f"; forced despite: {'; '.join(locked)}" if locked else "")
        )
        if start_step >= loop.total_steps:
            log(f"checkpoint is at step {start_step} >= total steps {loop.total_steps}; nothing to train")
    return state


def _resume_budget(loop: _Loop, state: Dict, start_step: int) -> None:
    """A time-budgeted run keeps the schedule length it resolved; one resumed inside its warm-up times it again."""
    if state.get("budget_total"):
        loop.budget.total = loop.total_steps = int(state["budget_total"])
    elif start_step >= loop.warmup:
        raise SslvitError(
            f"train.time_budget_min sizes a run at the end of its warm-up, and this checkpoint (step "
            f"{start_step}) is past it without a resolved length; set train.max_steps instead"
        )


def _start(loop: _Loop, state: Dict, resume: bool) -> RunState:
    """The run's records (metrics.jsonl, TensorBoard, config.yaml) and the hooks' view of the run."""
    cfg, ctx = loop.cfg, loop.ctx
    start_step = int(state.get("step", 0))
    loop.logger = RunLogger(loop.out, ctx.is_main, cfg.log.tensorboard, purge_step=start_step if resume else None)
    if ctx.is_main:
        dump_yaml(
            cfg,
            loop.out / "config.yaml",
            header=f"world_size: {ctx.world_size} (processes; train.batch_size is the global batch)",
        )
    return RunState(
        cfg,
        loop.model,
        loop.logger,
        ctx,
        loop.out,
        loop.input_spec,
        loop.device,
        loop.precision,
        loop.total_steps,
        warmup_steps=loop.warmup,
        global_batch=cfg.train.batch_size,
        log=loop.log,
        step=start_step,
        lr_scale=float(state.get("lr_scale", 1.0)) if start_step else 1.0,
    )


# ---- the steps ----------------------------------------------------------------------------------------
class _LossWindow:
    """``train/loss`` is the mean over the steps since the last loss record, throughput over the same time."""

    def __init__(self):
        self.t, self.n, self.sum = time.perf_counter(), 0, 0.0

    def add(self, loss: float) -> None:
        self.sum += loss
        self.n += 1

    def flush(self, batch_size: int) -> tuple[float, float]:
        now = time.perf_counter()
        out = self.sum / self.n, self.n * batch_size / max(now - self.t, 1e-9)
        self.t, self.n, self.sum = now, 0, 0.0
        return out


def _run_steps(loop: _Loop, run: RunState) -> int:
    """Steps ``run.step .. total_steps - 1`` (until a hook's STOP or a signal), periodic checkpoints, the final
    checkpoint. Returns the step of that final checkpoint."""
    cfg, ctx, start_step = loop.cfg, loop.ctx, run.step
    loop.hooks.on_start(run)
    loop.train_model.train()
    batches = loop.stream.batches(start_step)
    pbar = tqdm(
        total=loop.total_steps,
        initial=start_step,
        disable=not (ctx.is_main and cfg.log.progress),
        desc=loop.task.name,
        unit="step",
        dynamic_ncols=True,
    )
    window = _LossWindow()
    if loop.budget is not None and loop.budget.total is None:
        loop.budget.begin(start_step, _clock())
    with _StopOnSignal() as sig:
        for step in itertools.count(start_step):
            if step >= loop.total_steps:  # the total can change once, at the end of a budget's warm-up
                break
            action = _step(loop, run, step, batches)
            if action is None:  # non-finite loss / gradients: skipped, nothing logged
                continue
            if loop.budget is not None and (total := loop.budget.observe(run.step, _clock())):
                _resize(loop, run, total, pbar)
            window.add(run.loss)
            action = max(action, _agree(loop, loop.hooks.after_step(run, step)))
            _write_record(loop, run, window, pbar)
            if (
                cfg.train.checkpoint_every
                and run.step % cfg.train.checkpoint_every == 0
                and run.step < loop.total_steps
            ):
                _save(loop, run, run.step, periodic=True)
            loop.stopped = action is Action.STOP
            if sig.signum is not None or loop.stopped:
                break
        pbar.close()
        end_step = max(run.step, start_step)
        _save(loop, run, end_step)
        loop.logger.flush()
        if sig.signum is not None:
            loop.logger.close()
            raise Preempted(
                f"stopped by signal {sig.signum} at step {end_step}; checkpoint saved in {loop.ckpts.dir}. "
                f"Resume with: sslvit {loop.task.name} --output-dir {loop.out} --resume",
                sig.signum,
            )
    return end_step


def _resize(loop: _Loop, run: RunState, total: int, pbar) -> None:
    """The time budget's schedule length (every rank the shortest any rank measured): loop, hooks, progress bar."""
    if loop.ctx.enabled:
        t = torch.tensor([total], device=loop.device)
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MIN)
        total = loop.budget.total = int(t.item())
    loop.total_steps = run.total_steps = pbar.total = total
    pbar.refresh()
    if loop.ctx.is_main:
        loop.log(loop.budget.message(loop.steps_per_epoch))
    loop.logger.log(
        run.step,
        {},
        event="budget",
        total_steps=total,
        step_ms=round(1000 * loop.budget.step_s, 2),
        warmup_steps=loop.warmup,
    )


def _step(loop: _Loop, run: RunState, step: int, batches) -> Optional[Action]:
    """0-based ``step``: forward, backward, the hooks' verdict, then the update or what they asked for instead.
    None: the loss or a gradient was not finite (update skipped, the step not counted)."""
    cfg, model, precision, opt = loop.cfg, loop.model, loop.precision, loop.optimizer
    lr = lr_at(step, loop.total_steps, loop.peak_lr, loop.warmup, loop.min_lr) * run.lr_scale
    m = (
        momentum_at(step, loop.total_steps, cfg.method.momentum, cfg.method.momentum_final)
        if loop.task.uses_momentum
        else None
    )
    set_lr(opt, lr, loop.lr_mults)
    torch.manual_seed(derive_seed("step", cfg.seed, step, loop.ctx.rank))  # drop-path etc.
    batch = next(batches)  # (x1, x2[, local]) views or (x, y), (B, C, S, S) images
    model.begin_step(step, cfg.seed)  # e.g. a ViTAS superformer picks this step's sub-network
    model.set_progress(step, loop.total_steps)  # e.g. the bootstrap hint-weight schedule
    with precision.autocast():
        loss = loop.task.loss(loop.train_model, batch, m)  # scalar
    opt.zero_grad(set_to_none=True)
    (precision.scaler.scale(loss) if precision.scaler else loss).backward()
    if precision.scaler:
        precision.scaler.unscale_(opt)
    run.loss, run.lr, run.momentum = _global_mean(loss, loop.ctx), lr, m
    finite, run.grad_norm = _grads_finite(loop.params)
    run.group_grad_norms, run.rollback = {}, None
    action = _agree(loop, loop.hooks.after_backward(run, step))
    if not (finite and math.isfinite(run.loss)):
        _skip_nonfinite(loop, run, step)
        return None
    loop.nonfinite = 0
    _apply(loop, run, action)
    run.step = step + 1
    return action


def _global_mean(loss: torch.Tensor, ctx: DistContext) -> float:
    """The logged loss: the mean over ranks (DDP averages the gradients the same way)."""
    loss = loss.detach()
    if ctx.enabled:
        torch.distributed.all_reduce(loss)
        loss /= ctx.world_size
    return loss.item()


def _agree(loop: _Loop, action: Action) -> Action:
    """Under DDP every rank carries out the same action: the most severe any rank asked for."""
    if not loop.ctx.enabled:
        return action
    t = torch.tensor([int(action)], device=loop.device)
    torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
    return Action(int(t.item()))


def _apply(loop: _Loop, run: RunState, action: Action) -> None:
    """CONTINUE: the optimizer step. SKIP / STOP: no update. ROLLBACK: restore checkpoints/last.pt (model,
    optimizer, scaler) and multiply lr_scale by ``diag.rollback_lr_factor``; without a checkpoint yet it is a
    skip (``run.rollback`` stays None). The grad scaler is updated either way (``unscale_`` ran)."""
    scaler = loop.precision.scaler
    if action is Action.CONTINUE:
        if scaler:
            scaler.step(loop.optimizer)
            scaler.update()
        else:
            loop.optimizer.step()
        return
    if action is Action.ROLLBACK:
        run.rollback = _rollback(loop, run)
    if scaler:
        scaler.update()


def _rollback(loop: _Loop, run: RunState) -> Optional[Rollback]:
    state = loop.ckpts.load_last()
    if state is None:
        return None
    loop.model.load_state_dict(state["model"], strict=True)
    loop.optimizer.load_state_dict(state["optimizer"])
    if loop.precision.scaler is not None and state.get("scaler"):
        loop.precision.scaler.load_state_dict(state["scaler"])
    run.lr_scale *= loop.cfg.diag.rollback_lr_factor
    return Rollback(int(state["step"]), run.lr_scale)


def _skip_nonfinite(loop: _Loop, run: RunState, step: int) -> None:
    """A non-finite loss or gradient: no update, an event record; ``train.max_nonfinite`` in a row stop the run
    with a checkpoint of the weights before them."""
    cfg = loop.cfg
    loop.nonfinite += 1
    loop.logger.log(step + 1, {}, event="nonfinite", loss=str(run.loss), grad_norm=str(run.grad_norm))
    if loop.nonfinite >= cfg.train.max_nonfinite:
        _save(loop, run, step)  # weights are still those from before the bad steps
        raise SslvitError(
            f"{loop.nonfinite} consecutive non-finite losses/gradients at step {step + 1}; "
            f"checkpoint saved at step {step}: lower optim.lr or raise warm-up, then --resume"
        )
    if loop.precision.scaler:
        loop.precision.scaler.update()


def _write_record(loop: _Loop, run: RunState, window: _LossWindow, pbar) -> None:
    """This step's metrics.jsonl object (+ TensorBoard): loss, lr, momentum, throughput every ``log.every``
    steps, the hooks' values and fields whenever there are some; then the hooks' events, each its own record."""
    cfg, rec, logger = loop.cfg, run.record, loop.logger
    if run.step % cfg.log.every == 0 or run.step == loop.total_steps:
        loss, pairs_s = window.flush(cfg.train.batch_size)
        logger.log(
            run.step,
            {
                "train/loss": loss,
                "train/lr": run.lr,
                **({"train/momentum": run.momentum} if run.momentum is not None else {}),
                "train/throughput": pairs_s,
                **rec.values,
            },
            epoch=round(run.step / loop.steps_per_epoch, 4),
            world_size=loop.ctx.world_size,
            **rec.fields,
        )
        pbar.set_postfix(loss=f"{loss:.4f}", pairs_s=f"{pairs_s:.0f}", lr=f"{run.lr:.2e}")
    elif rec.values or rec.fields:
        logger.log(run.step, rec.values, **rec.fields)
    for ev in rec.events:
        logger.log(run.step, ev.values, event=ev.kind, **ev.fields)
    run.record = StepRecord()
    pbar.update(1)


def _save(loop: _Loop, run: RunState, step: int, periodic: bool = False) -> None:
    """Full state to checkpoints/last.pt (+ the backbone to last.safetensors), rank 0 only."""
    if not loop.ctx.is_main:
        return
    cfg, sd, scaler = loop.cfg, loop.model.state_dict(), loop.precision.scaler
    loop.ckpts.save(
        {
            "step": step,
            "epoch": step / loop.steps_per_epoch,
            "config": to_dict(cfg),
            "data_config": loop.input_spec.to_dict(),
            "model": sd,
            "optimizer": loop.optimizer.state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else {},
            "hooks": loop.hooks.state_dict(),
            "world_size": loop.ctx.world_size,
            "lr_scale": run.lr_scale,
            "budget_total": loop.budget.total if loop.budget is not None else None,
        },
        {k[len("backbone.") :]: v for k, v in sd.items() if k.startswith("backbone.")},
        to_dict(cfg.model),
        loop.input_spec,
        periodic=periodic,
        monitor=run.monitor,
    )


# ---- the end: final evaluation (kNN / test top-1), summary ----------------------------------------------
def _end(loop: _Loop, run: RunState, end_step: int) -> Dict:
    """Hooks' ``on_end``; a hook's STOP with a reason raises :class:`RunStopped` (after the checkpoint); else the
    task's final evaluation when the run is complete, and the summary."""
    cfg, ctx, out = loop.cfg, loop.ctx, loop.out
    loop.hooks.on_end(run)
    summary: Dict = {
        "step": end_step,
        "total_steps": loop.total_steps,
        "output_dir": str(out),
        "tensorboard": str(out / "tensorboard"),
        "checkpoint": str(loop.ckpts.dir / "last.safetensors"),
    }
    if loop.stopped and run.stop_reason:
        loop.logger.close()
        raise RunStopped(f"{run.stop_reason}; checkpoint saved at step {end_step} in {loop.ckpts.dir}")
    if ctx.is_main and end_step >= loop.total_steps and (cfg.eval.final_knn or not loop.task.uses_momentum):
        summary.update(
            loop.task.evaluate(
                loop.model,
                cfg,
                loop.input_spec,
                loop.device,
                loop.precision,
                out,
                summary["checkpoint"],
                loop.logger,
                end_step,
            )
        )
    loop.logger.close()
    return summary
