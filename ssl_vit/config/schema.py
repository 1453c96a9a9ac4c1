"""The config tree: one dataclass per section. The same dotted names are used in YAML recipes, in
``--set key=value`` on every command, in code (``cfg.train.max_steps``) and in every checkpoint.

Defaults follow MoCo v3 (Chen, Xie, He 2021, "An Empirical Study of Training Self-Supervised Vision
Transformers") for ViT on ImageNet: AdamW, base lr 1.5e-4 x batch/256, wd 0.1, 40 warm-up epochs,
tau = 0.2, momentum 0.99 -> 1 (cosine), 3-layer projector / 2-layer predictor with 4096-d hidden layers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional, Tuple

#: ``adapt.method`` (the registry, ``ssl_vit/adapt/methods.py``, has exactly these) and ``adapt.conv_init``.
AdaptMethodName = Literal["convpass", "convpass_attn", "linear", "full", "adapter", "lora", "vpt_shallow", "vpt_deep"]
ConvInit = Literal["xavier", "identity"]


@dataclass
class DataConfig:
    dataset: str = "fmnist"  # spec string: fmnist | cifar10:<root> | stl10:<root> | imagefolder:<root> | ...
    train_split: str = "train"  # split used for pretraining (stl10: "train+unlabeled")
    data_dir: Optional[str] = None  # where to look for (or download) data when the spec has no root
    download: bool = False  # allow torchvision downloads (needs a network)
    num_workers: int = 2  # DataLoader workers for file datasets (in-memory data needs none)
    on_bad_image: Literal["fail", "skip"] = (
        "fail"  # imagefolder, vtab, fewshot: fail | skip  (missing / corrupt images)
    )


@dataclass
class AugConfig:
    """MoCo v3 / BYOL two-view augmentation. View 1 and view 2 differ in blur and solarize probability."""

    crop_scale: Tuple[float, float] = (0.08, 1.0)
    crop_ratio: Tuple[float, float] = (0.75, 1.3333333)
    hflip_prob: float = 0.5
    jitter_prob: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.2  # colour only: no effect on 1-channel images (model.in_chans=1), nor hue / grayscale_prob
    hue: float = 0.1
    grayscale_prob: float = 0.2
    blur_prob: Tuple[float, float] = (1.0, 0.1)  # (view 1, view 2)
    blur_sigma: Tuple[float, float] = (0.1, 2.0)  # pixels at 224 px; scaled by img_size / 224 (at 28 px: <= 0.25 px)
    solarize_prob: Tuple[float, float] = (0.0, 0.2)  # (view 1, view 2)
    # multi-crop local views (method.local_crops > 0; SwAV / DINO, not MoCo v3): area share of the image each
    # crop covers. At 28 px: 0.1 is ~9x9 px (DINO's 0.05 would be 6x6, under one 7-px patch, mostly Fashion-MNIST
    # background); 0.4 is DINO's local/global boundary (~18x18 px); 14-px views are native resolution at 0.25
    local_crop_scale: Tuple[float, float] = (0.1, 0.4)
    local_size: int = 14  # local views' side in px (a multiple of model.patch_size; 14 at patch 7: 4 tokens)
    crop_padding: int = 4  # `sslvit train` (supervised): random crop after zero-padding this many px


@dataclass
class PatchEmbedConfig:
    """The stem (``model.stem``; what each option means per stem: ``ssl_vit/models/stems.py``)."""

    frozen: bool = True  # MoCo v3 sec. 4.2: keep the random patch projection fixed (conv stems: their last conv)
    stem_frozen: bool = False  # conv stems: also keep the conv layers before the projection fixed (+ BN affine)
    stem_channels: int = 0  # conv stems: conv width (0: conv D/8 doubling, scaled_relu* clamp(D/4, 8, 64))
    stem_stride: int = 0  # conv stems: downsampling by the convs, divides model.patch_size (0: auto)
    reduce_depth: bool = (
        True  # stem=conv: one block fewer than the named size (MoCo v3 vit_conv_*); explicit model.depth wins
    )


@dataclass
class ViTASConfig:
    """ViTAS search space and superformer switches (``model.name=vitas_super``), and the per-block spec of
    an exported sub-network (``model.name=vitas_subnet``). Lists are comma-separated. See
    ``ssl_vit/models/vitas.py`` (Su et al., ECCV 2022)."""

    embed_dims: str = "48,64,80,96"  # candidate token-embedding widths (max = the superformer's width)
    heads: str = "2,4"  # candidate heads per block (a candidate must divide the width)
    mlp_ratios: str = "2,3,4"  # candidate MLP ratios per block
    patch_sizes: str = ""  # candidate patch sizes (each divides img_size); "" = model.patch_size
    min_depth: int = 2  # fewest non-identity blocks (max: model.depth)
    id_prob: float = 0.25  # probability that a sampled block is identity
    sharing: Literal["cyclic", "prefix"] = "cyclic"  # cyclic (ViTAS sec. 3.2) | prefix (plain slimmable slicing)
    identity_shifting: bool = True  # identity blocks are shifted to the end (ViTAS sec. 3.3)
    sampling: Literal["uniform", "sandwich"] = (
        "uniform"  # uniform | sandwich (largest, smallest, random, cycled over steps)
    )
    blocks: str = ""  # vitas_subnet: per-block 'heads:mlp_ratio', e.g. "4:3,2:2,4:4"


@dataclass
class BootstrapConfig:
    """Bootstrapped ViT (Zhang et al., CVPR 2022): an agent CNN built from the ViT (``ssl_vit/models/bootstrap.py``)
    trained next to it; the ViT learns from the agent's intermediate features. Loss weights left at None take
    the authors' values for the mode (shared: CE 0.5 + 0.5, KD 0.5 + 0.5, hint 5; joint: 1, 1, 10)."""

    enabled: bool = False  # true: `sslvit train` / `sslvit pretrain` add the agent
    mode: Literal["shared", "joint"] = "shared"  # shared (agent uses the ViT's own parameters) | joint (own copy)
    kd_temperature: float = 4.0  # mutual distillation temperature (supervised)
    ce_weight: Optional[float] = None  # per network (supervised CE; contrastive loss in pretrain)
    kd_weight: Optional[float] = None  # per direction (ViT <- agent, agent <- ViT); supervised only
    hint_weight: Optional[float] = None  # hint loss weight at step 0, summed over blocks
    hint_decay: Literal["linear", "none"] = "linear"  # linear (weight * (1 - step / total_steps)) | none


@dataclass
class ModelConfig:
    name: str = "vit_tiny"  # a registered backbone (`sslvit pretrain --help` lists them)
    img_size: int = 224
    patch_size: int = 16
    in_chans: int = 3
    stem: str = "patchify"
    embed_dim: Optional[int] = None  # None: the named backbone's value
    depth: Optional[int] = None
    num_heads: Optional[int] = None
    mlp_ratio: Optional[float] = None
    drop_path_rate: float = 0.0
    pos_embed: Literal["sincos", "learned"] = "sincos"  # sincos (fixed 2-D, MoCo v3) | learned
    fused_attn: Literal["auto", "true", "false"] = (
        "auto"  # auto: SDPA, except on CPU below 32 tokens and in bf16 on CPU for the trained backbone (core/attention)
    )
    # LayerNorm on queries and keys per head (timm qk_norm; bounds attention-logit growth, Wortsman et al. 2023);
    # vit_* backbones only
    qk_norm: bool = False
    patch_embed: PatchEmbedConfig = field(default_factory=PatchEmbedConfig)
    bootstrap: BootstrapConfig = field(default_factory=BootstrapConfig)
    vitas: ViTASConfig = field(default_factory=ViTASConfig)  # only read by the vitas_* backbones


@dataclass
class MethodConfig:
    name: str = "mocov3"
    proj_hidden_dim: int = 4096
    pred_hidden_dim: int = 4096
    out_dim: int = 256
    temperature: float = 0.2
    momentum: float = 0.99  # start value; cosine schedule to momentum_final
    momentum_final: float = 1.0
    local_crops: int = 0  # multi-crop (SwAV / DINO, not MoCo v3): local views per image, queries only (0: off)


@dataclass
class OptimConfig:
    name: Literal["adamw"] = "adamw"
    lr: float = 1.5e-4  # base lr for a batch of 256; actual lr = lr * batch / 256 (lr_scaling)
    lr_scaling: Literal["linear", "none"] = "linear"
    min_lr: float = 0.0
    weight_decay: float = 0.1
    betas: Tuple[float, float] = (0.9, 0.999)
    warmup_epochs: float = 40.0  # as a share of train.epochs (kept when train.max_steps sets the length)
    warmup_steps: Optional[int] = None  # when set, wins over warmup_epochs
    patch_embed_lr_mult: float = (
        1.0  # lr multiplier of the patch embedding (own param group; DINOv2: 0.2); only matters when it is trained
    )


@dataclass
class TrainConfig:
    epochs: int = 300
    max_steps: Optional[int] = None  # when set, wins over epochs
    time_budget_min: float = 0.0  # > 0: wall minutes of training; the schedule's length is fixed at the warm-up's
    # end from its step time, train.max_steps / epochs the upper bound (engine/budget.py)
    batch_size: int = 4096  # global batch (summed over ranks)
    checkpoint_every: int = 1000  # steps; 0 = only at the end
    keep_last: int = 2  # periodic checkpoints kept besides last.pt and best.pt
    precision: Literal["auto", "bf16", "fp16", "fp32"] = "auto"  # auto: bf16 where the hardware has it, else fp32
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    threads: int = 0  # CPU intra-op threads; 0 = all cores
    compile: bool = False  # torch.compile the backbones (falls back to eager if compiling fails)
    max_nonfinite: int = 5  # consecutive non-finite losses/grads before the run stops
    on_spike: Literal["log", "skip", "rollback"] = "log"  # stability diagnostics
    on_alarm: Literal["log", "stop"] = (
        "log"  # live alarms (diag.alarm_*); stop: checkpoint, then exit 1 with the alarm's message
    )


@dataclass
class LogConfig:
    every: int = 10  # steps between loss/lr/throughput records
    diag_every: int = 50  # steps between diagnostics
    knn_every: int = 0  # steps between online kNN checks (0: off)
    knn_subset: int = 2000  # held-out images for the online kNN monitor
    tensorboard: bool = True
    progress: bool = True


@dataclass
class DiagConfig:
    """Stability diagnostics (``ssl_vit/diagnostics``). Intervals: ``log.diag_every``, ``log.knn_every``;
    the reaction to a spike: ``train.on_spike``."""

    enabled: bool = True  # false: no diagnostic hooks (e.g. to benchmark without them)
    spike_window: int = 100  # observations per signal in the rolling median / MAD window
    spike_min_history: int = 20  # observations a signal needs before it can spike
    spike_z: float = 6.0  # robust z-score (of log values) above which a value is a spike ...
    spike_min_ratio: float = 1.5  # ... if it is also >= this multiple of the window median (grad norms)
    spike_loss_min_ratio: float = 1.05  # the same floor for the loss, whose spikes are small in relative terms
    rollback_lr_factor: float = 0.5  # on_spike=rollback: lr multiplied by this at every rollback
    max_rollbacks: int = 3  # rollbacks per run; later spikes are skipped instead
    knn_dip: float = 2.0  # kNN top-1 drop (points) below the best so far that counts as a dip
    frozen_patch_grad: bool = True  # measure the gradient a frozen patch projection would get (diag steps)
    probe_images: int = 32  # images used for token diversity and attention entropy
    # live alarms (ssl_vit/diagnostics/alarms.py): failures that are not spikes; the reaction: train.on_alarm
    alarms: bool = True  # false: no alarms (the measurements are still logged)
    alarm_loss_chance_frac: float = (
        0.93  # loss at chance: mean loss of the last alarm_loss_window steps >= this x the chance level ...
    )
    alarm_loss_window: int = 10  # ... (MoCo v3: 4 tau ln(batch)), steps averaged
    alarm_grace_steps: int = 40  # ... checked from warm-up + this many steps (every run starts at chance)
    alarm_early_obs: int = 5  # diag observations whose max is the "early" value the collapse rules compare with
    # RankMe collapse: below this x its early value (0.25 fired on the best run, a scaled-ReLU stem at 21 -> 4.75) ...
    alarm_rankme_frac: float = 0.2
    alarm_rankme_floor: float = 3.0  # ... or at/below this effective rank
    alarm_feature_std_frac: float = 0.2  # feature-std collapse: below this x its early value ...
    alarm_feature_std_floor: float = 0.1  # ... or below this x 1/sqrt(D) (the std of isotropic features)
    alarm_attn_entropy_frac: float = 0.25  # attention-entropy collapse (any block): below this x its early value ...
    alarm_attn_entropy_floor: float = 0.15  # ... or below this (entropy / log N; 1 = uniform)
    # over-smoothing: output patch tokens' mean |cos| (diag/token_diversity) >= this (0.97 fired on healthy
    # frozen-projection runs: |cos| up to 0.987)
    alarm_token_cos: float = 0.99
    alarm_early_grad_ratio: float = (
        4.0  # early spike (before spike_min_history values): grad norm >= this x the median so far ...
    )
    alarm_early_loss_ratio: float = 1.08  # ... or loss >= this x the median so far


@dataclass
class EvalConfig:
    knn_k: int = 20
    knn_temperature: float = 0.07
    final_knn: bool = True  # kNN top-1 at the end of pretraining
    dataset: Optional[str] = None  # labelled dataset for kNN (default: data.dataset)
    batch_size: int = 512
    max_train: int = 0  # kNN memory bank size cap (0: the whole train split)
    max_test: int = 0  # kNN query cap (0: the whole test split)
    feature_cache: bool = True  # kNN / linear probe: reuse extracted features (safetensors files)
    cache_dir: Optional[str] = None  # where (default: $SSLVIT_CACHE_DIR or ~/.cache/sslvit/features)


@dataclass
class ProbeConfig:
    """`sslvit linear-probe`: a linear classifier on the frozen backbone's CLS features (after the final norm);
    ``n_last_blocks`` / ``avgpool_patchtokens`` switch to DINO's features (``ssl_vit/evaluation/pooling.py``)."""

    mode: Literal["fast", "protocol"] = (
        "fast"  # fast (logistic regression on cached features) | protocol (MoCo v3 main_lincls)
    )
    n_last_blocks: int = (
        1  # features: CLS (after the final norm) of the last n blocks, concatenated (DINO: 4 for ViT-S)
    )
    avgpool_patchtokens: bool = False  # features: + mean of the last block's patch tokens (DINO's ViT-B setting)
    fast_lrs: Tuple[float, ...] = (0.01, 0.1, 0.3)  # fast: AdamW learning rates swept (YAML list or 0.01,0.1,0.3)
    fast_weight_decays: Tuple[float, ...] = (0.0, 0.001, 0.01)  # fast: (decoupled) weight decays swept
    fast_epochs: int = 30  # fast: passes over the cached features (cosine schedule)
    fast_batch_size: int = 1024  # fast: mini-batch of features (smaller for small sets: >= 20 steps/epoch)
    val_fraction: float = 0.1  # fast: share of train held out to choose lr / weight decay, then refit on all
    epochs: int = 90  # protocol: MoCo v3 main_lincls (cosine, no warm-up)
    batch_size: int = 1024  # protocol
    lr: float = 3.0  # protocol: base lr; SGD lr = lr * batch_size / 256
    momentum: float = 0.9  # protocol
    weight_decay: float = 0.0  # protocol
    crop_scale: Tuple[float, float] = (0.08, 1.0)  # protocol: random-resized-crop scale (+ horizontal flip)


@dataclass
class SearchConfig:
    """`sslvit search`: ViTAS evolutionary search over the superformer's sub-networks (``ssl_vit/search``)."""

    supernet: Optional[str] = None  # trained superformer run dir; None: train one into <output>/supernet
    max_gflops: float = 0.05  # budget: no candidate above it is ever evaluated
    min_gflops: float = 0.0  # candidates below it are rejected as well
    population: int = 16
    generations: int = 6
    offspring: int = 16  # children per generation (mutation + crossover)
    crossover_prob: float = 0.5  # a child comes from crossover (else mutation of one parent)
    mutation_prob: float = 0.2  # per gene
    objective: Literal["nsga2", "constrained"] = (
        "nsga2"  # nsga2 (top-1 up, GFLOPs down) | constrained (top-1 only, under budget)
    )
    knn_train: int = 5000  # memory-bank images from the train split
    knn_val: int = 1000  # held-out train images scored (disjoint from the memory bank)
    top_k: int = 3  # best candidates written as recipes


@dataclass
class AdaptConfig:
    """`sslvit adapt`: transfer a frozen ViT with Convpass or a PETL baseline (``ssl_vit/adapt``).

    Defaults follow the Convpass code (PETL-ViT ``convpass/vtab/train.py``): AdamW lr 1e-3, wd 1e-4,
    batch 64, 100 epochs, cosine to 1e-5 after 10 warm-up epochs, drop-path 0.1 in the backbone."""

    method: AdaptMethodName = "convpass"
    scales: Tuple[float, ...] = (
        0.01,
        0.1,
        1.0,
        10.0,
        100.0,
    )  # convpass / lora scale s: chosen on val (one value: fixed)
    conv_init: Tuple[ConvInit, ...] = ("xavier",)  # convpass 3x3 conv init (several: chosen on val)
    dim: int = 8  # bottleneck width (convpass channels, adapter h)
    lora_rank: int = 8
    vpt_tokens: int = 10  # prompt tokens (per block for vpt_deep)
    dropout: float = 0.1  # inside the added modules (vpt: on the prompts)
    drop_path_rate: float = 0.1  # stochastic depth of the backbone's blocks while adapting
    epochs: int = 100
    warmup_epochs: float = 10.0
    lr: float = 1e-3
    min_lr: float = 1e-5
    weight_decay: float = 1e-4
    batch_size: int = 64
    select_on_val: bool = True  # choose s (+ conv init) and the epoch on val, retrain, test once
    val_fraction: float = 0.1  # datasets without a val split: share of train held out for selection
    save_adapter: bool = True  # write adapter.safetensors (trained tensors + backbone hash)


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
    search: SearchConfig = field(default_factory=SearchConfig)
    adapt: AdaptConfig = field(default_factory=AdaptConfig)
