"""Dataset spec strings -> datasets. The same strings in every command and recipe::

    fmnist                     Fashion-MNIST (Debian package, data.data_dir, or download)
    cifar10:<root>             torchvision layout (<root>/cifar-10-batches-py)
    cifar100:<root>            torchvision layout (<root>/cifar-100-python)
    stl10:<root>               torchvision layout (<root>/stl10_binary), splits incl. 'unlabeled'
    imagefolder:<root>         <root>/train/<class>/<img>, <root>/val/<class>/<img>

Options after ``?`` apply to every kind: ``subset=<n>&subset_seed=<s>`` keeps a fixed random ``n`` images
of the training split (e.g. ``fmnist?subset=6000`` = 10 % of Fashion-MNIST); the test split stays whole.
    vtab:<root>/<task>         VTAB-1k task in NOAH's layout (ssl_vit/data/vtab.py)
    fewshot:<root>?shots=k&seed=s   few-shot lists in NOAH's layout (ssl_vit/data/fewshot.py)

Other kinds register themselves with :func:`register_dataset` (one function per kind).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, Optional, Union
from urllib.parse import parse_qsl

import torch

from ssl_vit.config.schema import DataConfig
from ssl_vit.config.validate import register_check
from ssl_vit.core.suggest import did_you_mean
from ssl_vit.data import fmnist
from ssl_vit.data.imagefolder import load_imagefolder
from ssl_vit.data.images import FileImages, TensorImages
from ssl_vit.data.torchvision_sets import load_cifar, load_stl10
from ssl_vit.errors import SslvitError

Dataset = Union[TensorImages, FileImages]


@dataclass(frozen=True)
class DatasetSpec:
    kind: str
    root: Optional[str] = None
    options: Dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        s = self.kind + (f":{self.root}" if self.root else "")
        return s + ("?" + "&".join(f"{k}={v}" for k, v in self.options.items()) if self.options else "")


_LOADERS: Dict[str, Callable[[DatasetSpec, str, "object"], Dataset]] = {}
_EVAL_SPLITS: Dict[str, tuple] = {}
_OPTIONS: Dict[str, tuple] = {}
COMMON_OPTIONS = ("subset", "subset_seed")          # every kind (fixed_subset)


def register_dataset(kind: str, eval_splits=("train", "test"), options=()):
    """Decorator: ``loader(spec, split, data_cfg) -> TensorImages | FileImages``. ``options``: the ``?key=value``
    options the kind reads besides :data:`COMMON_OPTIONS` (any other is a spec error)."""
    def deco(fn):
        _LOADERS[kind] = fn
        _EVAL_SPLITS[kind] = eval_splits
        _OPTIONS[kind] = tuple(options) + COMMON_OPTIONS
        return fn
    return deco


def _parse_options(kind: str, query: str, spec: str) -> Dict[str, str]:
    valid = _OPTIONS[kind]
    pairs = parse_qsl(query, keep_blank_values=True)
    options: Dict[str, str] = {}
    for key, value in pairs:
        if key not in valid:
            raise SslvitError(f"dataset spec '{spec}': unknown option '{key}'" + did_you_mean(key, valid)
                              + f"; valid options for {kind}: {', '.join(valid)}")
        if key in options:
            raise SslvitError(f"dataset spec '{spec}': option '{key}' is given twice; keep one")
        if value == "":
            raise SslvitError(f"dataset spec '{spec}': option '{key}' has no value; write {key}=<value>")
        options[key] = value
    return options


def dataset_kinds():
    return sorted(_LOADERS)


def parse_spec(spec: str) -> DatasetSpec:
    if not isinstance(spec, str) or not spec.strip():
        raise SslvitError(f"empty dataset spec; use one of: {', '.join(k + (':<root>' if k != 'fmnist' else '') for k in dataset_kinds())}")
    spec = spec.strip()
    kind, _, rest = spec.partition(":")
    root, _, query = rest.partition("?")
    if "?" in kind:  # e.g. "fmnist?x=1"
        kind, _, query = kind.partition("?")
    kind = kind.lower()
    if kind not in _LOADERS:
        raise SslvitError(f"unknown dataset '{kind}' in spec '{spec}'; valid kinds: {', '.join(dataset_kinds())} "
                          f"(e.g. 'fmnist', 'cifar10:/data/cifar', 'imagefolder:/data/imagenet')")
    return DatasetSpec(kind, root or None, _parse_options(kind, query, spec))


def eval_splits(spec: Union[str, DatasetSpec]) -> tuple:
    """(train split, test split) used for kNN / linear evaluation of this kind."""
    spec = parse_spec(spec) if isinstance(spec, str) else spec
    return _EVAL_SPLITS[spec.kind]


def load_dataset(spec: Union[str, DatasetSpec], split: str, data_cfg=None) -> Dataset:
    data_cfg = data_cfg or DataConfig()
    spec = parse_spec(spec) if isinstance(spec, str) else spec
    data = _LOADERS[spec.kind](spec, split, data_cfg)
    if "subset" in spec.options and split != _EVAL_SPLITS[spec.kind][1]:
        data = fixed_subset(data, spec)
    return data


def fixed_subset(data: Dataset, spec: DatasetSpec) -> Dataset:
    """Spec options ``subset=<n>&subset_seed=<s>`` (e.g. ``fmnist?subset=6000&subset_seed=0``, 10 % of the
    train split): the same ``n`` images for every run with seed ``s`` (a seeded permutation, kept in dataset
    order). Applies to training splits; the test split stays whole."""
    try:
        n, seed = int(spec.options["subset"]), int(spec.options.get("subset_seed", 0))
    except ValueError:
        raise SslvitError(f"dataset spec '{spec}': subset and subset_seed must be integers, e.g. "
                          f"'{spec.kind}?subset=6000&subset_seed=0'") from None
    if not 0 < n <= len(data):
        raise SslvitError(f"dataset spec '{spec}': subset={n} must be in 1..{len(data)} (the split's size)")
    g = torch.Generator().manual_seed(seed)
    return data.subset(torch.randperm(len(data), generator=g)[:n].sort().values)


# ----------------------------------------------------------------------------- built-in kinds
@register_dataset("fmnist")
def _fmnist(spec: DatasetSpec, split: str, cfg) -> TensorImages:
    images, targets = fmnist.load_fmnist(split, spec.root, cfg.data_dir, cfg.download)
    return TensorImages(images, targets, list(fmnist.CLASSES), "fmnist", fmnist.MEAN, fmnist.STD)


def _root(spec: DatasetSpec, cfg) -> Optional[str]:
    return spec.root or cfg.data_dir


@register_dataset("cifar10")
def _cifar10(spec, split, cfg):
    return load_cifar("cifar10", _root(spec, cfg), split, cfg.download)


@register_dataset("cifar100")
def _cifar100(spec, split, cfg):
    return load_cifar("cifar100", _root(spec, cfg), split, cfg.download)


@register_dataset("stl10")
def _stl10(spec, split, cfg):
    return load_stl10(_root(spec, cfg), split, cfg.download)


@register_dataset("imagefolder", eval_splits=("train", "val"))
def _imagefolder(spec, split, cfg):
    return load_imagefolder(_root(spec, cfg), split, cfg.on_bad_image)


def check_dataset_specs(cfg) -> None:
    """``data.dataset`` and ``eval.dataset`` parse (run by ``config.validate``)."""
    parse_spec(cfg.data.dataset)
    if cfg.eval.dataset:
        parse_spec(cfg.eval.dataset)


register_check("names", "data", check_dataset_specs)
