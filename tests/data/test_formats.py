"""Real on-disk formats, generated small: Fashion-MNIST IDX, CIFAR pickles, STL-10 binary, ImageFolder."""
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from ssl_vit.config import DataConfig
from ssl_vit.data import FileImages, TensorImages, load_dataset, parse_spec
from ssl_vit.data.fmnist import DEBIAN_DIR, read_idx
from ssl_vit.errors import SslvitError
from tests.conftest import write_idx


def test_idx_reader_roundtrip_and_truncation(tmp_path):
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "a-idx3-ubyte.gz", arr)
    assert (read_idx(tmp_path / "a-idx3-ubyte.gz") == arr).all()
    raw = tmp_path / "b-idx3-ubyte"
    write_idx(raw, arr)
    raw.write_bytes(raw.read_bytes()[:-5])
    with pytest.raises(SslvitError, match="truncated"):
        read_idx(raw)


def test_fmnist_from_generated_dir(fmnist_dir):
    ds = load_dataset(f"fmnist:{fmnist_dir}", "train")
    assert isinstance(ds, TensorImages) and ds.images.shape == (512, 1, 28, 28) and ds.images.dtype == torch.uint8
    assert len(load_dataset(f"fmnist:{fmnist_dir}", "test")) == 128


@pytest.mark.skipif(not (DEBIAN_DIR / "train-images-idx3-ubyte.gz").exists(),
                    reason="Debian's dataset-fashion-mnist is not installed (make test installs it)")
def test_fmnist_debian_package():
    ds = load_dataset("fmnist", "test")
    assert ds.images.shape == (10000, 1, 28, 28) and int(ds.targets.max()) == 9


def test_fmnist_missing_is_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr("ssl_vit.data.fmnist.DEBIAN_DIR", tmp_path / "nope")
    with pytest.raises(SslvitError, match="apt-get install dataset-fashion-mnist"):
        load_dataset("fmnist", "train", DataConfig(data_dir=str(tmp_path)))


def _write_cifar10(root, n=20):
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {"data": rng.integers(0, 255, (n, 3072), dtype=np.uint8), "labels": rng.integers(0, 10, n).tolist()}
        pickle.dump(batch, open(d / name, "wb"))
    pickle.dump({"label_names": [f"c{i}" for i in range(10)]}, open(d / "batches.meta", "wb"))


def _write_cifar100(root, n=20):
    d = root / "cifar-100-python"
    d.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in ("train", "test"):
        pickle.dump({"data": rng.integers(0, 255, (n, 3072), dtype=np.uint8),
                     "fine_labels": rng.integers(0, 100, n).tolist()}, open(d / name, "wb"))
    pickle.dump({"fine_label_names": [f"c{i}" for i in range(100)]}, open(d / "meta", "wb"))


def test_cifar10_and_100_pickle_layout(tmp_path):
    _write_cifar10(tmp_path / "c10")
    ds = load_dataset(f"cifar10:{tmp_path / 'c10'}", "train")
    assert ds.images.shape == (100, 3, 32, 32) and len(ds.classes) == 10
    assert load_dataset(f"cifar10:{tmp_path / 'c10'}", "test").images.shape[0] == 20
    _write_cifar100(tmp_path / "c100")
    ds = load_dataset(f"cifar100:{tmp_path / 'c100'}", "test")
    assert ds.images.shape == (20, 3, 32, 32) and len(ds.classes) == 100


def test_cifar_missing_and_corrupt(tmp_path):
    with pytest.raises(SslvitError, match="does not exist"):
        load_dataset(f"cifar10:{tmp_path / 'none'}", "train")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SslvitError, match="not found or incomplete"):
        load_dataset(f"cifar10:{tmp_path / 'empty'}", "train")
    _write_cifar10(tmp_path / "bad")
    (tmp_path / "bad" / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"garbage")
    with pytest.raises(SslvitError, match="corrupt"):
        load_dataset(f"cifar10:{tmp_path / 'bad'}", "train")


def test_stl10_binary_layout_incl_unlabeled(tmp_path):
    d = tmp_path / "stl10_binary"
    d.mkdir()
    rng = np.random.default_rng(0)
    for name, n in (("train", 6), ("test", 4), ("unlabeled", 5)):
        rng.integers(0, 255, (n, 3, 96, 96), dtype=np.uint8).tofile(d / f"{name}_X.bin")
        if name != "unlabeled":
            rng.integers(1, 11, n, dtype=np.uint8).tofile(d / f"{name}_y.bin")
    (d / "class_names.txt").write_text("\n".join(f"c{i}" for i in range(10)))
    ds = load_dataset(f"stl10:{tmp_path}", "train+unlabeled")
    assert ds.images.shape == (11, 3, 96, 96)
    assert (ds.targets[6:] == -1).all() and (ds.targets[:6] >= 0).all()
    assert len(load_dataset(f"stl10:{tmp_path}", "test")) == 4


def _imagefolder(root, bad=()):
    for split in ("train", "val"):
        for c in ("cat", "dog"):
            (root / split / c).mkdir(parents=True)
            for i in range(3):
                Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(root / split / c / f"{i}.png")
    for name, content in bad:
        (root / "train" / "cat" / name).write_bytes(content)


def test_imagefolder_reports_and_skips_bad_files(tmp_path):
    good_png = (tmp_path / "x.png")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(good_png)
    _imagefolder(tmp_path / "d", bad=[("zero.png", b""), ("notes.txt", b"hello"),
                                      ("trunc.png", good_png.read_bytes()[:30]), ("fake.jpg", b"not a jpeg")])
    spec = f"imagefolder:{tmp_path / 'd'}"
    with pytest.raises(SslvitError) as e:
        load_dataset(spec, "train")
    msg = str(e.value)
    assert "4 bad file(s)" in msg and "zero.png: zero-byte file" in msg and "on_bad_image=skip" in msg
    with pytest.warns(UserWarning, match="skipping 4 bad file"):
        ds = load_dataset(spec, "train", DataConfig(on_bad_image="skip"))
    assert isinstance(ds, FileImages) and len(ds) == 6 and ds.classes == ["cat", "dog"]
    assert len(load_dataset(spec, "val")) == 6


def test_spec_errors():
    with pytest.raises(SslvitError, match="unknown dataset 'mnist3'"):
        parse_spec("mnist3:/x")
    with pytest.raises(SslvitError, match="needs a root"):
        load_dataset("cifar10", "train")
    spec = parse_spec("cifar10:/r/c?subset=4&subset_seed=1")
    assert (spec.kind, spec.root, spec.options) == ("cifar10", "/r/c", {"subset": "4", "subset_seed": "1"})
    with pytest.raises(SslvitError, match="unknown option 'shots'; valid options for cifar10: subset, subset_seed"):
        parse_spec("cifar10:/r/c?shots=4&seed=1")           # an option the kind does not read is an error
