"""The training loop of ``sslvit pretrain`` and ``sslvit train``. Read it top to bottom: set-up, resume, the
step, checkpoints, final evaluation. What differs between the two commands (batches, method, evaluation)
is a task (``ssl_vit/engine/tasks.py``); a method may define ``set_progress(step, total_steps)`` (called
before each step) and ``terms`` (logged as ``train/<name>``).

Everything a step depends on is a function of ``(seed, step, rank)`` -- the batch, its augmentation,
the global RNG (drop-path) -- or lives in the checkpoint (weights, optimizer, hook windows), so a
resumed run is bit-identical to an uninterrupted one on the same hardware and thread count.
"""
from __future__ import annotations

import math
import signal
import time
from pathlib import Path
from typing import Dict, List, Optional

import torch
from timm.models import VisionTransformer
from tqdm.auto import tqdm

from ssl_vit.checkpoints.load import load_state_strict
from ssl_vit.config.loading import config_from_dict, diff_configs, dump_yaml, to_dict
from ssl_vit.config.schema import Config
from ssl_vit.data.specs import load_dataset
from ssl_vit.data.streams import BatchOrder, derive_seed
from ssl_vit.engine.checkpointing import CheckpointManager
from ssl_vit.engine.cpu import busy_cpu_warning, cpu_threads
from ssl_vit.engine.distributed import DistContext, gather_no_grad, init_distributed
from ssl_vit.engine.hooks import Hook, Hooks, RunState
from ssl_vit.engine.logger import RunLogger
from ssl_vit.engine.method_terms import MethodTermsHook
from ssl_vit.engine.precision import Precision, resolve_device
from ssl_vit.engine.sync_bn import convert_sync_batchnorm
from ssl_vit.engine.schedules import lr_at, momentum_at, scaled_lr
from ssl_vit.engine.tasks import TASKS
from ssl_vit.errors import SslvitError
from ssl_vit.models import create_backbone, resolve_model_config

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
            except ValueError:        # not the main thread
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


def _data_config(cfg: Config, train) -> Dict:
    return {"img_size": cfg.model.img_size, "in_chans": cfg.model.in_chans,
            "mean": [float(v) for v in train.mean][: cfg.model.in_chans] if len(train.mean) >= cfg.model.in_chans
            else [float(train.mean[0])] * cfg.model.in_chans,
            "std": [float(v) for v in train.std][: cfg.model.in_chans] if len(train.std) >= cfg.model.in_chans
            else [float(train.std[0])] * cfg.model.in_chans}


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
    if cfg.train.compile:
        compile_backbones(model)
    return model


def compile_backbones(model: torch.nn.Module) -> None:
    """``train.compile``: compile every ViT inside ``model`` in place (``nn.Module.compile``, so state-dict
    keys and checkpoints are unchanged); a graph that fails to compile runs eagerly instead."""
    import torch._dynamo
    torch._dynamo.config.suppress_errors = True
    for m in model.modules():
        if m is not model and isinstance(m, VisionTransformer):
            m.compile()


def make_optimizer(params: List[torch.nn.Parameter], optim_cfg, lr: float, device: torch.device) -> torch.optim.Optimizer:
    """AdamW; the fused kernel where this PyTorch has it for the device (CPU and CUDA): one pass over each
    tensor instead of ~7 elementwise ops per parameter (the unfused CPU path runs a Python loop over
    parameters), the same update rule (tests/engine/test_step_equivalence.py)."""
    kw = dict(lr=lr, betas=tuple(optim_cfg.betas), weight_decay=optim_cfg.weight_decay)
    try:
        return torch.optim.AdamW(params, fused=True, **kw)
    except (RuntimeError, ValueError, TypeError):
        return torch.optim.AdamW(params, **kw)


def pretrain(cfg: Config, output_dir: str | Path, resume: bool = False, force: bool = False,
             hooks: Optional[List[Hook]] = None, log=print) -> Dict:
    """Run (or resume) MoCo v3 pretraining; returns a summary dict (final step, kNN top-1, paths)."""
    with cpu_threads(cfg.train.threads):
        return fit(cfg, output_dir, "pretrain", resume, force, hooks, log)


def train_supervised(cfg: Config, output_dir: str | Path, resume: bool = False, force: bool = False,
                     hooks: Optional[List[Hook]] = None, log=print) -> Dict:
    """Run (or resume) supervised training from scratch (bootstrapped with ``model.bootstrap.enabled``);
    returns a summary dict (final step, test top-1, paths)."""
    with cpu_threads(cfg.train.threads):
        return fit(cfg, output_dir, "train", resume, force, hooks, log)


def fit(cfg: Config, output_dir: str | Path, task_name: str = "pretrain", resume: bool = False, force: bool = False,
        hooks: Optional[List[Hook]] = None, log=print) -> Dict:
    """The loop for any task in :data:`~ssl_vit.engine.tasks.TASKS`."""
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
            raise SslvitError(f"cannot create output dir '{out}': {e.strerror}; choose a writable --output-dir") from None

    # ---- data: a stream of batches (two views, or images + labels), a pure function of the step --
    train = load_dataset(cfg.data.dataset, cfg.data.train_split, cfg.data)
    data_cfg = _data_config(cfg, train)
    order = BatchOrder(len(train), cfg.train.batch_size, cfg.seed, ctx.rank, ctx.world_size)
    stream = task.stream(cfg, train, data_cfg, order, device)
    spe = order.steps_per_epoch
    total_steps = cfg.train.max_steps or cfg.train.epochs * spe
    if cfg.optim.warmup_steps is not None:
        warmup = cfg.optim.warmup_steps
    else:  # warm-up keeps its share of the schedule when train.max_steps shortens or lengthens it
        warmup = round(cfg.optim.warmup_epochs / max(cfg.train.epochs, 1) * total_steps)
    warmup = min(warmup, total_steps)
    peak_lr = scaled_lr(cfg.optim.lr, cfg.train.batch_size, cfg.optim.lr_scaling)
    min_lr = scaled_lr(cfg.optim.min_lr, cfg.train.batch_size, cfg.optim.lr_scaling)

    # ---- model, method, optimizer ------------------------------------------------------------
    torch.manual_seed(derive_seed("init", cfg.seed))
    model = build_model(cfg, device, task, train)
    train_model = model
    if ctx.enabled:
        model = convert_sync_batchnorm(model, device.type)
        model.gather, model.rank = gather_no_grad, ctx.rank
        train_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = make_optimizer(params, cfg.optim, peak_lr, device)
    hook_list = Hooks(_default_hooks(cfg) + list(hooks or []) + [MethodTermsHook()])

    # ---- resume -------------------------------------------------------------------------------
    start_step, state = 0, {}
    ckpts = CheckpointManager(ckpt_dir, cfg.train.keep_last, enabled=ctx.is_main)
    state = (ckpts.load_latest(log) if resume else None) or {}
    if resume and not state:
        if ctx.is_main:
            log(f"--resume: no checkpoint in {ckpt_dir}; starting fresh")
    elif resume:
        try:   # keys added to the config since the checkpoint was written take their defaults
            saved = to_dict(config_from_dict(state["config"]))
        except SslvitError:
            saved = state["config"]
        locked = diff_configs({k: saved.get(k) for k in _RESUME_LOCKED},
                              {k: to_dict(cfg).get(k) for k in _RESUME_LOCKED})
        if locked and not force:
            raise SslvitError(f"resuming '{out}' with a changed config ({'; '.join(locked)}); restore those "
                              f"settings or pass --force")
        sched = diff_configs(saved.get("train", {}), to_dict(cfg.train), "train.")
        load_state_strict(model, state["model"], str(ckpt_dir))
        optimizer.load_state_dict(state["optimizer"])
        if precision.scaler is not None and state.get("scaler"):
            precision.scaler.load_state_dict(state["scaler"])
        hook_list.load_state_dict(state.get("hooks", {}))
        start_step = int(state["step"])
        if ctx.is_main:
            log(f"resuming from step {start_step} ({ckpt_dir})" + (f"; changed: {'; '.join(sched)}" if sched else "")
                + (f"; forced despite: {'; '.join(locked)}" if locked else ""))
    if start_step >= total_steps and ctx.is_main:
        log(f"checkpoint is at step {start_step} >= total steps {total_steps}; nothing to train")

    logger = RunLogger(out, ctx.is_main, cfg.log.tensorboard, purge_step=start_step if resume else None)
    if ctx.is_main:
        dump_yaml(cfg, out / "config.yaml", header=f"world_size: {ctx.world_size} (processes; train.batch_size is the global batch)")
    run = RunState(cfg, model, optimizer, logger, ctx, out, start_step, total_steps,
                   lr_scale=float(state.get("lr_scale", 1.0)) if start_step else 1.0)
    run.extra.update(data_cfg=data_cfg, device=device, precision=precision, peak_lr=peak_lr, steps_per_epoch=spe,
                     save_checkpoint=lambda step: save_checkpoint(step))

    def save_checkpoint(step: int, periodic: bool = False) -> None:
        if not ctx.is_main:
            return
        sd = model.state_dict()
        ckpts.save({"step": step, "epoch": step / spe, "config": to_dict(cfg), "data_config": data_cfg,
                    "model": sd, "optimizer": optimizer.state_dict(),
                    "scaler": precision.scaler.state_dict() if precision.scaler is not None else {},
                    "hooks": hook_list.state_dict(), "world_size": ctx.world_size, "lr_scale": run.lr_scale},
                   {k[len("backbone."):]: v for k, v in sd.items() if k.startswith("backbone.")},
                   to_dict(cfg.model), data_cfg, periodic=periodic, monitor=run.extra.get("monitor"))

    # ---- the loop -----------------------------------------------------------------------------
    hook_list.on_start(run)
    train_model.train()
    batches = stream.batches(start_step)
    pbar = tqdm(total=total_steps, initial=start_step, disable=not (ctx.is_main and cfg.log.progress),
                desc=task.name, unit="step", dynamic_ncols=True)
    t_last, steps_since, loss_sum, nonfinite = time.perf_counter(), 0, 0.0, 0
    with _StopOnSignal() as stop:
        for step in range(start_step, total_steps):
            lr = lr_at(step, total_steps, peak_lr, warmup, min_lr) * run.lr_scale
            m = momentum_at(step, total_steps, cfg.method.momentum, cfg.method.momentum_final) if task.uses_momentum else None
            for g in optimizer.param_groups:
                g["lr"] = lr
            torch.manual_seed(derive_seed("step", cfg.seed, step, ctx.rank))   # drop-path etc.
            batch = next(batches)                      # (x1, x2) views or (x, y), (B, C, S, S) images
            if hasattr(model, "begin_step"):   # e.g. a ViTAS superformer picks this step's sub-network
                model.begin_step(step, cfg.seed)
            if hasattr(model, "set_progress"):        # e.g. the bootstrap hint-weight schedule
                model.set_progress(step, total_steps)
            with precision.autocast():
                loss = train_model(*batch, m) if task.uses_momentum else train_model(*batch)    # scalar
            optimizer.zero_grad(set_to_none=True)
            (precision.scaler.scale(loss) if precision.scaler else loss).backward()
            if precision.scaler:
                precision.scaler.unscale_(optimizer)
            loss_global = loss.detach()
            if ctx.enabled:                     # the logged loss is the global mean (DDP averages the gradients)
                torch.distributed.all_reduce(loss_global)
                loss_global /= ctx.world_size
            run.loss, run.lr = loss_global.item(), lr
            finite, grad_norm = _grads_finite(params)
            finite = finite and math.isfinite(run.loss)
            run.extra["grad_norm"] = grad_norm
            skip = hook_list.after_backward(run, step)
            if not finite:
                nonfinite += 1
                logger.log(step + 1, {}, event="nonfinite", loss=str(run.loss), grad_norm=str(grad_norm))
                if nonfinite >= cfg.train.max_nonfinite:
                    save_checkpoint(step)      # weights are still those from before the bad steps
                    raise SslvitError(f"{nonfinite} consecutive non-finite losses/gradients at step {step + 1}; "
                                      f"checkpoint saved at step {step}: lower optim.lr or raise warm-up, then --resume")
                if precision.scaler:
                    precision.scaler.update()
                continue
            nonfinite = 0
            if not skip:
                if precision.scaler:
                    precision.scaler.step(optimizer)
                    precision.scaler.update()
                else:
                    optimizer.step()
            run.step = step + 1
            loss_sum += run.loss
            steps_since += 1
            hook_list.after_step(run, step)
            # hooks' part of this step's record (one JSON object per step): {tag: number}, {field: JSON value}
            hook_vals, hook_fields = run.extra.pop("log_values", {}), run.extra.pop("log_fields", {})

            if run.step % cfg.log.every == 0 or run.step == total_steps:
                now = time.perf_counter()
                pairs_s = steps_since * cfg.train.batch_size / max(now - t_last, 1e-9)
                logger.log(run.step, {"train/loss": loss_sum / steps_since, "train/lr": lr,
                                      **({"train/momentum": m} if m is not None else {}),
                                      "train/throughput": pairs_s, **hook_vals},
                           epoch=round(run.step / spe, 4), world_size=ctx.world_size, **hook_fields)
                pbar.set_postfix(loss=f"{loss_sum / steps_since:.4f}", pairs_s=f"{pairs_s:.0f}", lr=f"{lr:.2e}")
                t_last, steps_since, loss_sum = now, 0, 0.0
            elif hook_vals or hook_fields:
                logger.log(run.step, hook_vals, **hook_fields)
            pbar.update(1)
            if cfg.train.checkpoint_every and run.step % cfg.train.checkpoint_every == 0 and run.step < total_steps:
                save_checkpoint(run.step, periodic=True)
            if stop.signum is not None or run.stop:
                break
        pbar.close()
        end_step = max(run.step, start_step)
        save_checkpoint(end_step)
        logger.flush()
        if stop.signum is not None:
            logger.close()
            raise Preempted(f"stopped by signal {stop.signum} at step {end_step}; checkpoint saved in {ckpt_dir}. "
                            f"Resume with: sslvit {task.name} --output-dir {out} --resume", stop.signum)

    # ---- the end: final evaluation (kNN / test top-1), summary -----------------------------------
    hook_list.on_end(run)
    summary: Dict = {"step": end_step, "total_steps": total_steps, "output_dir": str(out),
                     "tensorboard": str(out / "tensorboard"), "checkpoint": str(ckpt_dir / "last.safetensors")}
    if ctx.is_main and end_step >= total_steps and (cfg.eval.final_knn or not task.uses_momentum):
        summary.update(task.evaluate(model, cfg, data_cfg, device, precision, out, summary["checkpoint"], logger,
                                     end_step))
    logger.close()
    return summary


def _default_hooks(cfg: Config) -> List[Hook]:
    """Hooks every run gets (diagnostics register theirs here)."""
    try:
        from ssl_vit.diagnostics import default_hooks
    except ImportError:
        return []
    return default_hooks(cfg)
