"""One MoCo v3 pretraining step: sslvit against what a user writes with lightly + timm, side by side.

* **reference** (:class:`ReferenceMoCoV3` + :class:`ReferenceTwoViews`, written here the way the lightly
  and timm docs teach): timm ``VisionTransformer`` (its default attention, i.e. PyTorch SDPA) with a
  frozen patch projection, lightly ``MoCoProjectionHead`` MLPs (3 layers / 2 layers, BN), lightly
  ``update_momentum``, one backbone forward per view, keys from the momentum encoder with ``.detach()``,
  the 2*tau InfoNCE of MoCo v3, ``torch.optim.AdamW`` with its defaults, and per-sample torchvision v2
  augmentation in a ``DataLoader`` (``num_workers=0``: workers would steal the cores the other
  variant is being timed on; ``--ref-workers N`` on a GPU machine, whose cores are otherwise idle).
* **sslvit**: the trainer's own pieces -- ``build_model`` (backbone + ``MoCoV3``) + ``make_optimizer`` +
  the batched tensor two-view stream -- one backbone forward for both views, the momentum branch under
  ``no_grad`` with its own attention choice (``fused_attn=auto``: ``ssl_vit/core/attention.py``; on CPU in
  bf16 the trained backbone runs timm's plain attention and the momentum backbone SDPA), the momentum update
  as one ``torch._foreach_lerp_``, fused AdamW, batched augmentation.

Both variants compute the same function (``tests/engine/test_step_equivalence.py`` checks loss and
gradients on one batch); ``FlopCounterMode`` counts each step's matmul FLOPs and the two counts are
printed side by side. Timings are interleaved (A B A B ...) and the median per step is kept, since the
machine's cores are shared and single timings drift. The step time includes producing the batch.

MFU = counted FLOPs / median step time / matmul peak of the dtype the step runs in, the peak measured
in the same run on the same device (2048^3 GEMM on CPU, 8192^3 on CUDA, best of 7). ``--precision auto``
runs bf16 only where the hardware has it (``--precision fp32|bf16`` forces one); the reference uses the same
dtype so the comparison is like for like. ``--device cuda`` runs both variants on the GPU (the reference's
per-sample augmentation stays in its CPU DataLoader, as a user's would; its batches are then moved).

Usage::

    .venv/bin/python eval/bench/bench_step.py --quick            # demo model, < 60 s
    .venv/bin/python eval/bench/bench_step.py                    # widths 192/384, 28/32 px, B 128/256
    .venv/bin/python eval/bench/bench_step.py --json out.json    # also write the table as JSON
    .venv/bin/python eval/bench/bench_step.py --quick --profile  # + where the step's time goes, MFU ceiling
    .venv/bin/python eval/bench/bench_step.py --no-demo --models 192x12x3,384x12x6,384x12x12 \
        --img-sizes 32 --batches 128 --precision fp32 --threads 1   # ViT-Ti / ViT-S (timm, MoCo v3 heads)
    .venv/bin/python eval/bench/bench_step.py --device cuda --no-demo --models 384x12x6 --img-sizes 224 \
        --patch 16 --batches 256 --precision bf16 --compile        # ViT-S/16 on a GPU

The last two lines printed are ``speedup=<x>`` and ``mfu=<fraction>`` of the first (demo-size or
first listed) configuration.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TQDM_DISABLE", "1")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402


# ============================================================================ the reference step
class ReferenceMoCoV3(torch.nn.Module):
    """MoCo v3 as a user writes it from the lightly + timm documentation (no sslvit code inside)."""

    def __init__(self, backbone, projector, predictor, temperature: float = 0.2):
        super().__init__()
        from lightly.models.utils import deactivate_requires_grad

        self.backbone, self.projector, self.predictor = backbone, projector, predictor
        self.backbone_momentum = copy.deepcopy(backbone)
        self.projector_momentum = copy.deepcopy(projector)
        deactivate_requires_grad(self.backbone_momentum)
        deactivate_requires_grad(self.projector_momentum)
        self.temperature = temperature

    @classmethod
    def build(
        cls,
        img_size,
        patch_size,
        in_chans,
        embed_dim,
        depth,
        num_heads,
        proj_hidden,
        pred_hidden,
        out_dim=256,
        temperature=0.2,
    ):
        import timm
        from lightly.models.modules.heads import MoCoProjectionHead

        vit = timm.models.VisionTransformer(
            img_size=img_size,
            patch_size=patch_size,
            in_chans=in_chans,
            embed_dim=embed_dim,
            depth=depth,
            num_heads=num_heads,
            num_classes=0,
            global_pool="token",
        )
        vit.patch_embed.requires_grad_(False)  # MoCo v3 random patch projection
        proj = MoCoProjectionHead(embed_dim, proj_hidden, out_dim, num_layers=3, batch_norm=True)
        pred = MoCoProjectionHead(out_dim, pred_hidden, out_dim, num_layers=2, batch_norm=True)
        return cls(vit, proj, pred, temperature)

    def loss_fn(self, q, k):
        q, k = F.normalize(q, dim=1), F.normalize(k, dim=1)
        logits = q @ k.t() / self.temperature  # (B, B)
        return F.cross_entropy(logits, torch.arange(len(q), device=q.device)) * 2 * self.temperature

    def forward(self, x1, x2, m):
        from lightly.models.utils import update_momentum

        q1 = self.predictor(self.projector(self.backbone(x1)))
        q2 = self.predictor(self.projector(self.backbone(x2)))
        update_momentum(self.backbone, self.backbone_momentum, m)
        update_momentum(self.projector, self.projector_momentum, m)
        k1 = self.projector_momentum(self.backbone_momentum(x1)).detach()
        k2 = self.projector_momentum(self.backbone_momentum(x2)).detach()
        return self.loss_fn(q1, k2) + self.loss_fn(q2, k1)


class ReferenceTwoViews(torch.utils.data.Dataset):
    """Per-sample torchvision v2 two-view augmentation of in-memory uint8 images (the user's data path)."""

    def __init__(self, images, aug, mean, std):
        from torchvision.transforms import v2

        self.images = images  # (N, C, H, W) uint8
        C, S = images.shape[1], images.shape[-1]

        def view(blur_p, sol_p):
            ops = [
                v2.RandomResizedCrop(S, scale=tuple(aug.crop_scale), antialias=True),
                v2.RandomHorizontalFlip(),
                v2.RandomApply(
                    [
                        v2.ColorJitter(
                            aug.brightness, aug.contrast, aug.saturation if C == 3 else 0, aug.hue if C == 3 else 0
                        )
                    ],
                    p=aug.jitter_prob,
                ),
            ]
            if C == 3:
                ops.append(v2.RandomGrayscale(aug.grayscale_prob))
            k = 2 * max(1, round(3 * 2.0 * S / 224)) + 1
            ops += [
                v2.RandomApply([v2.GaussianBlur(k, sigma=(0.1 * S / 224, 2.0 * S / 224))], p=blur_p),
                v2.RandomSolarize(128, sol_p),
                v2.ToDtype(torch.float32, scale=True),
                v2.Normalize(mean, std),
            ]
            return v2.Compose(ops)

        self.t1, self.t2 = view(aug.blur_prob[0], aug.solarize_prob[0]), view(aug.blur_prob[1], aug.solarize_prob[1])

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        img = self.images[i]
        return self.t1(img), self.t2(img)


def reference_batches(images, aug, mean, std, batch_size, seed=0, workers=0):
    g = torch.Generator().manual_seed(seed)
    loader = torch.utils.data.DataLoader(
        ReferenceTwoViews(images, aug, mean, std),
        batch_size=batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=workers,
        generator=g,
        persistent_workers=workers > 0,
        pin_memory=workers > 0 and torch.cuda.is_available(),
    )
    while True:
        yield from loader


# ============================================================================ set-up of both variants
@dataclass
class BenchConfig:
    embed_dim: int
    depth: int
    num_heads: int
    img_size: int
    patch_size: int
    in_chans: int
    batch_size: int
    proj_hidden: int = 1024
    pred_hidden: int = 1024

    @property
    def label(self):
        return (
            f"d{self.embed_dim} L{self.depth} h{self.num_heads} {self.img_size}px/p{self.patch_size} B{self.batch_size}"
        )


def sslvit_config(bc: BenchConfig, compile_: bool = False, precision: str = "auto"):
    from ssl_vit.config.loading import apply_overrides
    from ssl_vit.config.schema import Config

    sets = [
        "model.name=vit_pico",
        f"model.embed_dim={bc.embed_dim}",
        f"model.depth={bc.depth}",
        f"model.num_heads={bc.num_heads}",
        f"model.img_size={bc.img_size}",
        f"model.patch_size={bc.patch_size}",
        f"model.in_chans={bc.in_chans}",
        f"train.batch_size={bc.batch_size}",
        f"method.proj_hidden_dim={bc.proj_hidden}",
        f"method.pred_hidden_dim={bc.pred_hidden}",
        "aug.crop_scale=[0.25,1.0]",
        f"train.compile={str(compile_).lower()}",
        f"train.precision={precision}",
    ]
    return apply_overrides(Config(), sets)


def load_images(bc: BenchConfig, n: int):
    """Fashion-MNIST for 28 px grey configurations when it is installed; random uint8 images otherwise."""
    from ssl_vit.data.images import TensorImages

    if bc.img_size == 28 and bc.in_chans == 1:
        try:
            from ssl_vit.data.specs import load_dataset

            d = load_dataset("fmnist", "train")
            return d.subset(torch.arange(min(n, len(d)))), "fmnist"
        except Exception:  # noqa: BLE001 -- a benchmark falls back to synthetic data
            pass
    g = torch.Generator().manual_seed(0)
    imgs = torch.randint(0, 256, (n, bc.in_chans, bc.img_size, bc.img_size), dtype=torch.uint8, generator=g)
    return TensorImages(
        imgs, torch.zeros(n, dtype=torch.long), [], "synthetic", (0.5,) * bc.in_chans, (0.25,) * bc.in_chans
    ), "synthetic"


class SslvitStep:
    def __init__(self, bc: BenchConfig, data, device, compile_=False, precision: str = "auto"):
        from ssl_vit.data.streams import BatchOrder, two_view_stream
        from ssl_vit.engine.trainer import build_model, input_spec_of, make_optimizer

        self.cfg = cfg = sslvit_config(bc, compile_, precision)
        dc = input_spec_of(cfg, data)
        order = BatchOrder(len(data), bc.batch_size, cfg.seed)
        self.batches = two_view_stream(data, cfg.aug, dc, order, device, cfg.seed, 0).batches(0)
        self.model = build_model(cfg, device)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.opt = make_optimizer(self.params, cfg.optim, 1e-3, device)

    def __call__(self):
        x1, x2 = next(self.batches)
        loss = self.model(x1, x2, 0.99)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return loss


class ReferenceStep:
    def __init__(self, bc: BenchConfig, data, device, workers: int = 0):
        from ssl_vit.config.schema import AugConfig

        aug = AugConfig(crop_scale=(0.25, 1.0))
        self.model = ReferenceMoCoV3.build(
            bc.img_size,
            bc.patch_size,
            bc.in_chans,
            bc.embed_dim,
            bc.depth,
            bc.num_heads,
            bc.proj_hidden,
            bc.pred_hidden,
        ).to(device)
        self.batches = reference_batches(
            data.images, aug, list(data.mean), list(data.std), bc.batch_size, workers=workers
        )
        self.device = device
        self.opt = torch.optim.AdamW([p for p in self.model.parameters() if p.requires_grad], lr=1e-3, weight_decay=0.1)

    def __call__(self):
        x1, x2 = next(self.batches)
        if self.device.type != "cpu":
            x1, x2 = x1.to(self.device, non_blocking=True), x2.to(self.device, non_blocking=True)
        loss = self.model(x1, x2, 0.99)
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        return loss


# ============================================================================ measurements
def sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def matmul_peak(dtype, n: int = 2048, repeats: int = 7, device="cpu") -> float:
    """GFLOP/s of an n^3 GEMM on ``device``, the best of ``repeats`` (a peak is what the hardware can do: other
    processes on shared cores only ever lower a timing; CUDA: 8192^3, 10 GEMMs per timing); a slow dtype is
    measured on a smaller GEMM."""
    device = torch.device(device)
    if device.type == "cuda":
        n, inner = 8192, 10
        a, b = torch.randn(n, n, dtype=dtype, device=device), torch.randn(n, n, dtype=dtype, device=device)
        for _ in range(3):
            a @ b
        times = []
        for _ in range(repeats):
            sync(device)
            t = time.perf_counter()
            for _ in range(inner):
                a @ b
            sync(device)
            times.append((time.perf_counter() - t) / inner)
        return 2 * n**3 / min(times) / 1e9
    a, b = torch.randn(512, 512, dtype=dtype), torch.randn(512, 512, dtype=dtype)
    t = time.perf_counter()
    a @ b
    small = time.perf_counter() - t
    if small > 0.2:  # emulated dtype (e.g. bf16 without hardware support): 2048^3 would take minutes
        n = 512
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t)
    return 2 * n**3 / min(times) / 1e9


def count_flops(step) -> int:
    """Matmul FLOPs of one step (forward, backward, momentum branch). FlopCounterMode does not see PyTorch's
    CPU SDPA kernels, so attention is counted on timm's plain path (the same math) and then restored."""
    from ssl_vit.core.attention import fused_attention

    with fused_attention(step.model, enabled=False), FlopCounterMode(display=False) as fc:
        step()
    return fc.get_total_flops()


def interleaved(steps: dict, rounds: int, per_round: int, device="cpu") -> dict:
    """{name: [seconds per step, ...]}: A B A B ..., order flipped every round (CUDA: synchronised)."""
    times = {k: [] for k in steps}
    names = list(steps)
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            for _ in range(per_round):
                sync(device)
                t = time.perf_counter()
                steps[name]()
                sync(device)
                times[name].append(time.perf_counter() - t)
    return times


def bench_one(
    bc: BenchConfig, rounds: int, per_round: int, peaks: dict, precision, device, compile_=False, ref_workers: int = 0
):
    data, source = load_images(bc, max(4 * bc.batch_size, 2048))
    torch.manual_seed(0)
    steps = {
        "sslvit": SslvitStep(bc, data, device, precision=precision.name),
        "reference": ReferenceStep(bc, data, device, ref_workers),
    }
    if compile_:
        steps["sslvit+compile"] = SslvitStep(bc, data, device, compile_=True, precision=precision.name)
    first = {}
    with precision.autocast():
        # both variants do the same matmul work (tests/engine/test_step_equivalence.py checks the counts)
        flops = {k: count_flops(s) for k, s in steps.items() if k != "sslvit+compile"}
        for k, s in steps.items():  # warm-up (compile happens here: its first two steps are timed)
            sync(device)
            t = time.perf_counter()
            s()
            s()
            sync(device)
            first[k] = time.perf_counter() - t
        times = interleaved(steps, rounds, per_round, device)
    med = {k: statistics.median(v) for k, v in times.items()}
    peak = peaks[precision.name]
    row = {
        "config": bc.label,
        "data": source,
        "dtype": precision.name,
        "device": str(device),
        "flops_per_step_sslvit": flops["sslvit"],
        "flops_per_step_reference": flops["reference"],
        "ms_sslvit": med["sslvit"] * 1e3,
        "ms_reference": med["reference"] * 1e3,
        "pairs_s_sslvit": bc.batch_size / med["sslvit"],
        "pairs_s_reference": bc.batch_size / med["reference"],
        "speedup": med["reference"] / med["sslvit"],
        "mfu_sslvit": flops["sslvit"] / med["sslvit"] / (peak * 1e9),
        "mfu_reference": flops["reference"] / med["reference"] / (peak * 1e9),
    }
    if compile_:
        row["ms_sslvit_compile"] = med["sslvit+compile"] * 1e3
        row["mfu_sslvit_compile"] = flops["sslvit"] / med["sslvit+compile"] / (peak * 1e9)
        row["speedup_compile"] = med["reference"] / med["sslvit+compile"]
        # compile time: the compiled variant's first two steps beyond two steady-state steps
        row["compile_s"] = max(0.0, first["sslvit+compile"] - 2 * med["sslvit+compile"])
    return row


# op name -> where the step's time goes (aten op names as torch.profiler reports them)
_CATEGORIES = [
    ("attention (SDPA kernels)", ("aten::_scaled_dot_product",)),
    ("GEMM", ("aten::addmm", "aten::mm", "aten::bmm", "aten::baddbmm")),
    ("GELU", ("aten::gelu",)),
    ("softmax", ("aten::_softmax",)),
    (
        "LayerNorm / BatchNorm",
        ("aten::native_layer_norm", "aten::native_batch_norm", "aten::_batch_norm", "aten::batch_norm"),
    ),
    ("optimizer", ("aten::_fused_adamw", "aten::_foreach_")),
    (
        "copies / layout",
        (
            "aten::copy_",
            "aten::clone",
            "aten::cat",
            "aten::_to_copy",
            "aten::contiguous",
            "aten::index",
            "aten::gather",
            "aten::stack",
        ),
    ),
]


def _category(op: str) -> str:
    for name, prefixes in _CATEGORIES:
        if op.startswith(prefixes):
            return name
    return "elementwise / reductions / other"


def profile_step(step, flops: float, peak_gflops: float, n: int = 6) -> dict:
    """Where one step's time goes (``torch.profiler``, self CPU time per op on the calling thread, ``n`` steps)
    and the MFU ceiling it implies: the MFU the step would reach if every GEMM ran at the measured peak
    and everything else kept its time."""
    from collections import defaultdict

    from torch.profiler import ProfilerActivity, profile

    step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        t0 = time.perf_counter()
        for _ in range(n):
            step()
        wall = (time.perf_counter() - t0) / n  # seconds per step, per-op profiler overhead included
    cats = defaultdict(float)
    for e in prof.key_averages():
        cats[_category(e.key)] += e.self_cpu_time_total / 1e6 / n  # seconds per step
    ops = sum(cats.values())
    cats["Python / gaps between ops"] = max(0.0, wall - ops)
    gemm_peak_s = min(cats["GEMM"], flops / (peak_gflops * 1e9))  # GEMMs at peak (never slower than now)
    ceiling = flops / ((wall - cats["GEMM"]) + gemm_peak_s) / (peak_gflops * 1e9)
    return {
        "wall_s": wall,
        "share": {k: v / wall for k, v in sorted(cats.items(), key=lambda kv: -kv[1])},
        "gemm_gflops": flops / cats["GEMM"] / 1e9 if cats["GEMM"] else 0.0,
        "mfu_ceiling": ceiling,
    }


def parse_models(spec: str):
    """``"192x12x3,384x12x6"`` -> [(width, depth, heads), ...]."""
    out = []
    for item in filter(None, (t.strip() for t in spec.split(","))):
        w, d, h = (int(v) for v in item.lower().split("x"))
        out.append((w, d, h))
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--quick",
        action="store_true",
        help="demo model only (recipes/fmnist_demo: vit_micro, 28 px, patch 7, B 256), < 60 s",
    )
    ap.add_argument("--widths", default="192,384")
    ap.add_argument(
        "--models",
        default="",
        help="WIDTHxDEPTHxHEADS list, e.g. 192x12x3,384x12x6,384x12x12 "
        "(replaces --widths / --depth; heads default width // 64)",
    )
    ap.add_argument("--no-demo", action="store_true", help="skip the demo (d64 L4) and vit_pico (d128 L6) rows")
    ap.add_argument("--img-sizes", default="28,32", help="28: Fashion-MNIST (grey), other sizes: RGB")
    ap.add_argument("--batches", default="128,256")
    ap.add_argument("--patch", type=int, default=4)
    ap.add_argument("--depth", type=int, default=6)
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--per-round", type=int, default=1)
    ap.add_argument("--threads", type=int, default=0, help="0: all cores")
    ap.add_argument(
        "--precision",
        default="auto",
        choices=("auto", "bf16", "fp32"),
        help="auto: bf16 where the device runs it fast (train.precision=auto)",
    )
    ap.add_argument("--device", default="cpu", help="cpu | cuda (both variants on that device)")
    ap.add_argument("--compile", action="store_true", help="also time sslvit with train.compile=true")
    ap.add_argument(
        "--ref-workers",
        type=int,
        default=0,
        help="DataLoader workers of the reference's per-sample augmentation (default 0: on a CPU they "
        "would take the cores being timed; on a GPU machine give it spare cores, e.g. 8)",
    )
    ap.add_argument(
        "--profile",
        action="store_true",
        help="also profile the first configuration's sslvit step: time per op category, GEMM "
        "GFLOP/s and the MFU ceiling if GEMMs ran at peak",
    )
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)

    from ssl_vit.core.precision import Precision, bf16_is_fast

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda: CUDA is not available here")
    if args.profile and device.type != "cpu":
        ap.error("--profile times CPU ops (torch.profiler, CPU activity); run it with --device cpu")
    precision = Precision.resolve(args.precision, device)
    peaks = {"fp32": matmul_peak(torch.float32, device=device), "bf16": matmul_peak(torch.bfloat16, device=device)}
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(
        f"device={where} threads={torch.get_num_threads()} dtype={precision.name} (bf16 fast here: "
        f"{bf16_is_fast(device)}) matmul peak: fp32 {peaks['fp32']:.0f} GFLOP/s, bf16 {peaks['bf16']:.1f} GFLOP/s",
        flush=True,
    )

    demo = BenchConfig(64, 4, 2, 28, 7, 1, 256, proj_hidden=512, pred_hidden=512)  # recipes/fmnist_demo
    pico = BenchConfig(128, 6, 4, 28, 7, 1, 256)  # vit_pico, the demo until 2026-11
    models = parse_models(args.models) or [(w, args.depth, w // 64) for w in map(int, args.widths.split(","))]
    if args.quick:
        configs, rounds = [demo], args.rounds or 4
    else:
        rounds = args.rounds or 3
        configs = ([] if args.no_demo else [demo, pico]) + [
            BenchConfig(w, d, h, s, args.patch, 1 if s == 28 else 3, b)
            for (w, d, h) in models
            for s in map(int, args.img_sizes.split(","))
            for b in map(int, args.batches.split(","))
        ]
    rows = []
    for bc in configs:
        row = bench_one(bc, rounds, args.per_round, peaks, precision, device, args.compile, args.ref_workers)
        rows.append(row)
        print(
            f"{row['config']:<32} sslvit {row['ms_sslvit']:7.0f} ms ({row['pairs_s_sslvit']:5.0f} pairs/s, "
            f"mfu {row['mfu_sslvit']:.2f})  reference {row['ms_reference']:7.0f} ms ({row['pairs_s_reference']:5.0f} "
            f"pairs/s, mfu {row['mfu_reference']:.2f})  speedup {row['speedup']:.2f}x  GFLOP/step "
            f"{row['flops_per_step_sslvit'] / 1e9:.1f} vs {row['flops_per_step_reference'] / 1e9:.1f}"
            + (
                f"  compiled {row['ms_sslvit_compile']:.0f} ms ({row['speedup_compile']:.2f}x, mfu "
                f"{row['mfu_sslvit_compile']:.2f}, compile ~{row['compile_s']:.0f} s)"
                if args.compile
                else ""
            ),
            flush=True,
        )
    comp = " | compiled speedup | MFU compiled | compile s" if args.compile else ""
    print(
        f"\n| config | device | dtype | sslvit pairs/s | reference pairs/s | speedup | MFU sslvit | "
        f"MFU reference{comp} |"
    )
    print("|---|---|---|---|---|---|---|---" + ("|---|---|---" if args.compile else "") + "|")
    for r in rows:
        extra = (
            f" | {r['speedup_compile']:.2f} | {r['mfu_sslvit_compile']:.2f} | {r['compile_s']:.0f}"
            if args.compile
            else ""
        )
        print(
            f"| {r['config']} | {where} | {r['dtype']} | {r['pairs_s_sslvit']:.0f} | {r['pairs_s_reference']:.0f} | "
            f"{r['speedup']:.2f} | {r['mfu_sslvit']:.2f} | {r['mfu_reference']:.2f}{extra} |"
        )
    if args.profile:
        bc = configs[0]
        data, _ = load_images(bc, max(4 * bc.batch_size, 2048))
        step = SslvitStep(bc, data, device, precision=precision.name)
        with precision.autocast():
            prof = profile_step(step, rows[0]["flops_per_step_sslvit"], peaks[precision.name])  # counted above
        print(f"\nprofile of the sslvit step, {bc.label}: {prof['wall_s'] * 1e3:.0f} ms/step under the profiler")
        print("| where | share of the step |\n|---|---|")
        for k, v in prof["share"].items():
            print(f"| {k} | {v * 100:.0f} % |")
        print(
            f"GEMMs run at {prof['gemm_gflops']:.0f} GFLOP/s (peak {peaks[precision.name]:.0f}); MFU ceiling with "
            f"every GEMM at peak and the rest unchanged: {prof['mfu_ceiling']:.2f}"
        )
        rows[0]["profile"] = prof
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "device": where,
                    "peaks_gflops": peaks,
                    "threads": torch.get_num_threads(),
                    "bf16_fast": bf16_is_fast(device),
                    "rows": rows,
                },
                indent=2,
            )
        )
    print(f"speedup={rows[0]['speedup']:.2f}")
    print(f"mfu={rows[0]['mfu_sslvit']:.2f}")


if __name__ == "__main__":
    main()
