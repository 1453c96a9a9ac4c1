"""SDPA against timm's plain attention, per token count, dtype and pass: the measurements behind
``ssl_vit/core/attention.py`` (what ``model.fused_attn=auto`` picks for the trained backbone and for the
no-grad momentum backbone).

One timm ``Attention`` block (qkv projection, heads, output projection; head dim 64), input ``(B, N, D)``,
under ``torch.autocast`` for bf16. Two passes:

* ``train``: forward + backward (the trained backbone);
* ``no_grad``: forward under ``torch.no_grad`` (the momentum backbone; feature extraction).

Both paths are timed interleaved (A B A B ...), median of ``--repeats``; the batch shrinks as N grows so
every row does about the same work. Prints one row per (dtype, heads, N, pass) with ``plain / sdpa`` time
(> 1: SDPA faster).

Usage::

    .venv/bin/python eval/bench/bench_attention.py --threads 1                     # ~2-4 min on 1 core
    .venv/bin/python eval/bench/bench_attention.py --tokens 17,65 --heads 3 --dtypes bf16
    .venv/bin/python eval/bench/bench_attention.py --device cuda --dtypes bf16     # on a GPU
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_pass(block, x, dtype, grad: bool, device) -> float:
    """Seconds for one pass of ``block`` on ``x``."""
    ctx = torch.autocast(device.type, dtype=dtype) if dtype is not None else torch.autocast(device.type, enabled=False)
    _sync(device)
    t = time.perf_counter()
    with ctx:
        if grad:
            block(x).float().sum().backward()
        else:
            with torch.no_grad():
                block(x)
    _sync(device)
    return time.perf_counter() - t


def measure(dim: int, heads: int, tokens: int, batch: int, dtype, grad: bool, repeats: int, device) -> dict:
    from timm.models.vision_transformer import Attention

    torch.manual_seed(0)
    block = Attention(dim, num_heads=heads, qkv_bias=True).to(device)
    x = torch.randn(batch, tokens, dim, device=device, requires_grad=grad)
    times = {"plain": [], "sdpa": []}
    for r in range(repeats + 1):  # the first round warms up both paths
        for name in ("plain", "sdpa") if r % 2 == 0 else ("sdpa", "plain"):
            block.fused_attn = name == "sdpa"
            block.zero_grad(set_to_none=True)
            x.grad = None
            t = time_pass(block, x, dtype, grad, device)
            if r:
                times[name].append(t)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"ms_plain": med["plain"] * 1e3, "ms_sdpa": med["sdpa"] * 1e3, "plain_over_sdpa": med["plain"] / med["sdpa"]}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tokens", default="17,33,50,65,101,197,257")
    ap.add_argument("--heads", default="3,6,12", help="head dim 64: width = 64 x heads")
    ap.add_argument("--dtypes", default="bf16,fp32")
    ap.add_argument("--rows", type=int, default=16640, help="B x N per call (B = rows // N)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0, help="0: all cores")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    rows = []
    print(f"device={device} threads={torch.get_num_threads()}  ratio = plain / sdpa (> 1: SDPA faster)", flush=True)
    print(
        "| dtype | heads | tokens | batch | pass | plain ms | sdpa ms | plain / sdpa |\n"
        "|---|---|---|---|---|---|---|---|"
    )
    for dt in args.dtypes.split(","):
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}[dt]
        for h in map(int, args.heads.split(",")):
            for n in map(int, args.tokens.split(",")):
                b = max(1, args.rows // n)
                for grad in (True, False):
                    r = measure(64 * h, h, n, b, dtype, grad, args.repeats, device)
                    r.update(dtype=dt, heads=h, tokens=n, batch=b, pass_="train" if grad else "no_grad")
                    rows.append(r)
                    print(
                        f"| {dt} | {h} | {n} | {b} | {r['pass_']} | {r['ms_plain']:.1f} | {r['ms_sdpa']:.1f} | "
                        f"{r['plain_over_sdpa']:.2f} |",
                        flush=True,
                    )
    if args.json:
        args.json.write_text(
            json.dumps({"device": str(device), "threads": torch.get_num_threads(), "rows": rows}, indent=2) + "\n"
        )


if __name__ == "__main__":
    sys.exit(main())
