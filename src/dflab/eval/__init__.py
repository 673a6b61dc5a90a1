"""Evaluation: pure metrics, frame→track→video aggregation, protocols as data, prediction over manifests,
robustness sweeps, JSON/HTML reports and multi-run comparison tables."""

from dflab.eval.aggregate import track_scores, video_scores
from dflab.eval.metrics import auc, binary_metrics, bootstrap_ci, eer
from dflab.eval.protocols import PROTOCOLS, Protocol, SelectionError, TestSet, get_protocol

__all__ = [
    "PROTOCOLS",
    "Protocol",
    "SelectionError",
    "TestSet",
    "auc",
    "binary_metrics",
    "bootstrap_ci",
    "eer",
    "get_protocol",
    "track_scores",
    "video_scores",
]
