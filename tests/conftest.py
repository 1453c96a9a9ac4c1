"""Shared fixtures: tiny generated datasets in their real on-disk formats, and a tiny config."""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

import ssl_vit.methods  # noqa: F401  registers the name checks of data/, models/, methods/ (config.validate)
from ssl_vit.core.precision import AUTO_ENV, auto_precision, bf16_is_fast
from ssl_vit.engine.hooks import Action, Hook

os.environ.setdefault("TQDM_DISABLE", "1")
torch.set_num_threads(
    int(os.environ.get("SSLVIT_TEST_THREADS", "2"))
)  # 1 on a busy machine (see ssl_vit/engine/cpu.py)


def pytest_addoption(parser):
    parser.addoption(
        "--auto-precision",
        choices=("bf16", "fp32"),
        default=None,
        help="run the suite as if train.precision=auto resolved to this on this machine "
        "(sets $SSLVIT_AUTO_PRECISION, inherited by the CLI subprocesses)",
    )


def pytest_configure(config):
    forced = config.getoption("--auto-precision")
    if forced:
        os.environ[AUTO_ENV] = forced


def pytest_collection_modifyitems(config, items):
    """``@pytest.mark.cuda`` tests are skipped where no CUDA device is visible."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (run eval/bench/gpu_check.sh on a GPU machine)")
    for item in items:
        if item.get_closest_marker("cuda") is not None:
            item.add_marker(skip)


def pytest_report_header(config):
    how = (
        "forced by $SSLVIT_AUTO_PRECISION"
        if os.environ.get(AUTO_ENV)
        else ("bf16 in hardware" if bf16_is_fast(torch.device("cpu")) else "no bf16 in hardware")
    )
    return f"sslvit: train.precision=auto -> {auto_precision(torch.device('cpu'))} ({how})"


def write_idx(path: Path, arr: np.ndarray) -> None:
    """Write an IDX file (gzipped when the name ends in .gz): magic 0 0 0x08 ndim, big-endian sizes."""
    header = bytes([0, 0, 0x08, arr.ndim]) + b"".join(struct.pack(">I", s) for s in arr.shape)
    data = header + arr.astype(np.uint8).tobytes()
    (gzip.open if str(path).endswith(".gz") else open)(path, "wb").write(data)


def make_fmnist(root: Path, n_train: int = 512, n_test: int = 128, seed: int = 0) -> Path:
    """A small Fashion-MNIST-format folder whose classes are learnable (class-dependent blobs)."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        imgs = rng.integers(0, 60, (n, 28, 28)).astype(np.uint8)
        for i, c in enumerate(labels):  # a bright bar whose position encodes the class
            r = 2 + 2 * int(c)
            imgs[i, r : r + 3, 4:24] = 220
        write_idx(root / f"{split}-images-idx3-ubyte.gz", imgs)
        write_idx(root / f"{split}-labels-idx1-ubyte.gz", labels)
    return root


@pytest.fixture(scope="session")
def fmnist_dir(tmp_path_factory) -> Path:
    return make_fmnist(tmp_path_factory.mktemp("fmnist"))


@pytest.fixture()
def tiny_overrides(fmnist_dir):
    """--set overrides turning the smoke recipe into a seconds-long run on generated data."""
    return [
        f"data.dataset=fmnist:{fmnist_dir}",
        "train.max_steps=6",
        "train.batch_size=32",
        "train.checkpoint_every=3",
        "log.every=1",
        "log.progress=false",
        "eval.max_train=256",
        "eval.max_test=64",
        "log.tensorboard=true",
    ]


@pytest.fixture()
def tiny_cfg(tiny_overrides):
    from ssl_vit.config import load_config

    return load_config("smoke", tiny_overrides)


class StopAt(Hook):
    """Test hook: ask the loop to checkpoint and stop once ``k`` steps are done (as a preemption would)."""

    name = "stop_at"

    def __init__(self, k):
        self.k = k

    def after_step(self, run, step):
        return Action.STOP if run.step == self.k else Action.CONTINUE
