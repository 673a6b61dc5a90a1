"""The analyst's scanner: :func:`~dflab.scan.pipeline.scan_file` plus reports, the ``scan`` and ``demo`` commands."""

from dflab.scan.pipeline import ScanOptions, ScanResult, Scorer, load_scorer, scan_file, scorer_from_model

__all__ = ["ScanOptions", "ScanResult", "Scorer", "load_scorer", "scan_file", "scorer_from_model"]
