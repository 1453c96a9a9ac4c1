"""Fashion-MNIST from IDX files (Debian's ``dataset-fashion-mnist``, torchvision's raw folder, or a download).

Search order: ``/usr/share/datasets/fashion-mnist`` (Debian), then ``data_dir`` (flat or torchvision's
``FashionMNIST/raw``), then ``torchvision.datasets.FashionMNIST(download=True)`` when downloads are allowed.
The IDX reader is written here because torchvision's (``read_sn3_pascalvincent_tensor``) reads only
uncompressed files and Debian ships them gzipped; it is 15 lines.
"""
from __future__ import annotations

import gzip
from pathlib import Path
from typing import Optional, Tuple

import numpy as np
import torch
import torchvision

from ssl_vit.errors import SslvitError

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
MEAN, STD = (0.2860,), (0.3530,)
_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
          "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (optionally .gz): magic = 0 0 <dtype> <ndim>, then ndim big-endian uint32 sizes."""
    opener = gzip.open if str(path).endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as e:
        raise SslvitError(f"cannot read IDX file '{path}': {e}; re-install or re-download it") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise SslvitError(f"'{path}' is not an IDX file (bad magic number); re-install or re-download it")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    arr = np.frombuffer(data, dtype=_IDX_DTYPES[data[2]], offset=4 + 4 * ndim)
    if arr.size != int(np.prod(shape)):
        raise SslvitError(f"'{path}' is truncated ({arr.size} values, header says {int(np.prod(shape))}); "
                          f"re-install or re-download it")
    return arr.reshape(shape)


def _find(name: str, dirs) -> Optional[Path]:
    for d in dirs:
        for cand in (d / name, d / (name + ".gz"), d / "FashionMNIST" / "raw" / name,
                     d / "FashionMNIST" / "raw" / (name + ".gz")):
            if cand.is_file():
                return cand
    return None


def load_fmnist(split: str, root: Optional[str] = None, data_dir: Optional[str] = None,
                download: bool = False) -> Tuple[torch.Tensor, torch.Tensor]:
    """Return ``images (N, 1, 28, 28) uint8`` and ``targets (N,) int64`` for split 'train' or 'test'."""
    if split not in _FILES:
        raise SslvitError(f"Fashion-MNIST has splits 'train' and 'test', not '{split}'")
    dirs = [Path(p) for p in (root, data_dir) if p] + [DEBIAN_DIR]
    img_name, lbl_name = _FILES[split]
    img_path, lbl_path = _find(img_name, dirs), _find(lbl_name, dirs)
    if img_path is None or lbl_path is None:
        if download:
            target = Path(data_dir or root or "data")
            try:
                ds = torchvision.datasets.FashionMNIST(str(target), train=split == "train", download=True)
            except Exception as e:  # noqa: BLE001 - network errors come in many types
                raise SslvitError(f"Fashion-MNIST download failed ({type(e).__name__}); install Debian's "
                                  f"'dataset-fashion-mnist' or pass --set data.data_dir=<dir with the IDX files>") from None
            return ds.data.unsqueeze(1).contiguous(), ds.targets.long()
        raise SslvitError("Fashion-MNIST not found in " + ", ".join(str(d) for d in dirs)
                          + "; run `apt-get install dataset-fashion-mnist`, pass --set data.data_dir=<dir>, "
                            "or allow a download with --set data.download=true")
    images = torch.from_numpy(read_idx(img_path).copy())
    targets = torch.from_numpy(read_idx(lbl_path).astype(np.int64))
    if images.ndim != 3 or images.shape[0] != targets.shape[0]:
        raise SslvitError(f"'{img_path}' and '{lbl_path}' do not match ({tuple(images.shape)} vs "
                          f"{tuple(targets.shape)}); re-install the data")
    return images.unsqueeze(1).contiguous(), targets
