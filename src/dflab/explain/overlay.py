"""Heat-map overlays on the face crop and mapped back onto the original frame.

A crop is related to its frame by a 2×3 affine ``matrix`` (frame px → crop px): the one
``dflab.faces.crop_face`` returns, or, for the FF++-style square box crops the manifest stores, the scale +
translation of :func:`box_matrix`. :func:`heat_to_frame` warps a crop-sized map into the frame with the inverse of
that matrix; pixels outside the crop get weight 0 so only the face region is tinted.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np


def box_matrix(box: Sequence[float], crop_size: int | tuple[int, int]) -> np.ndarray:
    """Frame → crop matrix of an axis-aligned crop window ``box = (x0, y0, x1, y1)`` resized to ``crop_size``.

    Shape:
        returns (2, 3) float64.
    """
    x0, y0, x1, y1 = (float(v) for v in box)
    w, h = (crop_size, crop_size) if isinstance(crop_size, int) else crop_size
    sx, sy = w / max(x1 - x0, 1e-6), h / max(y1 - y0, 1e-6)
    return np.array([[sx, 0.0, -x0 * sx], [0.0, sy, -y0 * sy]], dtype=np.float64)


def heat_to_frame(heat: np.ndarray, matrix: np.ndarray, frame_shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Warp a crop-space map into frame space.

    Args:
        heat: map in crop pixels.
        matrix: frame → crop affine (2, 3).
        frame_shape: (height, width) of the frame.

    Shape:
        heat (h, w) float; returns (heat_frame (H, W) float32, valid (H, W) float32 in [0, 1]).
    """
    H, W = frame_shape
    m = np.asarray(matrix, dtype=np.float64)
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP  # matrix maps destination (frame) to source (crop)
    warped = cv2.warpAffine(heat.astype(np.float32), m, (W, H), flags=flags, borderValue=0.0)
    valid = cv2.warpAffine(np.ones(heat.shape, np.float32), m, (W, H), flags=flags, borderValue=0.0)
    return warped, valid


def colorize(heat: np.ndarray) -> np.ndarray:
    """Jet colour map of a [0, 1] map as RGB uint8.

    Shape:
        heat (H, W); returns (H, W, 3) uint8.
    """
    h8 = np.clip(heat * 255.0, 0, 255).astype(np.uint8)
    return cv2.cvtColor(cv2.applyColorMap(h8, cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)


def overlay(rgb: np.ndarray, heat: np.ndarray, alpha: float = 0.45, weight: np.ndarray | None = None) -> np.ndarray:
    """Blend a [0, 1] heat map over an RGB image; ``weight`` (0..1 per pixel) limits where it is drawn.

    The map is resized to the image when their sizes differ.

    Shape:
        rgb (H, W, 3) uint8; heat (h, w); weight (H, W) or None; returns (H, W, 3) uint8.
    """
    H, W = rgb.shape[:2]
    if heat.shape != (H, W):
        heat = cv2.resize(heat.astype(np.float32), (W, H), interpolation=cv2.INTER_LINEAR)
    a = np.full((H, W), alpha, np.float32) if weight is None else alpha * np.clip(weight, 0, 1).astype(np.float32)
    out = rgb.astype(np.float32) * (1 - a[..., None]) + colorize(heat).astype(np.float32) * a[..., None]
    return np.clip(out, 0, 255).astype(np.uint8)


def overlay_on_frame(
    frame: np.ndarray, heat: np.ndarray, matrix: np.ndarray, alpha: float = 0.45, box: Sequence[float] | None = None
) -> np.ndarray:
    """Overlay a crop-space map on the original frame (and draw the crop box when given).

    Shape:
        frame (H, W, 3) uint8; heat (h, w) in crop px; matrix (2, 3); returns (H, W, 3) uint8.
    """
    warped, valid = heat_to_frame(heat, matrix, frame.shape[:2])
    out = overlay(frame, warped, alpha=alpha, weight=valid)
    if box is not None:
        x0, y0, x1, y1 = (round(float(v)) for v in box)
        cv2.rectangle(out, (x0, y0), (x1, y1), (255, 255, 255), max(1, frame.shape[0] // 300))
    return out
