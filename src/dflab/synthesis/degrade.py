"""Evaluation degradations (BiG-Arts Sec. 5, LiSiam cross-quality), each a pure function of image and level.

- ``jpeg``: JPEG quality factor through OpenCV's encoder, as BiG-Arts Sec. 5 ("built-in functions in OpenCV",
  QF 60-100; 100 = not compressed, so quality >= 100 returns the input).
- ``blur``: Gaussian blur with a 3×3 kernel ``N(0, σ)`` (BiG-Arts Sec. 5, σ in [0, 0.5]; σ = 0 is the identity).
- ``rescale``: resize by a factor and back to the original size (BiG-Arts Sec. 5 "scale resizing"; the detector
  sees its own input size, so the information loss of the down-scale is what remains). Factor 1 is the identity.
- ``noise``: additive Gaussian noise ``N(0, σ)``; σ on the 0-255 pixel scale (the paper's σ in [0, 0.5] does not
  say its scale — document the sweep's values with the result). The noise comes from a seed in the params, so it
  is replayable.
- ``h264``: re-encode frames with libx264 through PyAV at a CRF (BiG-Arts Table 8, CRF 5-30) or a constant QP
  (FF++ made c23 / c40 with QP 23 / 40). Works on a list of frames (a clip) or one image (a one-frame clip).

``DEGRADATIONS`` maps each name to ``fn(image, level, seed=0)`` for sweeps (``dflab robustness``).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence

import cv2
import numpy as np


def jpeg(image: np.ndarray, quality: float) -> np.ndarray:
    """JPEG round trip at ``quality`` (1-100). Shape: (H, W, 3) uint8 RGB -> same."""
    q = round(quality)
    if q >= 100:
        return image.copy()
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, max(1, q)])
    if not ok:
        raise RuntimeError("OpenCV JPEG encoding failed")
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def gaussian_blur(image: np.ndarray, sigma: float, ksize: int = 3) -> np.ndarray:
    """Gaussian blur with a ``ksize``×``ksize`` kernel (3 as in BiG-Arts Sec. 5). Shape: (H, W, 3) uint8 -> same."""
    if sigma <= 0:
        return image.copy()
    k = int(ksize) | 1
    return cv2.GaussianBlur(image, (k, k), sigmaX=float(sigma), sigmaY=float(sigma))


def rescale(image: np.ndarray, factor: float) -> np.ndarray:
    """Resize by ``factor`` (bilinear, area when shrinking) and back to the input size (bicubic).

    Shape:
        (H, W, 3) uint8 -> (H, W, 3) uint8.
    """
    if abs(factor - 1.0) < 1e-9:
        return image.copy()
    h, w = image.shape[:2]
    nh, nw = max(1, round(h * factor)), max(1, round(w * factor))
    small = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def resize_to_side(image: np.ndarray, side: int) -> np.ndarray:
    """Resize so the longer side is ``side`` px and back (LiSiam's "resizing" degradation)."""
    h, w = image.shape[:2]
    return rescale(image, side / max(h, w))


def gaussian_noise(image: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    """Additive ``N(0, σ)`` noise, σ in 0-255 pixel units, from ``seed`` (replayable). Shape: same as input."""
    if sigma <= 0:
        return image.copy()
    noise = np.random.default_rng(seed).normal(0.0, sigma, size=image.shape)
    return np.clip(np.rint(image.astype(np.float32) + noise), 0, 255).astype(np.uint8)


def h264(
    frames: np.ndarray | Sequence[np.ndarray],
    *,
    crf: int | None = None,
    qp: int | None = None,
    preset: str = "medium",
    fps: int = 25,
) -> list[np.ndarray] | np.ndarray:
    """Encode frames with libx264 (PyAV, in memory) at a CRF or a constant QP, and decode them back.

    ``qp=23`` / ``qp=40`` reproduce FF++'s c23 / c40 settings; ``crf`` is BiG-Arts' Table 8 setting. Frames are
    padded to even sides (yuv420p) and cropped back. A single (H, W, 3) image returns an image; a list returns a
    list of the same length.

    Shape:
        (H, W, 3) uint8 or a sequence of them -> same.
    """
    import av

    if (crf is None) == (qp is None):
        raise ValueError("give exactly one of crf or qp")
    single = isinstance(frames, np.ndarray) and frames.ndim == 3
    seq = [frames] if single else list(frames)
    if not seq:
        return []
    h, w = seq[0].shape[:2]
    ph, pw = h + (h % 2), w + (w % 2)
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = pw, ph, "yuv420p"
        opts = {"preset": preset}
        if crf is not None:
            opts["crf"] = str(int(crf))
        else:
            opts["qp"] = str(int(qp))
        stream.options = opts
        for f in seq:
            if f.shape[:2] != (h, w):
                raise ValueError(f"all frames must be {h}x{w}, got {f.shape[:2]}")
            if (ph, pw) != (h, w):
                f = cv2.copyMakeBorder(f, 0, ph - h, 0, pw - w, cv2.BORDER_REPLICATE)
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    buf.seek(0)
    decoded = []
    with av.open(buf, mode="r") as inp:
        for frame in inp.decode(video=0):
            decoded.append(frame.to_ndarray(format="rgb24")[:h, :w])
    if len(decoded) != len(seq):
        raise RuntimeError(f"H.264 round trip returned {len(decoded)} frames for {len(seq)}")
    return decoded[0] if single else decoded


def _h264_qp(image: np.ndarray, level: float, seed: int = 0) -> np.ndarray:
    return h264(image, qp=round(level))


def _h264_crf(image: np.ndarray, level: float, seed: int = 0) -> np.ndarray:
    return h264(image, crf=round(level))


#: name -> fn(image, level, seed=0); the level's meaning and identity value per name in :data:`IDENTITY_LEVEL`.
DEGRADATIONS: dict[str, Callable[..., np.ndarray]] = {
    "jpeg": lambda image, level, seed=0: jpeg(image, level),
    "blur": lambda image, level, seed=0: gaussian_blur(image, level),
    "rescale": lambda image, level, seed=0: rescale(image, level),
    "noise": lambda image, level, seed=0: gaussian_noise(image, level, seed),
    "h264_qp": _h264_qp,
    "h264_crf": _h264_crf,
}

#: the level at which each degradation leaves the image as it is (None: an encoder never does)
IDENTITY_LEVEL: dict[str, float | None] = {
    "jpeg": 100,
    "blur": 0.0,
    "rescale": 1.0,
    "noise": 0.0,
    "h264_qp": None,
    "h264_crf": None,
}


def degrade(name: str, image: np.ndarray, level: float, seed: int = 0) -> np.ndarray:
    """Apply the named degradation at ``level`` (see :data:`DEGRADATIONS`). Shape: (H, W, 3) uint8 -> same."""
    if name not in DEGRADATIONS:
        raise KeyError(f"unknown degradation {name!r}; known: {', '.join(sorted(DEGRADATIONS))}")
    return DEGRADATIONS[name](image, level, seed=seed)
