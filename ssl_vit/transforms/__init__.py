"""Transforms: MoCo v3 two-view augmentation (batched tensor path and torchvision v2 path), multi-crop local
views (batched path), eval input."""

from ssl_vit.transforms.batched import TwoViewAugment
from ssl_vit.transforms.eval import to_model_input
from ssl_vit.transforms.multicrop import MultiCropAugment
from ssl_vit.transforms.pipeline import eval_transform, view_transform

__all__ = ["MultiCropAugment", "TwoViewAugment", "eval_transform", "to_model_input", "view_transform"]
