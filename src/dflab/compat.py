"""Make ``import torchvision`` work on a CPU-only torch when the only torchvision wheel is a CUDA build.

torchvision 0.28.0 (the only build for torch 2.13.0) registers meta kernels for ``torchvision::nms``/``qnms`` at
import; its compiled library links CUDA and does not load on the CPU torch, so the import fails with
``RuntimeError: operator torchvision::nms does not exist``. We define the two op schemas ourselves and give
``torchvision.ops.nms`` a pure-torch implementation. Nothing is patched when torchvision imports normally.
Call :func:`ensure_torchvision` before importing timm, pytorch-grad-cam or torchvision.
"""

from __future__ import annotations

import importlib
import sys

import torch

_LIB: torch.library.Library | None = None  # kept alive for the life of the process
_PATCHED = False


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Pure-torch non-maximum suppression with torchvision's semantics.

    Shape:
        boxes (N, 4) as x1, y1, x2, y2; scores (N,); returns kept indices (K,) sorted by decreasing score.
    """
    if boxes.numel() == 0:
        return torch.empty(0, dtype=torch.long, device=boxes.device)
    x1, y1, x2, y2 = boxes.unbind(1)
    areas = (x2 - x1).clamp(min=0) * (y2 - y1).clamp(min=0)
    order = scores.argsort(descending=True)
    keep = []
    suppressed = torch.zeros(len(boxes), dtype=torch.bool, device=boxes.device)
    for idx in order.tolist():
        if suppressed[idx]:
            continue
        keep.append(idx)
        xx1 = torch.maximum(x1[idx], x1)
        yy1 = torch.maximum(y1[idx], y1)
        xx2 = torch.minimum(x2[idx], x2)
        yy2 = torch.minimum(y2[idx], y2)
        inter = (xx2 - xx1).clamp(min=0) * (yy2 - yy1).clamp(min=0)
        iou = inter / (areas[idx] + areas - inter).clamp(min=1e-12)
        suppressed |= iou > iou_threshold
    return torch.tensor(keep, dtype=torch.long, device=boxes.device)


def _define_schemas() -> None:
    global _LIB
    if _LIB is not None:
        return
    _LIB = torch.library.Library("torchvision", "FRAGMENT")
    for op in ("nms", "qnms"):
        try:
            _LIB.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        except RuntimeError as exc:  # already defined by a working torchvision
            if "already" not in str(exc).lower() and "multiple" not in str(exc).lower():
                raise


def ensure_torchvision():
    """Import torchvision, applying the CPU compat step only if the plain import fails with the known error."""
    global _PATCHED
    if "torchvision" in sys.modules and not _PATCHED:
        return sys.modules["torchvision"]
    try:
        return importlib.import_module("torchvision")
    except RuntimeError as exc:
        if "torchvision::nms does not exist" not in str(exc):
            raise
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]
    _define_schemas()
    tv = importlib.import_module("torchvision")
    import torchvision.ops
    import torchvision.ops.boxes

    torchvision.ops.nms = nms
    torchvision.ops.boxes.nms = nms
    _PATCHED = True
    return tv


def torchvision_patched() -> bool:
    """True when :func:`ensure_torchvision` had to apply the compat step."""
    return _PATCHED
