"""Evaluation: feature extraction + cache, kNN (faiss), linear probe (fast / MoCo v3 protocol), result files."""

from ssl_vit.evaluation.cache import FeatureCache
from ssl_vit.evaluation.features import extract_features
from ssl_vit.evaluation.knn import knn_predict, knn_top1

__all__ = ["FeatureCache", "extract_features", "knn_predict", "knn_top1"]
