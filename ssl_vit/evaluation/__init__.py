"""Evaluation: feature extraction, kNN (faiss), result files."""
from ssl_vit.evaluation.features import extract_features
from ssl_vit.evaluation.knn import knn_predict, knn_top1

__all__ = ["extract_features", "knn_predict", "knn_top1"]
