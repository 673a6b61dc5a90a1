"""Detectors (one paper per file in ``detectors/``), shared layers, backbones and checkpoints."""

from dflab.models.base import DETECTORS, VARIANTS, Detector, InputSpec, build_detector, register_detector

__all__ = ["DETECTORS", "VARIANTS", "Detector", "InputSpec", "build_detector", "register_detector"]
