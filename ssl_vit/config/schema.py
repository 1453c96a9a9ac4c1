"""The config tree: one dataclass per section. The same dotted names are used in YAML recipes, in
``--set key=value`` on every command, in code (``cfg.train.max_steps``) and in every checkpoint.

Defaults follow MoCo v3 (Chen, Xie, He 2021, "An Empirical Study of Training Self-Supervised Vision
Transformers") for ViT on ImageNet: AdamW, base lr 1.5e-4 x batch/256, wd 0.1, 40 warm-up epochs,
tau = 0.2, momentum 0.99 -> 1 (cosine), 3-layer projector / 2-layer predictor with 4096-d hidden layers.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Tuple


@dataclass
class DataConfig:
    dataset: str = "fmnist"                 # spec string: fmnist | cifar10:<root> | stl10:<root> | imagefolder:<root> | ...
    train_split: str = "train"              # split used for pretraining (stl10: "train+unlabeled")
    data_dir: Optional[str] = None          # where to look for (or download) data when the spec has no root
    download: bool = False                  # allow torchvision downloads (needs a network)
    num_workers: int = 2                    # DataLoader workers for file datasets (in-memory data needs none)
    on_bad_image: str = "fail"              # imagefolder: fail | skip  (corrupt / non-image files)


@dataclass
class AugConfig:
    """MoCo v3 / BYOL two-view augmentation. View 1 and view 2 differ in blur and solarize probability."""

    crop_scale: Tuple[float, float] = (0.08, 1.0)
    crop_ratio: Tuple[float, float] = (0.75, 1.3333333)
    hflip_prob: float = 0.5
    jitter_prob: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.2
    hue: float = 0.1
    grayscale_prob: float = 0.2
    blur_prob: Tuple[float, float] = (1.0, 0.1)        # (view 1, view 2)
    blur_sigma: Tuple[float, float] = (0.1, 2.0)       # pixels at 224 px; scaled by img_size / 224
    solarize_prob: Tuple[float, float] = (0.0, 0.2)    # (view 1, view 2)


@dataclass
class PatchEmbedConfig:
    frozen: bool = True                     # MoCo v3 sec. 4.2: keep the random patch projection fixed


@dataclass
class ModelConfig:
    name: str = "vit_tiny"                  # a registered backbone (`sslvit pretrain --help` lists them)
    img_size: int = 224
    patch_size: int = 16
    in_chans: int = 3
    stem: str = "patchify"
    embed_dim: Optional[int] = None         # None: the named backbone's value
    depth: Optional[int] = None
    num_heads: Optional[int] = None
    mlp_ratio: Optional[float] = None
    drop_path_rate: float = 0.0
    pos_embed: str = "sincos"               # sincos (fixed 2-D, MoCo v3) | learned
    fused_attn: str = "auto"                # auto (off on CPU: SDPA backward is slow at short sequences) | true | false
    patch_embed: PatchEmbedConfig = field(default_factory=PatchEmbedConfig)


@dataclass
class MethodConfig:
    name: str = "mocov3"
    proj_hidden_dim: int = 4096
    pred_hidden_dim: int = 4096
    out_dim: int = 256
    temperature: float = 0.2
    momentum: float = 0.99                  # start value; cosine schedule to momentum_final
    momentum_final: float = 1.0


@dataclass
class OptimConfig:
    name: str = "adamw"
    lr: float = 1.5e-4                      # base lr for a batch of 256; actual lr = lr * batch / 256 (lr_scaling)
    lr_scaling: str = "linear"              # linear | none
    min_lr: float = 0.0
    weight_decay: float = 0.1
    betas: Tuple[float, float] = (0.9, 0.999)
    warmup_epochs: float = 40.0             # as a share of train.epochs (kept when train.max_steps sets the length)
    warmup_steps: Optional[int] = None      # when set, wins over warmup_epochs


@dataclass
class TrainConfig:
    epochs: int = 300
    max_steps: Optional[int] = None         # when set, wins over epochs
    batch_size: int = 4096                  # global batch (summed over ranks)
    checkpoint_every: int = 1000            # steps; 0 = only at the end
    keep_last: int = 2                      # periodic checkpoints kept besides last.pt and best.pt
    precision: str = "auto"                 # auto (bf16 where the hardware has it, else fp32) | bf16 | fp16 | fp32
    device: str = "auto"                    # auto | cpu | cuda | cuda:N
    threads: int = 0                        # CPU intra-op threads; 0 = all cores
    max_nonfinite: int = 5                  # consecutive non-finite losses/grads before the run stops
    on_spike: str = "log"                   # log | skip | rollback (stability diagnostics)


@dataclass
class LogConfig:
    every: int = 10                         # steps between loss/lr/throughput records
    diag_every: int = 50                    # steps between diagnostics
    knn_every: int = 0                      # steps between online kNN checks (0: off)
    knn_subset: int = 2000                  # held-out images for the online kNN monitor
    tensorboard: bool = True
    progress: bool = True


@dataclass
class DiagConfig:
    """Stability diagnostics (``ssl_vit/diagnostics``). Intervals: ``log.diag_every``, ``log.knn_every``;
    the reaction to a spike: ``train.on_spike``."""

    enabled: bool = True                    # false: no diagnostic hooks (e.g. to benchmark without them)
    spike_window: int = 100                 # observations per signal in the rolling median / MAD window
    spike_min_history: int = 20             # observations a signal needs before it can spike
    spike_z: float = 6.0                    # robust z-score (of log values) above which a value is a spike ...
    spike_min_ratio: float = 1.5            # ... if it is also >= this multiple of the window median (grad norms)
    spike_loss_min_ratio: float = 1.05      # the same floor for the loss, whose spikes are small in relative terms
    rollback_lr_factor: float = 0.5         # on_spike=rollback: lr multiplied by this at every rollback
    max_rollbacks: int = 3                  # rollbacks per run; later spikes are skipped instead
    knn_dip: float = 2.0                    # kNN top-1 drop (points) below the best so far that counts as a dip
    frozen_patch_grad: bool = True          # measure the gradient a frozen patch projection would get (diag steps)
    probe_images: int = 32                  # images used for token diversity and attention entropy


@dataclass
class EvalConfig:
    knn_k: int = 20
    knn_temperature: float = 0.07
    final_knn: bool = True                  # kNN top-1 at the end of pretraining
    dataset: Optional[str] = None           # labelled dataset for kNN (default: data.dataset)
    batch_size: int = 512
    max_train: int = 0                      # kNN memory bank size cap (0: the whole train split)
    max_test: int = 0                       # kNN query cap (0: the whole test split)
    feature_cache: bool = True              # kNN / linear probe: reuse extracted features (safetensors files)
    cache_dir: Optional[str] = None         # where (default: $SSLVIT_CACHE_DIR or ~/.cache/sslvit/features)


@dataclass
class ProbeConfig:
    """`sslvit linear-probe`: a linear classifier on the frozen backbone's CLS features (after the final norm)."""

    mode: str = "fast"                      # fast (logistic regression on cached features) | protocol (MoCo v3 main_lincls)
    fast_lrs: str = "0.01,0.1,0.3"          # fast: AdamW learning rates swept (comma-separated)
    fast_weight_decays: str = "0,0.001,0.01"  # fast: (decoupled) weight decays swept (comma-separated)
    fast_epochs: int = 30                   # fast: passes over the cached features (cosine schedule)
    fast_batch_size: int = 1024             # fast: mini-batch of features (smaller for small sets: >= 20 steps/epoch)
    val_fraction: float = 0.1               # fast: share of train held out to choose lr / weight decay, then refit on all
    epochs: int = 90                        # protocol: MoCo v3 main_lincls (cosine, no warm-up)
    batch_size: int = 1024                  # protocol
    lr: float = 3.0                         # protocol: base lr; SGD lr = lr * batch_size / 256
    momentum: float = 0.9                   # protocol
    weight_decay: float = 0.0               # protocol
    crop_scale: Tuple[float, float] = (0.08, 1.0)  # protocol: random-resized-crop scale (+ horizontal flip)


@dataclass
class Config:
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    aug: AugConfig = field(default_factory=AugConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    log: LogConfig = field(default_factory=LogConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    diag: DiagConfig = field(default_factory=DiagConfig)
