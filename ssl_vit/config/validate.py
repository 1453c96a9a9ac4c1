"""Range and consistency checks that types alone cannot express (choices are ``Literal`` fields and lists are
tuples, both checked by the coercer, ``ssl_vit/config/loading.py``). One line per problem, with the fix.

Names that only an upper layer knows (dataset specs, backbones, stems, methods) are checked by that layer: it
registers its check with :func:`register_check` when it is imported (``ssl_vit/data/specs.py``,
``ssl_vit/models/__init__.py``, ``ssl_vit/methods/__init__.py``), so this module imports nothing above
``config/``. :func:`validate` runs them in a fixed order and refuses to run without them.
"""

from __future__ import annotations

from typing import Callable, Dict

from ssl_vit.config.schema import Config
from ssl_vit.errors import SslvitError

# stage -> the layers whose checks it runs, in this order: "names" before anything else, "model" once the
# model's sizes are known to be valid (the stem is built on the meta device).
CHECK_ORDER = {"names": ("data", "models", "methods"), "model": ("models",)}
_CHECKS: Dict[str, Dict[str, Callable[[Config], None]]] = {stage: {} for stage in CHECK_ORDER}


def register_check(stage: str, layer: str, check: Callable[[Config], None]) -> None:
    """``check(cfg)`` raises a one-line :class:`SslvitError`; ``layer`` is the package that owns the names."""
    _CHECKS[stage][layer] = check


def _run_checks(stage: str, cfg: Config, need) -> None:
    """The registered checks of ``stage`` in :data:`CHECK_ORDER`; a layer in ``need`` that has not registered is
    an error (a check never goes missing silently)."""
    missing = [layer for layer in CHECK_ORDER[stage] if layer in need and layer not in _CHECKS[stage]]
    if missing:
        raise RuntimeError(
            f"the config checks of {', '.join('ssl_vit.' + m for m in missing)} are not registered; "
            f"import ssl_vit.methods (which imports models and data) before validating a config"
        )
    for layer in CHECK_ORDER[stage]:
        if layer in _CHECKS[stage]:
            _CHECKS[stage][layer](cfg)


# kNN vote weights are exp(cos / T) in float32: below ~0.012 they overflow (inf votes pick an arbitrary class);
# above a few the vote is an unweighted majority. Every float setting is finite already (``coerce``).
KNN_TEMPERATURE_RANGE = (0.02, 10.0)


def _need(cond: bool, msg: str) -> None:
    if not cond:
        raise SslvitError(msg)


def check_knn_temperature(t: float, key: str = "eval.knn_temperature") -> None:
    lo, hi = KNN_TEMPERATURE_RANGE
    _need(
        lo <= t <= hi,
        f"{key} must be in [{lo:g}, {hi:g}] (the vote weight exp(sim / T) overflows below), "
        f"got {t}; DINO's value is 0.07",
    )


def validate_knn(e) -> None:
    """The kNN settings of an ``EvalConfig`` (``sslvit knn``, pretraining's final kNN, the online monitor)."""
    _need(e.knn_k >= 1, f"eval.knn_k must be >= 1 (neighbours that vote), got {e.knn_k}")
    check_knn_temperature(e.knn_temperature)


def validate_numbers(cfg: Config) -> None:
    """Ranges of the float settings the other checks leave open."""
    o, a, m = cfg.optim, cfg.aug, cfg.model
    _need(0 <= o.min_lr <= o.lr, f"optim.min_lr must be in [0, optim.lr={o.lr}], got {o.min_lr}")
    _need(all(0 <= b < 1 for b in o.betas), f"optim.betas must be in [0, 1), got {list(o.betas)}")
    for name in ("brightness", "contrast", "saturation"):
        _need(getattr(a, name) >= 0, f"aug.{name} must be >= 0 (0: off), got {getattr(a, name)}")
    _need(0 <= a.hue <= 0.5, f"aug.hue must be in [0, 0.5], got {a.hue}")
    _need(
        0 < a.blur_sigma[0] <= a.blur_sigma[1], f"aug.blur_sigma must satisfy 0 < min <= max, got {list(a.blur_sigma)}"
    )
    _need(m.mlp_ratio is None or m.mlp_ratio > 0, f"model.mlp_ratio must be > 0, got {m.mlp_ratio}")
    _need(0 <= m.vitas.id_prob < 1, f"model.vitas.id_prob must be in [0, 1), got {m.vitas.id_prob}")
    check_knn_temperature(cfg.eval.knn_temperature)


def validate_probe(cfg: Config) -> None:
    p = cfg.probe
    _need(p.n_last_blocks >= 1, f"probe.n_last_blocks must be >= 1, got {p.n_last_blocks}")
    _need(all(v > 0 for v in p.fast_lrs), f"probe.fast_lrs values must be > 0, got {list(p.fast_lrs)}")
    _need(
        all(v >= 0 for v in p.fast_weight_decays),
        f"probe.fast_weight_decays values must be >= 0, got {list(p.fast_weight_decays)}",
    )
    _need(p.fast_epochs > 0 and p.epochs > 0, "probe.fast_epochs and probe.epochs must be > 0")
    _need(p.fast_batch_size > 0 and p.batch_size > 0, "probe.fast_batch_size and probe.batch_size must be > 0")
    _need(0 < p.val_fraction < 1, f"probe.val_fraction must be in (0, 1), got {p.val_fraction}")
    _need(p.lr > 0, f"probe.lr must be > 0, got {p.lr}")
    _need(0 <= p.momentum < 1 and p.weight_decay >= 0, "probe.momentum must be in [0, 1) and probe.weight_decay >= 0")
    _need(
        0 < p.crop_scale[0] <= p.crop_scale[1] <= 1,
        f"probe.crop_scale must satisfy 0 < min <= max <= 1, got {list(p.crop_scale)}",
    )


def validate_adapt(cfg: Config) -> None:
    """`sslvit adapt` settings (grids, ranges; the method name is checked by ``adapt.methods.get_method``)."""
    a = cfg.adapt
    _need(all(v > 0 for v in a.scales), f"adapt.scales values must be > 0, got {list(a.scales)}")
    _need(
        a.dim > 0 and a.lora_rank > 0 and a.vpt_tokens > 0,
        "adapt.dim, adapt.lora_rank and adapt.vpt_tokens must be > 0",
    )
    _need(0 <= a.dropout < 1 and 0 <= a.drop_path_rate < 1, "adapt.dropout and adapt.drop_path_rate must be in [0, 1)")
    _need(
        a.epochs > 0 and 0 <= a.warmup_epochs <= a.epochs,
        f"adapt.epochs must be > 0 and adapt.warmup_epochs in [0, epochs], got {a.epochs} / {a.warmup_epochs}",
    )
    _need(
        a.lr > 0 and 0 <= a.min_lr <= a.lr and a.weight_decay >= 0,
        "adapt.lr must be > 0, adapt.min_lr in [0, lr], adapt.weight_decay >= 0",
    )
    _need(a.batch_size > 0, "adapt.batch_size must be > 0")
    _need(0 < a.val_fraction < 1, f"adapt.val_fraction must be in (0, 1), got {a.val_fraction}")


def validate(cfg: Config, need=("data", "models", "methods")) -> None:
    """Every check; ``need``: the layers whose name checks must have registered (all of them for a recipe)."""
    _run_checks("names", cfg, need)  # dataset specs, backbone and stem names, method name
    _need(cfg.data.num_workers >= 0, "data.num_workers must be >= 0")
    m = cfg.model
    _need(m.img_size > 0 and m.patch_size > 0, "model.img_size and model.patch_size must be positive")
    _need(
        m.img_size % m.patch_size == 0,
        f"model.patch_size={m.patch_size} does not divide model.img_size={m.img_size}; pick a divisor "
        f"(e.g. {', '.join(str(p) for p in range(2, m.img_size) if m.img_size % p == 0)})",
    )
    _need(m.in_chans in (1, 3), f"model.in_chans must be 1 or 3, not {m.in_chans}")
    _need(
        m.patch_embed.stem_channels >= 0 and m.patch_embed.stem_stride >= 0,
        "model.patch_embed.stem_channels and model.patch_embed.stem_stride must be >= 0 (0: auto)",
    )
    _run_checks("model", cfg, need)  # stem stride / width problems as one line, before any data is read
    _need(0.0 <= m.drop_path_rate < 1.0, "model.drop_path_rate must be in [0, 1)")
    if m.embed_dim is not None and m.num_heads is not None:
        _need(
            m.embed_dim % m.num_heads == 0,
            f"model.embed_dim={m.embed_dim} is not divisible by model.num_heads={m.num_heads}",
        )
    if m.pos_embed == "sincos" and m.embed_dim is not None:
        _need(m.embed_dim % 4 == 0, "model.embed_dim must be a multiple of 4 for sincos position embeddings")
    b = m.bootstrap
    _need(b.kd_temperature > 0, "model.bootstrap.kd_temperature must be > 0")
    _need(
        all(w is None or w >= 0 for w in (b.ce_weight, b.kd_weight, b.hint_weight)),
        "model.bootstrap.ce_weight, kd_weight and hint_weight must be >= 0",
    )
    _need(cfg.aug.crop_padding >= 0, f"aug.crop_padding must be >= 0, got {cfg.aug.crop_padding}")
    _need(cfg.method.temperature > 0, "method.temperature must be > 0")
    _need(
        0 <= cfg.method.momentum <= 1 and 0 <= cfg.method.momentum_final <= 1,
        "method.momentum values must be in [0, 1]",
    )
    o = cfg.optim
    _need(o.lr > 0, f"optim.lr must be > 0, got {o.lr}")
    _need(o.weight_decay >= 0, f"optim.weight_decay must be >= 0, got {o.weight_decay}")
    _need(o.warmup_epochs >= 0 and (o.warmup_steps is None or o.warmup_steps >= 0), "warm-up must be >= 0")
    t = cfg.train
    _need(t.batch_size > 0, f"train.batch_size must be > 0, got {t.batch_size}")
    _need(t.batch_size >= 2, "train.batch_size must be >= 2 (BatchNorm in the heads needs 2+ samples)")
    _need(t.epochs > 0 or (t.max_steps or 0) > 0, "train.epochs or train.max_steps must be > 0")
    _need(t.max_steps is None or t.max_steps > 0, f"train.max_steps must be > 0, got {t.max_steps}")
    _need(t.time_budget_min >= 0, f"train.time_budget_min must be >= 0 (0: off), got {t.time_budget_min}")
    _need(t.checkpoint_every >= 0, "train.checkpoint_every must be >= 0 (0: only at the end)")
    _need(t.keep_last >= 0, "train.keep_last must be >= 0")
    _need(t.max_nonfinite >= 1, "train.max_nonfinite must be >= 1")
    a = cfg.aug
    _need(
        0 < a.crop_scale[0] <= a.crop_scale[1] <= 1,
        f"aug.crop_scale must satisfy 0 < min <= max <= 1, got {list(a.crop_scale)}",
    )
    _need(0 < a.crop_ratio[0] <= a.crop_ratio[1], "aug.crop_ratio must satisfy 0 < min <= max")
    for name in ("hflip_prob", "jitter_prob", "grayscale_prob"):
        _need(0 <= getattr(a, name) <= 1, f"aug.{name} must be in [0, 1]")
    for name in ("blur_prob", "solarize_prob"):
        _need(all(0 <= p <= 1 for p in getattr(a, name)), f"aug.{name} values must be in [0, 1]")
    _need(cfg.log.every > 0 and cfg.log.diag_every > 0, "log.every and log.diag_every must be > 0")
    _need(cfg.eval.knn_k > 0 and cfg.eval.knn_temperature > 0, "eval.knn_k and eval.knn_temperature must be > 0")
    validate_numbers(cfg)
    validate_probe(cfg)
    d = cfg.diag
    _need(d.spike_window >= 5, f"diag.spike_window must be >= 5 observations, got {d.spike_window}")
    _need(
        2 <= d.spike_min_history <= d.spike_window,
        f"diag.spike_min_history must be in [2, diag.spike_window={d.spike_window}], got {d.spike_min_history}",
    )
    _need(d.spike_z > 0, f"diag.spike_z must be > 0, got {d.spike_z}")
    _need(
        d.spike_min_ratio >= 1 and d.spike_loss_min_ratio >= 1,
        "diag.spike_min_ratio and diag.spike_loss_min_ratio must be >= 1 (multiples of the window median)",
    )
    _need(0 < d.rollback_lr_factor <= 1, f"diag.rollback_lr_factor must be in (0, 1], got {d.rollback_lr_factor}")
    _need(d.max_rollbacks >= 0, "diag.max_rollbacks must be >= 0")
    _need(d.knn_dip > 0, f"diag.knn_dip must be > 0 (points of top-1), got {d.knn_dip}")
    _need(d.probe_images >= 1, "diag.probe_images must be >= 1")
    _need(cfg.log.knn_every >= 0 and cfg.log.knn_subset >= 1, "log.knn_every must be >= 0 and log.knn_subset >= 1")
    validate_stability(cfg)
    validate_multicrop(cfg)


def validate_multicrop(cfg: Config) -> None:
    """``method.local_crops`` and the local views' ``aug.local_size`` / ``aug.local_crop_scale`` (checked when on)."""
    n, a, m = cfg.method.local_crops, cfg.aug, cfg.model
    _need(n >= 0, f"method.local_crops must be >= 0 (0: off), got {n}")
    if not n:
        return
    _need(
        0 < a.local_size <= m.img_size and a.local_size % m.patch_size == 0,
        f"aug.local_size={a.local_size} must be a multiple of model.patch_size={m.patch_size} and at most "
        f"model.img_size={m.img_size} (e.g. {m.img_size // 2 // m.patch_size * m.patch_size or m.patch_size})",
    )
    _need(
        0 < a.local_crop_scale[0] <= a.local_crop_scale[1] <= 1,
        f"aug.local_crop_scale must satisfy 0 < min <= max <= 1, got {list(a.local_crop_scale)}",
    )


def validate_stability(cfg: Config) -> None:
    """The live alarms (``diag.alarm_*``, ``train.on_alarm``), ``model.qk_norm``, ``optim.patch_embed_lr_mult``."""
    d, m = cfg.diag, cfg.model
    _need(
        cfg.optim.patch_embed_lr_mult > 0,
        f"optim.patch_embed_lr_mult must be > 0 (1: the base lr), got {cfg.optim.patch_embed_lr_mult}",
    )
    _need(
        not m.qk_norm or m.name.startswith("vit_"),
        f"model.qk_norm needs a timm ViT backbone (vit_*), not '{m.name}' (its attention is written out per "
        f"sub-network); set model.qk_norm=false",
    )
    _need(
        0 < d.alarm_loss_chance_frac <= 1.5,
        f"diag.alarm_loss_chance_frac must be in (0, 1.5], got {d.alarm_loss_chance_frac}",
    )
    _need(
        d.alarm_loss_window >= 1 and d.alarm_grace_steps >= 0 and d.alarm_early_obs >= 1,
        "diag.alarm_loss_window and diag.alarm_early_obs must be >= 1, diag.alarm_grace_steps >= 0",
    )
    for key in ("alarm_rankme_frac", "alarm_feature_std_frac", "alarm_attn_entropy_frac"):
        _need(0 <= getattr(d, key) < 1, f"diag.{key} must be in [0, 1) (0: off), got {getattr(d, key)}")
    _need(
        d.alarm_rankme_floor >= 0 and d.alarm_feature_std_floor >= 0 and 0 <= d.alarm_attn_entropy_floor < 1,
        "diag.alarm_rankme_floor and diag.alarm_feature_std_floor must be >= 0, diag.alarm_attn_entropy_floor "
        "in [0, 1) (0: off)",
    )
    _need(0 < d.alarm_token_cos <= 1, f"diag.alarm_token_cos must be in (0, 1] (mean |cos|), got {d.alarm_token_cos}")
    _need(
        d.alarm_early_grad_ratio > 1 and d.alarm_early_loss_ratio > 1,
        "diag.alarm_early_grad_ratio and diag.alarm_early_loss_ratio must be > 1 (multiples of the median so far)",
    )
