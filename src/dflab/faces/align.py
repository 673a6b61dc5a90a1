"""Square face crops with a margin, FF++ style, and the frame → crop transform.

FaceForensics++ (Rössler et al. 2019, §4) crops a face with a box 1.3× the detector's, the convention the seed papers
(DADD/ADDG, LAE, LiSiam) follow. We do not rotate: the crop is a pure scale + translation of the frame, so the same
box cut from an original frame and from its frame-aligned fake covers exactly the same pixels — the premise of the
pixel-difference masks used by LAE, Multi-metric loss, BiG-Arts and LiSiam.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

Box = tuple[float, float, float, float]


@dataclass
class CropResult:
    """A face crop.

    Attributes:
        image: (size, size, 3) uint8 RGB crop; parts outside the frame are black.
        box: (x0, y0, x1, y1) square crop window in frame pixels (integer-valued; may extend past the frame).
        matrix: (2, 3) float64 affine transform from frame pixels to crop pixels.
    """

    image: np.ndarray
    box: Box
    matrix: np.ndarray


def square_box(det_box: Box, margin: float = 1.3) -> Box:
    """Square window of side ``margin × max(w, h)`` around the detector box's centre, on integer pixels."""
    x0, y0, x1, y1 = det_box
    side = max(1, round(max(x1 - x0, y1 - y0) * margin))
    cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0
    bx, by = round(cx - side / 2.0), round(cy - side / 2.0)
    return (float(bx), float(by), float(bx + side), float(by + side))


def crop_box(rgb: np.ndarray, box: Box, size: int = 256) -> CropResult:
    """Cut a square window (possibly past the frame edge, padded black) and resize it to ``size``.

    Shape:
        rgb (H, W, C) uint8; returns image (size, size, C).
    """
    x0, y0, x1, y1 = (round(v) for v in box)
    side = x1 - x0
    if side <= 0 or y1 - y0 != side:
        raise ValueError(f"crop box must be a non-empty square, got {box}")
    h, w = rgb.shape[:2]
    pad = ((max(0, -y0), max(0, y1 - h)), (max(0, -x0), max(0, x1 - w)))
    window = rgb[max(0, y0) : min(h, y1), max(0, x0) : min(w, x1)]
    if any(p for pair in pad for p in pair):
        full = np.zeros((side, side, *rgb.shape[2:]), dtype=rgb.dtype)
        if window.size:
            full[pad[0][0] : pad[0][0] + window.shape[0], pad[1][0] : pad[1][0] + window.shape[1]] = window
        window = full
    interp = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    image = cv2.resize(window, (size, size), interpolation=interp) if side != size else window.copy()
    s = size / side
    # pixel centres: crop pixel u covers frame x in [x0 + u/s, x0 + (u+1)/s); we map with the corner convention
    matrix = np.array([[s, 0.0, -x0 * s], [0.0, s, -y0 * s]], dtype=np.float64)
    return CropResult(
        image=np.ascontiguousarray(image), box=(float(x0), float(y0), float(x1), float(y1)), matrix=matrix
    )


def crop_face(rgb: np.ndarray, det_box: Box, *, size: int = 256, margin: float = 1.3) -> CropResult:
    """Crop a face: square box = detector box × ``margin`` around its centre, padded, resized to ``size``.

    Shape:
        rgb (H, W, 3) uint8; returns image (size, size, 3) uint8.
    """
    return crop_box(rgb, square_box(det_box, margin), size)


def transform_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply a (2, 3) affine transform to points.

    Shape:
        points (N, 2); matrix (2, 3); returns (N, 2) float32.
    """
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    return (pts @ matrix[:, :2].T + matrix[:, 2]).astype(np.float32)
