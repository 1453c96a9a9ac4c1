"""The pretraining loop. Read it top to bottom: set-up, resume, the step, checkpoints, final kNN.

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
from tqdm.auto import tqdm

from ssl_vit.checkpoints.load import load_state_strict
from ssl_vit.config.loading import diff_configs, dump_yaml, to_dict
from ssl_vit.config.schema import Config
from ssl_vit.data.specs import load_dataset
from ssl_vit.data.streams import BatchOrder, derive_seed, two_view_stream
from ssl_vit.engine.checkpointing import CheckpointManager
from ssl_vit.engine.distributed import DistContext, gather_no_grad, init_distributed
from ssl_vit.engine.hooks import Hook, Hooks, RunState
from ssl_vit.engine.logger import RunLogger
from ssl_vit.engine.precision import Precision, resolve_device
from ssl_vit.engine.sync_bn import convert_sync_batchnorm
from ssl_vit.engine.schedules import lr_at, momentum_at, scaled_lr
from ssl_vit.errors import SslvitError
from ssl_vit.methods import METHODS
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


def pretrain(cfg: Config, output_dir: str | Path, resume: bool = False, force: bool = False,
             hooks: Optional[List[Hook]] = None, log=print) -> Dict:
    """Run (or resume) MoCo v3 pretraining; returns a summary dict (final step, kNN top-1, paths)."""
    ctx: DistContext = init_distributed(cfg.train.device)
    device = resolve_device(cfg.train.device, ctx.local_rank)
    if device.type == "cpu" and cfg.train.threads > 0:
        torch.set_num_threads(cfg.train.threads)
    precision = Precision.resolve(cfg.train.precision, device)
    out = Path(output_dir)
    ckpt_dir = out / "checkpoints"
    if ctx.is_main:
        try:
            ckpt_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise SslvitError(f"cannot create output dir '{out}': {e.strerror}; choose a writable --output-dir") from None

    # ---- data: a stream of two-view batches, a pure function of the step ---------------------
    train = load_dataset(cfg.data.dataset, cfg.data.train_split, cfg.data)
    data_cfg = _data_config(cfg, train)
    order = BatchOrder(len(train), cfg.train.batch_size, cfg.seed, ctx.rank, ctx.world_size)
    stream = two_view_stream(train, cfg.aug, data_cfg, order, device, cfg.seed, cfg.data.num_workers,
                             cfg.data.on_bad_image)
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
    backbone = create_backbone(cfg.model, device.type)
    model = METHODS[cfg.method.name](backbone, resolve_model_config(cfg.model).embed_dim, cfg.method).to(device)
    train_model = model
    if ctx.enabled:
        model = convert_sync_batchnorm(model, device.type)
        model.gather, model.rank = gather_no_grad, ctx.rank
        train_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=peak_lr, betas=tuple(cfg.optim.betas), weight_decay=cfg.optim.weight_decay)
    hook_list = Hooks(_default_hooks(cfg) + list(hooks or []))

    # ---- resume -------------------------------------------------------------------------------
    start_step, state = 0, {}
    ckpts = CheckpointManager(ckpt_dir, cfg.train.keep_last, enabled=ctx.is_main)
    state = (ckpts.load_latest(log) if resume else None) or {}
    if resume and not state:
        if ctx.is_main:
            log(f"--resume: no checkpoint in {ckpt_dir}; starting fresh")
    elif resume:
        locked = diff_configs({k: state["config"].get(k) for k in _RESUME_LOCKED},
                              {k: to_dict(cfg).get(k) for k in _RESUME_LOCKED})
        if locked and not force:
            raise SslvitError(f"resuming '{out}' with a changed config ({'; '.join(locked)}); restore those "
                              f"settings or pass --force")
        sched = diff_configs(state["config"].get("train", {}), to_dict(cfg.train), "train.")
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
                desc="pretrain", unit="step", dynamic_ncols=True)
    t_last, steps_since, loss_sum, nonfinite = time.perf_counter(), 0, 0.0, 0
    with _StopOnSignal() as stop:
        for step in range(start_step, total_steps):
            lr = lr_at(step, total_steps, peak_lr, warmup, min_lr) * run.lr_scale
            m = momentum_at(step, total_steps, cfg.method.momentum, cfg.method.momentum_final)
            for g in optimizer.param_groups:
                g["lr"] = lr
            torch.manual_seed(derive_seed("step", cfg.seed, step, ctx.rank))   # drop-path etc.
            x1, x2 = next(batches)                                             # (B, C, S, S) each
            with precision.autocast():
                loss = train_model(x1, x2, m)                                  # scalar
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
                logger.log(run.step, {"train/loss": loss_sum / steps_since, "train/lr": lr, "train/momentum": m,
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
                            f"Resume with: sslvit pretrain --output-dir {out} --resume", stop.signum)

    # ---- the end: final kNN, summary ------------------------------------------------------------
    hook_list.on_end(run)
    summary: Dict = {"step": end_step, "total_steps": total_steps, "output_dir": str(out),
                     "tensorboard": str(out / "tensorboard"), "checkpoint": str(ckpt_dir / "last.safetensors")}
    if ctx.is_main and cfg.eval.final_knn and end_step >= total_steps:
        from ssl_vit.evaluation.knn import run_knn
        res = run_knn(model.backbone, data_cfg, cfg.eval.dataset or cfg.data.dataset, cfg.data, cfg.eval.knn_k,
                      cfg.eval.knn_temperature, cfg.eval.batch_size, cfg.eval.max_train, cfg.eval.max_test,
                      device, precision.dtype, progress=cfg.log.progress)
        logger.log(end_step, {"eval/knn_top1": res["top1"]})
        summary["knn"] = res
        from ssl_vit.evaluation.results import write_results
        write_results(out, {**res, "checkpoint": summary["checkpoint"], "metric": "knn"}, "pretrain kNN")
    logger.close()
    return summary


def _default_hooks(cfg: Config) -> List[Hook]:
    """Hooks every run gets (diagnostics register theirs here)."""
    try:
        from ssl_vit.diagnostics import default_hooks
    except ImportError:
        return []
    return default_hooks(cfg)
