"""Few-shot lists (NOAH layout): reader on generated trees, unknown classes, missing lists, the builder."""
import os

import numpy as np
import pytest

from ssl_vit.config import DataConfig
from ssl_vit.data import eval_splits, load_dataset
from ssl_vit.data.build_fewshot import build_fewshot_fmnist
from ssl_vit.data.fmnist import load_fmnist
from ssl_vit.errors import SslvitError
from tests.data.trees import make_fewshot_tree


def test_reader_parses_train_val_test(tmp_path):
    root = make_fewshot_tree(tmp_path / "pets", n_classes=3, shots=(1, 2), seeds=(0, 1))
    spec = f"fewshot:{root}?shots=2&seed=1"
    assert eval_splits(spec) == ("train", "test")
    train = load_dataset(spec, "train")
    assert len(train) == 6 and train.targets.tolist() == [0, 0, 1, 1, 2, 2] and train.classes == ["0", "1", "2"]
    assert train.samples[0][0] == os.path.join(root, "images", "train_s1/class 0/img_0.png")   # under images/
    assert len(load_dataset(spec, "val")) == 6 and len(load_dataset(spec, "test")) == 12
    assert len(load_dataset(f"fewshot:{root}?shots=1&seed=0", "train")) == 3


def test_paths_relative_to_root_without_images_folder(tmp_path):
    root = make_fewshot_tree(tmp_path / "cars", images_dir=False)            # Stanford Cars style
    ds = load_dataset(f"fewshot:{root}?shots=1&seed=0", "test")
    assert ds.samples[0][0] == os.path.join(root, "test/class 0/img_0.png") and os.path.isfile(ds.samples[0][0])


def test_unknown_class_in_test_list_names_file_and_line(tmp_path):
    root = make_fewshot_tree(tmp_path / "d", n_classes=3)
    test_list = root / "annotations" / "test_meta.list"
    lines = test_list.read_text().splitlines()
    lines[6] = lines[6].rsplit(" ", 1)[0] + " 7"
    test_list.write_text("\n".join(lines) + "\n")
    with pytest.raises(SslvitError) as e:
        load_dataset(f"fewshot:{root}?shots=1&seed=0", "test")
    msg = str(e.value)
    assert msg.startswith(f"{test_list}:7: label 7 is not a class of this few-shot set (unknown class")
    assert "train_meta.list.num_shot_1.seed_0 and val_meta.list" in msg and "\n" not in msg


def test_bad_line_and_missing_image(tmp_path):
    root = make_fewshot_tree(tmp_path / "d")
    tr = root / "annotations" / "train_meta.list.num_shot_2.seed_0"
    tr.write_text(tr.read_text() + "lonely_path.png\n")
    with pytest.raises(SslvitError, match=rf"{tr}:7: expected '<image path> <integer label>'"):
        load_dataset(f"fewshot:{root}?shots=2&seed=0", "train")
    os.remove(root / "images" / "val" / "class 1" / "img_0.png")
    spec = f"fewshot:{root}?shots=1&seed=0"
    with pytest.raises(SslvitError, match=r"val_meta\.list:3: image 'val/class 1/img_0.png' file not found"):
        load_dataset(spec, "val")
    with pytest.warns(UserWarning, match="skipping 1 bad image"):
        assert len(load_dataset(spec, "val", DataConfig(on_bad_image="skip"))) == 5


def test_missing_options_and_lists(tmp_path):
    root = make_fewshot_tree(tmp_path / "d", shots=(1, 2), seeds=(0,))
    with pytest.raises(SslvitError, match=r"needs \?shots=<k>&seed=<s>.*available: shots=1&seed=0, shots=2&seed=0"):
        load_dataset(f"fewshot:{root}", "train")
    with pytest.raises(SslvitError, match=r"num_shot_4\.seed_0' does not exist \(available: shots=1&seed=0"):
        load_dataset(f"fewshot:{root}?shots=4&seed=0", "train")
    with pytest.raises(SslvitError, match="shots='x' is not an integer"):
        load_dataset(f"fewshot:{root}?shots=x&seed=0", "train")
    with pytest.raises(SslvitError, match="unknown option 'way'; valid options for fewshot: shots, seed"):
        load_dataset(f"fewshot:{root}?shots=1&seed=0&way=5", "train")
    with pytest.raises(SslvitError, match="fewshot has splits train, val, test"):
        load_dataset(f"fewshot:{root}?shots=1&seed=0", "train800")
    os.remove(root / "annotations" / "test_meta.list")
    with pytest.raises(SslvitError, match="test_meta.list' does not exist"):
        load_dataset(f"fewshot:{root}?shots=1&seed=0", "test")
    with pytest.raises(SslvitError, match="has no annotations/ folder"):
        load_dataset(f"fewshot:{tmp_path}?shots=1&seed=0", "test")


def test_build_fewshot_from_fmnist(tmp_path, fmnist_dir):
    meta = build_fewshot_fmnist(tmp_path / "fs", shots=(1, 2, 4), seeds=(0, 1), val_per_class=3, test_size=40,
                                data_dir=str(fmnist_dir))
    assert meta["counts"]["test_meta.list"] == 40 and meta["counts"]["val_meta.list"] == 30
    _, y = load_fmnist("train", str(fmnist_dir))
    val = load_dataset(f"fewshot:{tmp_path / 'fs'}?shots=1&seed=0", "val")
    assert np.bincount(val.targets.numpy()).tolist() == [3] * 10
    picked = {}
    for s in (0, 1):
        for k in (1, 2, 4):
            ds = load_dataset(f"fewshot:{tmp_path / 'fs'}?shots={k}&seed={s}", "train")
            assert np.bincount(ds.targets.numpy()).tolist() == [k] * 10 and ds.in_chans == 1 and len(ds.classes) == 10
            idx = [int(os.path.basename(p)[:-4]) for p, _ in ds.samples]      # file name = Fashion-MNIST index
            assert ds.targets.tolist() == y[idx].tolist()                     # labels are the source labels
            assert not set(idx) & {int(os.path.basename(p)[:-4]) for p, _ in val.samples}   # val is held out
            picked[s, k] = set(idx)
    assert picked[0, 1] < picked[0, 2] < picked[0, 4] and picked[0, 4] != picked[1, 4]       # nested; seeds differ
    test = load_dataset(f"fewshot:{tmp_path / 'fs'}?shots=4&seed=1", "test")
    assert len(test) == 40 and test.classes[0] == "T-shirt/top"
