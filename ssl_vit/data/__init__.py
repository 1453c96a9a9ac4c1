"""Data: dataset spec strings -> in-memory (:class:`TensorImages`) or file (:class:`FileImages`) sets."""
from ssl_vit.data.images import FileImages, TensorImages
from ssl_vit.data.specs import DatasetSpec, dataset_kinds, eval_splits, load_dataset, parse_spec, register_dataset

__all__ = ["DatasetSpec", "FileImages", "TensorImages", "dataset_kinds", "eval_splits", "load_dataset",
           "parse_spec", "register_dataset"]

# kinds that live in their own modules register themselves on import
from ssl_vit.data import fewshot, vtab  # noqa: E402,F401  ('fewshot:', 'vtab:')
