"""torchrun semantics on CPU (gloo, 2 processes spawned here): 2 ranks x B/2 == 1 rank x B."""
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
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    from ssl_vit.engine.trainer import pretrain
    if mode == "plain":
        # rank 1 gets its own path: it must never create it (only rank 0 writes)
        pretrain(cfg, out if rank == 0 else f"{out}_rank{rank}", log=lambda m: None)
    elif mode == "stop":       # both ranks stop after step 1; rank 0 checkpoints
        pretrain(cfg, out, hooks=[StopAt(1)], log=lambda m: None)
    else:                      # every rank loads rank 0's checkpoint and finishes the run
        pretrain(cfg, out, resume=True, log=lambda m: None)
    torch.distributed.destroy_process_group()


@pytest.mark.parametrize("steps", [2])
def test_two_ranks_equal_one_rank(tiny_cfg, tmp_path, steps):
    cfg = apply_overrides(tiny_cfg, [f"train.max_steps={steps}", "train.batch_size=16", "eval.final_knn=false",
                                     "log.tensorboard=false", "optim.warmup_steps=0"])
    torch.set_num_threads(1)
    from ssl_vit.engine.trainer import pretrain
    pretrain(cfg, tmp_path / "single", log=lambda m: None)
    mp.spawn(_worker, args=(2, _free_port(), cfg, str(tmp_path / "ddp")), nprocs=2, join=True)
    torch.set_num_threads(2)
    a = torch.load(tmp_path / "single" / "checkpoints" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "ddp" / "checkpoints" / "last.pt", weights_only=True)
    assert b["world_size"] == 2 and a["step"] == b["step"] == steps
    diffs = torch.cat([(a["model"][k].float() - b["model"][k].float()).abs().flatten() for k in a["model"]
                       if a["model"][k].is_floating_point()])
    # Adam's first updates are ~lr * sign(g): elements whose gradient is ~0 (float noise) may move by up to
    # 2 * lr per step in either run. Everything else must agree to float precision.
    lr = cfg.optim.lr * cfg.train.batch_size / 256
    assert diffs.max().item() <= 2 * lr * steps + 1e-6, diffs.max().item()
    assert (diffs > 1e-5).float().mean().item() < 1e-3, (diffs > 1e-5).float().mean().item()
    assert not (tmp_path / "ddp_rank1").exists()
    assert (tmp_path / "ddp" / "config.yaml").read_text().startswith("# world_size: 2")
    la = [l for l in (tmp_path / "single" / "metrics.jsonl").read_text().splitlines()]
    lb = [l for l in (tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()]
    import json
    for x, y in zip(la, lb):
        assert abs(json.loads(x)["train/loss"] - json.loads(y)["train/loss"]) < 1e-5

    # resume under torchrun: stop both ranks after step 1, resume on 2 ranks, same result as uninterrupted
    mp.spawn(_worker, args=(2, _free_port(), cfg, str(tmp_path / "ddp_cut"), "stop"), nprocs=2, join=True)
    assert torch.load(tmp_path / "ddp_cut" / "checkpoints" / "last.pt", weights_only=True)["step"] == 1
    mp.spawn(_worker, args=(2, _free_port(), cfg, str(tmp_path / "ddp_cut"), "resume"), nprocs=2, join=True)
    torch.set_num_threads(2)
    c = torch.load(tmp_path / "ddp_cut" / "checkpoints" / "last.pt", weights_only=True)
    assert c["step"] == steps
    assert all(torch.equal(b["model"][k], c["model"][k]) for k in b["model"]), "resumed DDP run differs"
