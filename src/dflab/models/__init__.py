"""Detectors (one paper per file in ``detectors/``), shared layers, backbones and checkpoints."""

from dflab.compat import ensure_torchvision

ensure_torchvision()  # before anything imports timm (CPU torch + CUDA-only torchvision wheel)

from dflab.models.base import DETECTORS, VARIANTS, Detector, InputSpec, build_detector, register_detector  # noqa: E402

__all__ = ["DETECTORS", "VARIANTS", "Detector", "InputSpec", "build_detector", "register_detector"]
