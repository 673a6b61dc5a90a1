"""Detectors (one paper per file in ``detectors/``), shared layers, backbones and checkpoints.

The torch names below are imported on first use (PEP 562), so that torch-free modules of this package (the CLIP
ONNX encoder, checkpoint cards, :class:`~dflab.models.spec.InputSpec`) load without torch: ``dflab scan`` with the
default detector never imports it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["DETECTORS", "VARIANTS", "Detector", "InputSpec", "build_detector", "register_detector"]


def __getattr__(name: str) -> Any:
    if name == "InputSpec":
        from dflab.models.spec import InputSpec

        return InputSpec
    if name in __all__:
        from dflab.models import base  # calls dflab.compat.ensure_torchvision() before anything imports timm

        return getattr(base, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
