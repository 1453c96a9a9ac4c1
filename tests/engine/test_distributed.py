"""torchrun semantics on CPU (gloo, 2 processes spawned here): 2 ranks x B/2 == 1 rank x B."""

import json
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from ssl_vit.config import apply_overrides
from tests.conftest import StopAt


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank, world, port, cfg, out, mode="plain"):
    os.environ.update(
        RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
    )
    torch.set_num_threads(1)
    from ssl_vit.runs import pretrain

    if mode == "plain":
        # rank 1 gets its own path: it must never create it (only rank 0 writes)
        pretrain(cfg, out if rank == 0 else f"{out}_rank{rank}", log=lambda m: None)
    elif mode == "stop":  # both ranks stop after step 1; rank 0 checkpoints
        pretrain(cfg, out, hooks=[StopAt(1)], log=lambda m: None)
    else:  # every rank loads rank 0's checkpoint and finishes the run
        pretrain(cfg, out, resume=True, log=lambda m: None)
    torch.distributed.destroy_process_group()


def _named_params(cfg):
    """The trainable and frozen parameters' state-dict names of the method module (not its buffers)."""
    from ssl_vit.engine.trainer import build_model

    return build_model(cfg, torch.device("cpu")).named_parameters(remove_duplicate=False)


@pytest.mark.parametrize("precision", ["fp32", pytest.param("bf16", marks=pytest.mark.bf16)])
def test_two_ranks_equal_one_rank(tiny_cfg, tmp_path, precision, steps=2):
    cfg = apply_overrides(
        tiny_cfg,
        [
            f"train.max_steps={steps}",
            "train.batch_size=16",
            "eval.final_knn=false",
            "log.tensorboard=false",
            "optim.warmup_steps=0",
            f"train.precision={precision}",
        ],
    )
    torch.set_num_threads(1)
    from ssl_vit.runs import pretrain

    pretrain(cfg, tmp_path / "single", log=lambda m: None)
    mp.spawn(_worker, args=(2, _free_port(), cfg, str(tmp_path / "ddp")), nprocs=2, join=True)
    torch.set_num_threads(2)
    a = torch.load(tmp_path / "single" / "checkpoints" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "ddp" / "checkpoints" / "last.pt", weights_only=True)
    assert b["world_size"] == 2 and a["step"] == b["step"] == steps
    # Adam's first updates are ~lr * sign(g): elements whose gradient is ~0 (float noise) may move by up to
    # 2 * lr per step in either run, in any precision.
    lr = cfg.optim.lr * cfg.train.batch_size / 256
    params = {n for n, _ in _named_params(cfg)}
    pd = torch.cat([(a["model"][k] - b["model"][k]).abs().flatten() for k in a["model"] if k in params])
    assert pd.max().item() <= 2 * lr * steps + 1e-6, pd.max().item()
    # buffers (BatchNorm running statistics of the heads, O(1) or below): the same statistics up to rounding
    # (bf16: 8 mantissa bits, 2^-8 relative, on the activations they average)
    bufs = [k for k in a["model"] if k not in params and a["model"][k].is_floating_point()]
    assert bufs
    for k in bufs:
        d = (a["model"][k] - b["model"][k]).abs().max().item()
        assert d <= (1e-4 if precision == "fp32" else 2**-7) * max(1.0, a["model"][k].abs().max().item()), (k, d)
    if precision == "fp32":  # everything but the near-zero-gradient elements agrees to float precision
        assert (pd > 1e-5).float().mean().item() < 1e-3, (pd > 1e-5).float().mean().item()
    assert not (tmp_path / "ddp_rank1").exists()
    assert (tmp_path / "ddp" / "config.yaml").read_text().startswith("# world_size: 2")
    la = [l for l in (tmp_path / "single" / "metrics.jsonl").read_text().splitlines()]
    lb = [l for l in (tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()]
    assert len(la) == len(lb) == steps
    for x, y in zip(la, lb):
        x, y = json.loads(x)["train/loss"], json.loads(y)["train/loss"]
        assert abs(x - y) < (1e-5 if precision == "fp32" else 1e-2 * abs(x)), (x, y)

    # resume under torchrun: stop both ranks after step 1, resume on 2 ranks, same result as uninterrupted
    mp.spawn(_worker, args=(2, _free_port(), cfg, str(tmp_path / "ddp_cut"), "stop"), nprocs=2, join=True)
    assert torch.load(tmp_path / "ddp_cut" / "checkpoints" / "last.pt", weights_only=True)["step"] == 1
    mp.spawn(_worker, args=(2, _free_port(), cfg, str(tmp_path / "ddp_cut"), "resume"), nprocs=2, join=True)
    torch.set_num_threads(2)
    c = torch.load(tmp_path / "ddp_cut" / "checkpoints" / "last.pt", weights_only=True)
    assert c["step"] == steps
    assert all(torch.equal(b["model"][k], c["model"][k]) for k in b["model"]), "resumed DDP run differs"
