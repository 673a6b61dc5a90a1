"""Evaluation: pure metrics, frame→track→video aggregation, protocols as data, prediction over manifests,
robustness sweeps, JSON/HTML reports and multi-run comparison tables.

The names below are imported on first use (PEP 562), so that a light submodule such as
:mod:`dflab.eval.calibration`, which the scanner uses, does not pull scikit-learn in through :mod:`dflab.eval.metrics`.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "track_scores": "aggregate",
    "video_scores": "aggregate",
    "auc": "metrics",
    "binary_metrics": "metrics",
    "bootstrap_ci": "metrics",
    "eer": "metrics",
    "PROTOCOLS": "protocols",
    "Protocol": "protocols",
    "SelectionError": "protocols",
    "TestSet": "protocols",
    "get_protocol": "protocols",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'dflab.eval' has no attribute {name!r}")
    return getattr(importlib.import_module(f"dflab.eval.{_WHERE[name]}"), name)
