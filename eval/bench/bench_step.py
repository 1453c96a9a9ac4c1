"""One MoCo v3 pretraining step: sslvit against what a user writes with lightly + timm, side by side.

* **reference** (:class:`ReferenceMoCoV3` + :class:`ReferenceTwoViews`, written here the way the lightly
  and timm docs teach): timm ``VisionTransformer`` (its default attention, i.e. PyTorch SDPA) with a
  frozen patch projection, lightly ``MoCoProjectionHead`` MLPs (3 layers / 2 layers, BN), lightly
  ``update_momentum``, one backbone forward per view, keys from the momentum encoder with ``.detach()``,
  the 2*tau InfoNCE of MoCo v3, ``torch.optim.AdamW`` with its defaults, and per-sample torchvision v2
  augmentation in a ``DataLoader`` (``num_workers=0``: workers would steal the cores the other
  variant is being timed on).
* **sslvit**: the trainer's own pieces -- ``build_model`` (backbone + ``MoCoV3``) + ``make_optimizer`` +
  the batched tensor two-view stream -- one backbone forward for both views, the momentum branch under
  ``no_grad``, ``fused_attn=auto`` (timm's plain attention below 32 tokens on CPU, SDPA above), fused
  AdamW, batched augmentation.

Both variants compute the same function (``tests/engine/test_step_equivalence.py`` checks loss and
gradients on one batch); ``FlopCounterMode`` counts each step's matmul FLOPs and the two counts are
printed side by side. Timings are interleaved (A B A B ...) and the median per step is kept, since the
machine's cores are shared and single timings drift. The step time includes producing the batch.

MFU = counted FLOPs / median step time / matmul peak of the dtype the step runs in, the peak measured
in the same run (2048^3 GEMM, median of 3). ``train.precision=auto`` runs bf16 only where the hardware
has it; the reference uses the same dtype so the comparison is like for like.

Usage::

    .venv/bin/python eval/bench/bench_step.py --quick            # demo model, < 60 s
    .venv/bin/python eval/bench/bench_step.py                    # widths 192/384, 28/32 px, B 128/256
    .venv/bin/python eval/bench/bench_step.py --json out.json    # also write the table as JSON
    .venv/bin/python eval/bench/bench_step.py --quick --profile  # + where the step's time goes, MFU ceiling

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
    def build(cls, img_size, patch_size, in_chans, embed_dim, depth, num_heads, proj_hidden, pred_hidden,
              out_dim=256, temperature=0.2):
        import timm
        from lightly.models.modules.heads import MoCoProjectionHead
        vit = timm.models.VisionTransformer(img_size=img_size, patch_size=patch_size, in_chans=in_chans,
                                            embed_dim=embed_dim, depth=depth, num_heads=num_heads,
                                            num_classes=0, global_pool="token")
        vit.patch_embed.requires_grad_(False)                     # MoCo v3 random patch projection
        proj = MoCoProjectionHead(embed_dim, proj_hidden, out_dim, num_layers=3, batch_norm=True)
        pred = MoCoProjectionHead(out_dim, pred_hidden, out_dim, num_layers=2, batch_norm=True)
        return cls(vit, proj, pred, temperature)

    def loss_fn(self, q, k):
        q, k = F.normalize(q, dim=1), F.normalize(k, dim=1)
        logits = q @ k.t() / self.temperature                      # (B, B)
        return F.cross_entropy(logits, torch.arange(len(q))) * 2 * self.temperature

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
        self.images = images                                       # (N, C, H, W) uint8
        C, S = images.shape[1], images.shape[-1]

        def view(blur_p, sol_p):
            ops = [v2.RandomResizedCrop(S, scale=tuple(aug.crop_scale), antialias=True),
                   v2.RandomHorizontalFlip(),
                   v2.RandomApply([v2.ColorJitter(aug.brightness, aug.contrast,
                                                  aug.saturation if C == 3 else 0, aug.hue if C == 3 else 0)],
                                  p=aug.jitter_prob)]
            if C == 3:
                ops.append(v2.RandomGrayscale(aug.grayscale_prob))
            k = 2 * max(1, round(3 * 2.0 * S / 224)) + 1
            ops += [v2.RandomApply([v2.GaussianBlur(k, sigma=(0.1 * S / 224, 2.0 * S / 224))], p=blur_p),
                    v2.RandomSolarize(128, sol_p), v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)]
            return v2.Compose(ops)
        self.t1, self.t2 = view(aug.blur_prob[0], aug.solarize_prob[0]), view(aug.blur_prob[1], aug.solarize_prob[1])

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        img = self.images[i]
        return self.t1(img), self.t2(img)


def reference_batches(images, aug, mean, std, batch_size, seed=0):
    g = torch.Generator().manual_seed(seed)
    loader = torch.utils.data.DataLoader(ReferenceTwoViews(images, aug, mean, std), batch_size=batch_size,
                                         shuffle=True, drop_last=True, num_workers=0, generator=g)
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
        return (f"d{self.embed_dim} L{self.depth} h{self.num_heads} {self.img_size}px/p{self.patch_size} "
                f"B{self.batch_size}")


def sslvit_config(bc: BenchConfig, compile_: bool = False):
    from ssl_vit.config.loading import apply_overrides
    from ssl_vit.config.schema import Config
    sets = ["model.name=vit_pico", f"model.embed_dim={bc.embed_dim}", f"model.depth={bc.depth}",
            f"model.num_heads={bc.num_heads}", f"model.img_size={bc.img_size}", f"model.patch_size={bc.patch_size}",
            f"model.in_chans={bc.in_chans}", f"train.batch_size={bc.batch_size}",
            f"method.proj_hidden_dim={bc.proj_hidden}", f"method.pred_hidden_dim={bc.pred_hidden}",
            "aug.crop_scale=[0.25,1.0]", f"train.compile={str(compile_).lower()}"]
    return apply_overrides(Config(), sets)


def load_images(bc: BenchConfig, n: int):
    """Fashion-MNIST for 28 px grey configurations when it is installed; random uint8 images otherwise."""
    from ssl_vit.data.images import TensorImages
    if bc.img_size == 28 and bc.in_chans == 1:
        try:
            from ssl_vit.data.specs import load_dataset
            d = load_dataset("fmnist", "train")
            return d.subset(torch.arange(min(n, len(d)))), "fmnist"
        except Exception:   # noqa: BLE001 -- a benchmark falls back to synthetic data
            pass
    g = torch.Generator().manual_seed(0)
    imgs = torch.randint(0, 256, (n, bc.in_chans, bc.img_size, bc.img_size), dtype=torch.uint8, generator=g)
    return TensorImages(imgs, torch.zeros(n, dtype=torch.long), [], "synthetic", (0.5,) * bc.in_chans,
                        (0.25,) * bc.in_chans), "synthetic"


class SslvitStep:
    def __init__(self, bc: BenchConfig, data, device, compile_=False):
        from ssl_vit.data.streams import BatchOrder, two_view_stream
        from ssl_vit.engine.trainer import build_model, make_optimizer, _data_config
        self.cfg = cfg = sslvit_config(bc, compile_)
        dc = _data_config(cfg, data)
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
    def __init__(self, bc: BenchConfig, data, device):
        from ssl_vit.config.schema import AugConfig
        aug = AugConfig(crop_scale=(0.25, 1.0))
        self.model = ReferenceMoCoV3.build(bc.img_size, bc.patch_size, bc.in_chans, bc.embed_dim, bc.depth,
                                           bc.num_heads, bc.proj_hidden, bc.pred_hidden).to(device)
        self.batches = reference_batches(data.images, aug, list(data.mean), list(data.std), bc.batch_size)
        self.opt = torch.optim.AdamW([p for p in self.model.parameters() if p.requires_grad], lr=1e-3,
                                     weight_decay=0.1)

    def __call__(self):
        x1, x2 = next(self.batches)
        loss = self.model(x1, x2, 0.99)
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        return loss


# ============================================================================ measurements
def matmul_peak(dtype, n: int = 2048, repeats: int = 3) -> float:
    """GFLOP/s of an n^3 GEMM (median of ``repeats``); a slow dtype is measured on a smaller GEMM."""
    a, b = torch.randn(512, 512, dtype=dtype), torch.randn(512, 512, dtype=dtype)
    t = time.perf_counter(); a @ b; small = time.perf_counter() - t
    if small > 0.2:   # emulated dtype (e.g. bf16 without hardware support): 2048^3 would take minutes
        n = 512
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    times = []
    for _ in range(repeats):
        t = time.perf_counter(); a @ b; times.append(time.perf_counter() - t)
    return 2 * n ** 3 / statistics.median(times) / 1e9


def count_flops(step) -> int:
    """Matmul FLOPs of one step (forward, backward, momentum branch). FlopCounterMode does not see PyTorch's
    CPU SDPA kernels, so attention is counted on timm's plain path (the same math) and then restored."""
    from ssl_vit.evaluation.features import fused_attention
    with fused_attention(step.model, enabled=False), FlopCounterMode(display=False) as fc:
        step()
    return fc.get_total_flops()


def interleaved(steps: dict, rounds: int, per_round: int) -> dict:
    """{name: [seconds per step, ...]}: A B A B ..., order flipped every round."""
    times = {k: [] for k in steps}
    names = list(steps)
    for r in range(rounds):
        for name in (names if r % 2 == 0 else names[::-1]):
            for _ in range(per_round):
                t = time.perf_counter()
                steps[name]()
                times[name].append(time.perf_counter() - t)
    return times


def bench_one(bc: BenchConfig, rounds: int, per_round: int, peaks: dict, precision, device, compile_=False):
    data, source = load_images(bc, max(4 * bc.batch_size, 2048))
    torch.manual_seed(0)
    steps = {"sslvit": SslvitStep(bc, data, device), "reference": ReferenceStep(bc, data, device)}
    if compile_:
        steps["sslvit+compile"] = SslvitStep(bc, data, device, compile_=True)
    with precision.autocast():
        # both variants do the same matmul work (tests/engine/test_step_equivalence.py checks the counts)
        flops = {k: count_flops(s) for k, s in steps.items() if k != "sslvit+compile"}
        for s in steps.values():          # warm-up (compile happens here)
            s()
        times = interleaved(steps, rounds, per_round)
    med = {k: statistics.median(v) for k, v in times.items()}
    peak = peaks[precision.name]
    row = {"config": bc.label, "data": source, "dtype": precision.name,
           "flops_per_step_sslvit": flops["sslvit"], "flops_per_step_reference": flops["reference"],
           "ms_sslvit": med["sslvit"] * 1e3, "ms_reference": med["reference"] * 1e3,
           "pairs_s_sslvit": bc.batch_size / med["sslvit"], "pairs_s_reference": bc.batch_size / med["reference"],
           "speedup": med["reference"] / med["sslvit"],
           "mfu_sslvit": flops["sslvit"] / med["sslvit"] / (peak * 1e9),
           "mfu_reference": flops["reference"] / med["reference"] / (peak * 1e9)}
    if compile_:
        row["ms_sslvit_compile"] = med["sslvit+compile"] * 1e3
        row["mfu_sslvit_compile"] = flops["sslvit"] / med["sslvit+compile"] / (peak * 1e9)
    return row


# op name -> where the step's time goes (aten op names as torch.profiler reports them)
_CATEGORIES = [
    ("GEMM", ("aten::addmm", "aten::mm", "aten::bmm", "aten::baddbmm", "aten::_scaled_dot_product")),
    ("softmax", ("aten::_softmax",)),
    ("LayerNorm / BatchNorm", ("aten::native_layer_norm", "aten::native_batch_norm", "aten::_batch_norm",
                               "aten::batch_norm")),
    ("optimizer", ("aten::_fused_adamw", "aten::_foreach_")),
    ("copies / layout", ("aten::copy_", "aten::clone", "aten::cat", "aten::_to_copy", "aten::contiguous",
                         "aten::index", "aten::gather", "aten::stack")),
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
        wall = (time.perf_counter() - t0) / n                 # seconds per step, per-op profiler overhead included
    cats = defaultdict(float)
    for e in prof.key_averages():
        cats[_category(e.key)] += e.self_cpu_time_total / 1e6 / n      # seconds per step
    ops = sum(cats.values())
    cats["Python / gaps between ops"] = max(0.0, wall - ops)
    gemm_peak_s = min(cats["GEMM"], flops / (peak_gflops * 1e9))       # GEMMs at peak (never slower than now)
    ceiling = flops / ((wall - cats["GEMM"]) + gemm_peak_s) / (peak_gflops * 1e9)
    return {"wall_s": wall, "share": {k: v / wall for k, v in sorted(cats.items(), key=lambda kv: -kv[1])},
            "gemm_gflops": flops / cats["GEMM"] / 1e9 if cats["GEMM"] else 0.0, "mfu_ceiling": ceiling}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="demo model only (recipes/fmnist_vit_tiny: vit_micro, 28 px, patch 7, B 256), < 60 s")
    ap.add_argument("--widths", default="192,384")
    ap.add_argument("--img-sizes", default="28,32", help="28: Fashion-MNIST (grey), 32: RGB")
    ap.add_argument("--batches", default="128,256")
    ap.add_argument("--patch", type=int, default=4)
    ap.add_argument("--depth", type=int, default=6)
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--per-round", type=int, default=1)
    ap.add_argument("--threads", type=int, default=0, help="0: all cores")
    ap.add_argument("--compile", action="store_true", help="also time sslvit with train.compile=true")
    ap.add_argument("--profile", action="store_true",
                    help="also profile the first configuration's sslvit step: time per op category, GEMM "
                         "GFLOP/s and the MFU ceiling if GEMMs ran at peak")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)

    from ssl_vit.engine.precision import Precision
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    precision = Precision.resolve("auto", device)
    peaks = {"fp32": matmul_peak(torch.float32), "bf16": matmul_peak(torch.bfloat16)}
    print(f"threads={torch.get_num_threads()} dtype={precision.name} matmul peak: fp32 {peaks['fp32']:.0f} "
          f"GFLOP/s, bf16 {peaks['bf16']:.1f} GFLOP/s", flush=True)

    demo = BenchConfig(64, 4, 2, 28, 7, 1, 256, proj_hidden=512, pred_hidden=512)     # recipes/fmnist_vit_tiny
    pico = BenchConfig(128, 6, 4, 28, 7, 1, 256)                                       # vit_pico, the demo until 2026-11
    if args.quick:
        configs, rounds = [demo], args.rounds or 4
    else:
        rounds = args.rounds or 3
        configs = [demo, pico] + [BenchConfig(w, args.depth, w // 64, s, args.patch, 1 if s == 28 else 3, b)
                            for w in map(int, args.widths.split(",")) for s in map(int, args.img_sizes.split(","))
                            for b in map(int, args.batches.split(","))]
    rows = []
    for bc in configs:
        row = bench_one(bc, rounds, args.per_round, peaks, precision, device, args.compile)
        rows.append(row)
        print(f"{row['config']:<32} sslvit {row['ms_sslvit']:7.0f} ms ({row['pairs_s_sslvit']:5.0f} pairs/s, "
              f"mfu {row['mfu_sslvit']:.2f})  reference {row['ms_reference']:7.0f} ms ({row['pairs_s_reference']:5.0f} "
              f"pairs/s, mfu {row['mfu_reference']:.2f})  speedup {row['speedup']:.2f}x  GFLOP/step "
              f"{row['flops_per_step_sslvit'] / 1e9:.1f} vs {row['flops_per_step_reference'] / 1e9:.1f}"
              + (f"  compiled {row['ms_sslvit_compile']:.0f} ms" if args.compile else ""), flush=True)
    print("\n| config | dtype | sslvit pairs/s | reference pairs/s | speedup | MFU sslvit | MFU reference |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['config']} | {r['dtype']} | {r['pairs_s_sslvit']:.0f} | {r['pairs_s_reference']:.0f} | "
              f"{r['speedup']:.2f} | {r['mfu_sslvit']:.2f} | {r['mfu_reference']:.2f} |")
    if args.profile:
        bc = configs[0]
        data, _ = load_images(bc, max(4 * bc.batch_size, 2048))
        step = SslvitStep(bc, data, device)
        with precision.autocast():
            prof = profile_step(step, rows[0]["flops_per_step_sslvit"], peaks[precision.name])   # counted above
        print(f"\nprofile of the sslvit step, {bc.label}: {prof['wall_s'] * 1e3:.0f} ms/step under the profiler")
        print("| where | share of the step |\n|---|---|")
        for k, v in prof["share"].items():
            print(f"| {k} | {v * 100:.0f} % |")
        print(f"GEMMs run at {prof['gemm_gflops']:.0f} GFLOP/s (peak {peaks[precision.name]:.0f}); MFU ceiling with "
              f"every GEMM at peak and the rest unchanged: {prof['mfu_ceiling']:.2f}")
        rows[0]["profile"] = prof
    if args.json:
        args.json.write_text(json.dumps({"peaks_gflops": peaks, "threads": torch.get_num_threads(), "rows": rows},
                                        indent=2))
    print(f"speedup={rows[0]['speedup']:.2f}")
    print(f"mfu={rows[0]['mfu_sslvit']:.2f}")


if __name__ == "__main__":
    main()
