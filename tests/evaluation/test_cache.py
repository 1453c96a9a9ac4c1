"""The feature cache: a second evaluation reads the file instead of extracting; any change of weights,
data or data config makes a new entry; kNN and the linear probe share entries."""

from dataclasses import replace

import pytest
import torch

from ssl_vit.config import ModelConfig
from ssl_vit.core.input_spec import InputSpec
from ssl_vit.core.precision import Precision
from ssl_vit.data.images import TensorImages
from ssl_vit.evaluation import features as features_mod
from ssl_vit.evaluation.cache import FeatureCache
from ssl_vit.models import create_backbone

INPUT_SPEC = InputSpec(28, 1, (0.3,), (0.3,))


def _model(seed=0):
    torch.manual_seed(seed)
    return create_backbone(ModelConfig(name="vit_micro", img_size=28, patch_size=7, in_chans=1, depth=1))


def _data(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return TensorImages(
        torch.randint(0, 256, (n, 1, 28, 28), generator=g, dtype=torch.uint8), torch.randint(0, 10, (n,), generator=g)
    )


@pytest.fixture()
def count_extractions(monkeypatch):
    calls = []
    real = features_mod.extract_features

    def counting(*a, **k):
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(features_mod, "extract_features", counting)
    return calls


def test_second_run_reads_the_cache(tmp_path, count_extractions):
    model, data = _model(), _data()
    c = FeatureCache(tmp_path)
    f1 = c.features(model, data, INPUT_SPEC, dataset="d", split="train")
    assert len(count_extractions) == 1 and len(list(tmp_path.glob("*.safetensors"))) == 1
    c2 = FeatureCache(tmp_path)  # a new process would start like this
    f2 = c2.features(model, data, INPUT_SPEC, dataset="d", split="train")
    assert len(count_extractions) == 1 and c2.events[0].hit and c2.extracted == 0
    assert torch.equal(f1, f2) and f1.shape == (64, 64)
    # the cached features are the model's features (extraction path = plain forward, up to float rounding)
    from ssl_vit.transforms.eval import to_model_input

    with torch.no_grad():
        assert torch.allclose(f2, model.eval()(to_model_input(data.images, INPUT_SPEC)), atol=1e-5)


def test_key_follows_weights_data_and_data_config(tmp_path, count_extractions):
    c = FeatureCache(tmp_path)
    model, data = _model(), _data()
    c.features(model, data, INPUT_SPEC, dataset="d", split="train")
    c.features(_model(seed=1), data, INPUT_SPEC, dataset="d", split="train")  # other weights
    c.features(model, _data(seed=1), INPUT_SPEC, dataset="d", split="train")  # same spec, other images
    c.features(model, data, replace(INPUT_SPEC, mean=(0.5,)), dataset="d", split="train")  # other normalisation
    c.features(model, data, INPUT_SPEC, dataset="d", split="train", precision=Precision("bf16", torch.device("cpu")))
    assert len(count_extractions) == 5 and len(list(tmp_path.glob("*.safetensors"))) == 5
    c.features(model, data, INPUT_SPEC, dataset="d", split="train")
    assert len(count_extractions) == 5


def test_corrupt_entry_is_re_extracted_and_off_means_off(tmp_path, count_extractions):
    model, data = _model(), _data()
    c = FeatureCache(tmp_path)
    f = c.features(model, data, INPUT_SPEC, dataset="d", split="test")
    path = next(tmp_path.glob("*.safetensors"))
    path.write_bytes(path.read_bytes()[:50])
    assert torch.equal(FeatureCache(tmp_path).features(model, data, INPUT_SPEC, dataset="d", split="test"), f)
    assert len(count_extractions) == 2
    off = FeatureCache(None)
    off.features(model, data, INPUT_SPEC, dataset="d", split="test")
    off.features(model, data, INPUT_SPEC, dataset="d", split="test")
    assert len(count_extractions) == 4


def test_knn_and_linear_probe_share_cached_features(tmp_path, fmnist_dir, count_extractions):
    from ssl_vit.checkpoints import LoadedBackbone
    from ssl_vit.config import load_config
    from ssl_vit.evaluation.knn import run_knn
    from ssl_vit.evaluation.linear_probe import run_linear_probe

    cfg = load_config("smoke", ["probe.fast_epochs=2", "log.progress=false", "eval.max_train=0", "eval.max_test=0"])
    model = _model()
    dataset = f"fmnist:{fmnist_dir}"
    c = FeatureCache(tmp_path)
    knn = run_knn(model, INPUT_SPEC, dataset, cfg.data, cache=c, weights_hash="w0")
    assert len(count_extractions) == 2 and knn["features_extracted"] == ["train", "test"]
    loaded = LoadedBackbone(model, cfg.model, INPUT_SPEC, "mem", "test", weights_hash="w0")
    res = run_linear_probe(loaded, dataset, cfg, FeatureCache(tmp_path))
    assert len(count_extractions) == 2  # the probe extracted nothing
    assert sorted(res["features_cached"]) == ["test", "train"] and res["features_extracted"] == []
    assert res["n_train"] == 512 and res["n_test"] == 128


def test_dino_pooling_gets_its_own_entries_and_cls_keeps_its_own(tmp_path, fmnist_dir, count_extractions):
    from ssl_vit.checkpoints import LoadedBackbone
    from ssl_vit.config import load_config
    from ssl_vit.evaluation.linear_probe import run_linear_probe

    sets = ["probe.fast_epochs=2", "log.progress=false", "eval.max_train=0", "eval.max_test=0"]
    model = _model()
    loaded = LoadedBackbone(model, ModelConfig(name="vit_micro", depth=1), INPUT_SPEC, "mem", "test", weights_hash="w0")
    dataset = f"fmnist:{fmnist_dir}"
    cls = run_linear_probe(loaded, dataset, load_config("smoke", sets), FeatureCache(tmp_path))
    dino = run_linear_probe(
        loaded, dataset, load_config("smoke", sets + ["probe.avgpool_patchtokens=true"]), FeatureCache(tmp_path)
    )
    assert len(count_extractions) == 4 and dino["features_extracted"] == ["test", "train"]
    assert (cls["features"], cls["feature_dim"]) == ("cls", 64)
    assert (dino["features"], dino["feature_dim"]) == ("cls+avgpool", 128)
    again = run_linear_probe(
        loaded, dataset, load_config("smoke", sets + ["probe.avgpool_patchtokens=true"]), FeatureCache(tmp_path)
    )
    assert len(count_extractions) == 4 and again["top1"] == dino["top1"]
