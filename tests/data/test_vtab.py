"""VTAB-1k: NOAH-layout reader (generated trees, every bad-input case with file:line) and the builder."""
import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from ssl_vit.config import DataConfig
from ssl_vit.data import FileImages, eval_splits, load_dataset
from ssl_vit.data import vtab
from ssl_vit.data.build_vtab import build_vtab_task, split_indices
from ssl_vit.data.fmnist import load_fmnist
from ssl_vit.errors import SslvitError
from tests.conftest import make_fmnist
from tests.data.trees import make_vtab_task


def test_constants_are_the_19_tasks_in_3_groups():
    assert [len(vtab.GROUPS[g]) for g in ("Natural", "Specialized", "Structured")] == [7, 4, 8]
    assert len(set(vtab.TASKS)) == 19 and set(vtab.TASKS) == set(vtab.NUM_CLASSES)
    assert vtab.group_of("kitti") == "Structured" and vtab.group_of("fmnist_rot") == "Structured"
    assert vtab.group_of("my_task") == "Other"


def test_reader_parses_all_splits(tmp_path):
    folder, written = make_vtab_task(tmp_path)
    spec = f"vtab:{folder}"
    assert eval_splits(spec) == ("train800val200", "test")
    for split, rows in written.items():
        ds = load_dataset(spec, split)
        assert isinstance(ds, FileImages) and len(ds) == len(rows)
        assert ds.samples == [(os.path.join(folder, p), y) for p, y in rows]
        assert len(ds.classes) == 47 and ds.in_chans == 3 and ds.img_size == 224   # dtd: NOAH's 47 classes
    assert len(load_dataset(spec, "train800val200")) == 12


def test_classes_of_unknown_task_and_task_json(tmp_path):
    folder, _ = make_vtab_task(tmp_path, task="my_task", n_classes=3)
    assert load_dataset(f"vtab:{folder}", "test").classes == ["0", "1", "2"]       # max label + 1
    (folder / "task.json").write_text(json.dumps({"classes": ["a", "b", "c", "d"], "in_chans": 1, "img_size": 28}))
    ds = load_dataset(f"vtab:{folder}", "train800")
    assert ds.classes == ["a", "b", "c", "d"] and ds.in_chans == 1 and ds.img_size == 28


@pytest.mark.parametrize("line, needle", [
    ("images/train800/000001.jpg", "expected '<image path> <integer label>'"),
    ("images/train800/000001.jpg one", "label 'one' is not an integer"),
    ("images/train800/000001.jpg 1.5", "label '1.5' is not an integer"),
    ("images/train800/000001.jpg -1", "negative label -1"),
    ("images/train800/000001.jpg 47", "label 47 is not a class of task 'dtd' (47 classes"),
])
def test_bad_split_line_names_file_and_line(tmp_path, line, needle):
    folder, written = make_vtab_task(tmp_path)
    rows = [f"{p} {y}" for p, y in written["train800"]]
    rows[2] = line
    (folder / "train800.txt").write_text("\n".join(rows) + "\n")
    with pytest.raises(SslvitError) as e:
        load_dataset(f"vtab:{folder}", "train800")
    assert str(e.value).startswith(f"{folder / 'train800.txt'}:3: ") and needle in str(e.value)
    assert "\n" not in str(e.value)


def test_label_out_of_range_in_test_split(tmp_path):
    folder, written = make_vtab_task(tmp_path, task="kitti")        # NOAH: 4 classes
    rows = [f"{p} {y}" for p, y in written["test"]]
    rows[4] = f"{written['test'][4][0]} 4"
    (folder / "test.txt").write_text("\n".join(rows) + "\n")
    with pytest.raises(SslvitError, match=r"test\.txt:5: label 4 is not a class of task 'kitti' \(4 classes"):
        load_dataset(f"vtab:{folder}", "test")


def test_missing_and_corrupt_images_fail_or_skip(tmp_path):
    folder, written = make_vtab_task(tmp_path)
    os.remove(folder / written["val200"][1][0])                                    # line 2
    (folder / written["val200"][3][0]).write_bytes(b"not a jpeg")                  # line 4
    with pytest.raises(SslvitError) as e:
        load_dataset(f"vtab:{folder}", "val200")
    msg = str(e.value)
    assert msg.startswith(f"{folder / 'val200.txt'}:2: image 'images/val200/000001.jpg' file not found")
    assert "1 more bad image" in msg and "on_bad_image=skip" in msg
    with pytest.warns(UserWarning, match="skipping 2 bad image"):
        ds = load_dataset(f"vtab:{folder}", "val200", DataConfig(on_bad_image="skip"))
    assert [os.path.basename(p) for p, _ in ds.samples] == ["000000.jpg", "000002.jpg"]


def test_missing_split_unknown_split_and_task_hint(tmp_path):
    folder, _ = make_vtab_task(tmp_path, task="cifar")
    os.remove(folder / "val200.txt")
    with pytest.raises(SslvitError, match="has no val200.txt"):
        load_dataset(f"vtab:{folder}", "val200")
    with pytest.raises(SslvitError, match="VTAB has splits train800, val200, train800val200, test, not 'train'"):
        load_dataset(f"vtab:{folder}", "train")
    with pytest.raises(SslvitError, match=r"did you mean 'cifar'\?.*tasks under .*: cifar"):
        load_dataset(f"vtab:{tmp_path / 'cifar100'}", "test")
    with pytest.raises(SslvitError, match="did you mean 'oxford_flowers102'.*VTAB-1k task names: cifar, caltech101"):
        load_dataset(f"vtab:{tmp_path / 'nowhere' / 'oxford_flowers'}", "test")
    with pytest.raises(SslvitError, match=r"is a vtab-1k root, not a task folder; append a task: .* one of cifar"):
        load_dataset(f"vtab:{tmp_path}", "test")
    with pytest.raises(SslvitError, match="needs a task folder"):
        load_dataset("vtab", "test")


# ----------------------------------------------------------------------------- builder
@pytest.fixture(scope="module")
def fm_big(tmp_path_factory):
    """Generated Fashion-MNIST IDX files with enough training images for 800 + 200 (x2 for the 5-class subset)."""
    return make_fmnist(tmp_path_factory.mktemp("fm_big"), n_train=2300, n_test=300)


def test_build_fmnist_task_roundtrip(tmp_path, fm_big):
    meta = build_vtab_task("fmnist", tmp_path, seed=3, test_size=0, data_dir=str(fm_big))
    assert meta["counts"] == {"train800": 800, "val200": 200, "test": 300, "train800val200": 1000}
    src_x, src_y = load_fmnist("train", str(fm_big))
    tx, ty = load_fmnist("test", str(fm_big))
    train_idx, val_idx, test_idx = split_indices(2300, 300, 3, 0)
    spec = f"vtab:{tmp_path / 'fmnist'}"
    for split, (x, y, idx) in {"train800": (src_x, src_y, train_idx), "val200": (src_x, src_y, val_idx),
                               "test": (tx, ty, test_idx)}.items():
        ds = load_dataset(spec, split)
        assert ds.in_chans == 1 and ds.img_size == 28 and len(ds.classes) == 10
        assert ds.targets.tolist() == y[torch.as_tensor(idx)].tolist()
        for j in (0, len(ds) - 1):                                       # pixels survive (PNG is lossless)
            assert np.array_equal(np.asarray(Image.open(ds.samples[j][0])), x[int(idx[j]), 0].numpy())
    both = load_dataset(spec, "train800val200")
    assert both.samples == load_dataset(spec, "train800").samples + load_dataset(spec, "val200").samples
    assert len(set(train_idx) | set(val_idx)) == 1000                    # train800 and val200 are disjoint


def test_build_rot_and_sub_tasks(tmp_path, fm_big):
    build_vtab_task("fmnist_rot", tmp_path, seed=0, test_size=50, data_dir=str(fm_big))
    src_x, _ = load_fmnist("train", str(fm_big))
    train_idx, _, _ = split_indices(2300, 300, 0, 50)
    ds = load_dataset(f"vtab:{tmp_path / 'fmnist_rot'}", "train800")
    assert len(ds.classes) == 4 and len(load_dataset(f"vtab:{tmp_path / 'fmnist_rot'}", "test")) == 50
    assert set(ds.targets.tolist()) == {0, 1, 2, 3}
    for j in range(4):
        k = ds.samples[j][1]
        expect = torch.rot90(src_x[int(train_idx[j]), 0], k, dims=(0, 1)).numpy()
        assert np.array_equal(np.asarray(Image.open(ds.samples[j][0])), expect)

    build_vtab_task("fmnist_sub", tmp_path, seed=0, test_size=0, data_dir=str(fm_big))
    _, y = load_fmnist("train", str(fm_big))
    keep = np.flatnonzero(np.isin(y.numpy(), (0, 2, 3, 4, 6)))
    remap = {0: 0, 2: 1, 3: 2, 4: 3, 6: 4}
    train_idx, _, _ = split_indices(len(keep), 1, 0, 0)
    ds = load_dataset(f"vtab:{tmp_path / 'fmnist_sub'}", "train800")
    assert ds.classes == ["T-shirt/top", "Pullover", "Dress", "Coat", "Shirt"]
    assert ds.targets.tolist() == [remap[int(y[keep[i]])] for i in train_idx]


def test_build_is_deterministic_and_atomic(tmp_path, fm_big, monkeypatch):
    same = [np.array_equal(a, b) for a, b in zip(split_indices(2300, 300, 1, 20), split_indices(2300, 300, 1, 20))]
    other = [np.array_equal(a, b) for a, b in zip(split_indices(2300, 300, 1, 20), split_indices(2300, 300, 2, 20))]
    assert same == [True] * 3 and other == [False] * 3
    build_vtab_task("fmnist", tmp_path / "a", seed=1, test_size=20, data_dir=str(fm_big))
    read = lambda r: (r / "fmnist" / "train800.txt").read_text()  # noqa: E731
    with pytest.raises(SslvitError, match="already exists; pass --overwrite"):
        build_vtab_task("fmnist", tmp_path / "a", seed=1, test_size=20, data_dir=str(fm_big))
    before = read(tmp_path / "a")

    import ssl_vit.data.build_vtab as bv
    real = bv.write_images
    calls = []

    def crash(*a, **k):                       # dies while writing val200: the old task must survive intact
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*a, **k)
    monkeypatch.setattr(bv, "write_images", crash)
    with pytest.raises(KeyboardInterrupt):
        build_vtab_task("fmnist", tmp_path / "a", seed=9, test_size=20, data_dir=str(fm_big), overwrite=True)
    assert read(tmp_path / "a") == before and sorted(os.listdir(tmp_path / "a")) == ["fmnist"]


def test_build_errors(tmp_path, fmnist_dir):
    with pytest.raises(SslvitError, match="VTAB-1k needs 800 \\+ 200"):          # fixture has 512 train images
        build_vtab_task("fmnist", tmp_path, data_dir=str(fmnist_dir))
    with pytest.raises(SslvitError, match="'kitti' is not in torchvision; prepare it with NOAH"):
        build_vtab_task("kitti", tmp_path)
    with pytest.raises(SslvitError, match="^CIFAR100 not found under"):
        build_vtab_task("cifar", tmp_path, data_dir=str(tmp_path))
    assert not (tmp_path / "cifar").exists() and not (tmp_path / "fmnist").exists()


def test_build_cifar100_from_torchvision_pickles(tmp_path):
    from tests.data.test_formats import _write_cifar100
    _write_cifar100(tmp_path / "src", n=1010)
    meta = build_vtab_task("cifar", tmp_path / "vtab", seed=0, test_size=30, data_dir=str(tmp_path / "src"))
    assert meta["counts"]["test"] == 30 and meta["classes"][:2] == ["c0", "c1"]
    import pickle
    labels = pickle.load(open(tmp_path / "src" / "cifar-100-python" / "train", "rb"))["fine_labels"]
    train_idx, _, _ = split_indices(1010, 1010, 0, 30)
    ds = load_dataset(f"vtab:{tmp_path / 'vtab' / 'cifar'}", "train800")
    assert len(ds) == 800 and len(ds.classes) == 100 and ds.in_chans == 3
    assert ds.targets.tolist() == [labels[i] for i in train_idx]
    assert Image.open(ds.samples[0][0]).size == (32, 32)


def _tiny_png(path, value):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((4, 4, 3), value % 256, np.uint8)).save(path)


def test_clevr_sources_read_scene_files(tmp_path):
    """CLEVR v1.0's real layout (scenes JSON + images): labels are VTAB's count - 3 and depth bins."""
    from ssl_vit.data.vtab_sources import SOURCES
    folder = tmp_path / "src" / "clevr" / "CLEVR_v1.0"
    depths = [7.9, 8.2, 8.5, 9.7, 12.0]                      # closest-object depth -> bins 0, 1, 1, 4, 5
    for split, n in (("train", 12), ("val", 5)):
        scenes = []
        for i in range(n):
            name = f"CLEVR_{split}_{i:06d}.png"
            _tiny_png(folder / "images" / split / name, i)
            objs = [{"pixel_coords": [10, 20, depths[i % 5] + 0.5 * j]} for j in range(3 + i % 8)]
            scenes.append({"image_filename": name, "objects": objs})
        (folder / "scenes").mkdir(exist_ok=True)
        (folder / "scenes" / f"CLEVR_{split}_scenes.json").write_text(json.dumps({"scenes": scenes}))
    count = SOURCES["clevr_count"](str(tmp_path / "src"), False, 0)
    dist = SOURCES["clevr_dist"](str(tmp_path / "src"), False, 0)
    assert len(count.classes) == 8 and len(dist.classes) == 6 and len(count.pool) == 12
    assert [count.pool[i][1] for i in range(12)] == [i % 8 for i in range(12)]
    assert [dist.test[i][1] for i in range(5)] == [0, 1, 1, 4, 5]
    img, _ = dist.test[3]
    assert img.mode == "RGB" and np.asarray(img)[0, 0, 0] == 3
    with pytest.raises(SslvitError, match="VTAB-1k needs 800 \\+ 200"):
        build_vtab_task("clevr_count", tmp_path / "vtab", data_dir=str(tmp_path / "src"))


def test_eurosat_source_and_held_out_test(tmp_path):
    """torchvision's EuroSAT layout (eurosat/2750/<class>/*) has no split: test is held out of the pool."""
    from ssl_vit.data.vtab_sources import SOURCES, Source, _Pairs
    classes = ["AnnualCrop", "Forest", "River"]
    for c, name in enumerate(classes):
        for i in range(4):
            _tiny_png(tmp_path / "src" / "eurosat" / "2750" / name / f"{name}_{i}.jpg", 80 * c)
    src = SOURCES["eurosat"](str(tmp_path / "src"), False, 0)
    assert src.classes == classes and src.test is None and len(src.pool) == 12
    assert all(int(np.asarray(src.pool[i][0])[0, 0, 0]) // 80 == src.pool[i][1] for i in range(12))
    train, val, test = split_indices(1030, None, 5, 0)
    assert len(test) == 30 and not set(test) & (set(train) | set(val))
    assert len(split_indices(1030, None, 5, 7)[2]) == 7
    # the held-out path end to end, on an in-memory pool (label = pixel value)
    x = torch.arange(1030, dtype=torch.uint8).view(-1, 1, 1, 1).expand(-1, 1, 4, 4).contiguous()
    y = np.arange(1030) % 3
    meta = build_vtab_task("held", tmp_path / "vtab", seed=5, test_size=0,
                           source=Source(_Pairs(x, y), None, ["a", "b", "c"], "test pool", 1, 4, ext="png"))
    assert meta["counts"]["test"] == 30
    ds = load_dataset(f"vtab:{tmp_path / 'vtab' / 'held'}", "test")
    assert ds.targets.tolist() == [int(i) % 3 for i in test]
    assert [int(np.asarray(Image.open(p))[0, 0]) for p, _ in ds.samples] == [int(i) % 256 for i in test]
