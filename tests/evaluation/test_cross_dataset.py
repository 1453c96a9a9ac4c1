"""The backbone's data config travels with it: a grey 28 px backbone evaluates RGB 32 px CIFAR (and an RGB
ImageFolder of files), an RGB 32 px backbone evaluates Fashion-MNIST."""

import torch

from ssl_vit.checkpoints import LoadedBackbone
from ssl_vit.config import ModelConfig, load_config
from ssl_vit.core.input_spec import InputSpec
from ssl_vit.evaluation.cache import FeatureCache
from ssl_vit.evaluation.knn import run_knn
from ssl_vit.evaluation.linear_probe import run_linear_probe
from ssl_vit.models import create_backbone
from tests.data.test_formats import _imagefolder, _write_cifar10


def _loaded(in_chans, img_size, patch):
    torch.manual_seed(0)
    cfg = ModelConfig(name="vit_micro", img_size=img_size, patch_size=patch, in_chans=in_chans, depth=1)
    input_spec = InputSpec(img_size, in_chans, (0.4,) * in_chans, (0.25,) * in_chans)
    return LoadedBackbone(create_backbone(cfg), cfg, input_spec, "mem", "test", weights_hash=f"w{in_chans}{img_size}")


def test_grey_backbone_on_cifar_and_files_rgb_backbone_on_fmnist(tmp_path, fmnist_dir):
    _write_cifar10(tmp_path / "c10", n=20)
    _imagefolder(tmp_path / "if")
    cfg = load_config(
        "smoke",
        ["probe.fast_epochs=2", "log.progress=false", "eval.max_train=0", "eval.max_test=0", "data.num_workers=0"],
    )
    cache = FeatureCache(tmp_path / "cache")
    grey, rgb = _loaded(1, 28, 7), _loaded(3, 32, 8)
    for loaded, dataset, n_train in (
        (grey, f"cifar10:{tmp_path / 'c10'}", 100),
        (grey, f"imagefolder:{tmp_path / 'if'}", 6),
        (rgb, f"fmnist:{fmnist_dir}", 512),
    ):
        res = run_linear_probe(loaded, dataset, cfg, cache)
        assert res["n_train"] == n_train and 0.0 <= res["top1"] <= 100.0
        knn = run_knn(
            loaded.model, loaded.input_spec, dataset, cfg.data, k=3, cache=cache, weights_hash=loaded.weights_hash
        )
        assert knn["features_extracted"] == [] and knn["n_train"] == n_train  # the probe's features
