"""Lossless PNG encoding for ``dflab prepare``'s crops: the Up filter on every row, deflated by ISA-L.

A prepared crop must be lossless (no new compression traces for a detector to learn), and writing it was the largest
cost of ``dflab prepare`` after decoding and detection. On the 96 crops (256² RGB) of the three reference videos of
``bench/bench_ratios.py``, per crop (CPU ms / file size):

* OpenCV's ``imwrite`` (libpng + zlib) as tuned before: Paeth filter, Huffman-only deflate: 2.1–2.2 ms / 73 KB;
* Up filter (one subtraction of the row above, in numpy: 0.02 ms) + ISA-L deflate (python-isal) at level 2:
  **0.55–0.6 ms / 80 KB** — level 1 and 2 take the same time, level 3 is slower and larger; with the Average
  filter 0.65 ms / 80 KB; Paeth written in numpy costs 1.9 ms before any compression;
* Up filter + stdlib zlib (the fallback when ``isal`` is missing): level 1, 1.5 ms / 82 KB.

The file is a plain 8-bit PNG (IHDR, one IDAT, IEND) that every reader decodes to the very pixels given (tested
against OpenCV and Pillow).
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np

try:  # ~4× faster deflate than zlib's at a similar ratio; optional, zlib otherwise
    from isal import isal_zlib as _deflate
except ImportError:  # pragma: no cover - exercised by the fallback test through monkeypatching
    _deflate = None

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: ISA-L's level (0–3; 2 measured best: as fast as 1 and smaller)
ISAL_LEVEL = 2
#: zlib's level for the fallback
ZLIB_LEVEL = 1
_FILTER_UP = 2
_COLOUR_TYPE = {1: 0, 3: 2}  # channels -> PNG colour type (grey, RGB)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(data, zlib.crc32(kind)))


def _compress(raw: memoryview) -> bytes:
    if _deflate is not None:
        return _deflate.compress(raw, ISAL_LEVEL)
    return zlib.compress(raw, ZLIB_LEVEL)


def encode_png(image: np.ndarray) -> bytes:
    """Encode an 8-bit grey or RGB image as PNG bytes (lossless).

    Shape:
        image (H, W) grey or (H, W, 3) RGB, uint8.
    """
    if image.dtype != np.uint8 or not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)):
        raise ValueError(f"expected (H, W) or (H, W, 3) uint8, got {image.shape} {image.dtype}")
    h, w = image.shape[:2]
    if h == 0 or w == 0:
        raise ValueError(f"cannot encode an empty image {image.shape}")
    channels = 1 if image.ndim == 2 else 3
    rows = np.ascontiguousarray(image).reshape(h, w * channels)
    # each scanline: its filter byte, then the Up filter (the byte minus the byte above, modulo 256; the row above
    # the first is zeros, so the first row is itself)
    raw = np.empty((h, w * channels + 1), np.uint8)
    raw[:, 0] = _FILTER_UP
    raw[0, 1:] = rows[0]
    np.subtract(rows[1:], rows[:-1], out=raw[1:, 1:])
    header = struct.pack(">IIBBBBB", w, h, 8, _COLOUR_TYPE[channels], 0, 0, 0)
    idat = _compress(memoryview(raw).cast("B"))
    return PNG_SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def write_png(path: str | Path, image: np.ndarray) -> None:
    """Write an 8-bit grey or RGB image as a PNG file (:func:`encode_png`), creating its folder.

    Shape:
        image (H, W) grey or (H, W, 3) RGB, uint8.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encode_png(image))
