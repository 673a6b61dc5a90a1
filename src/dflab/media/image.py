"""Still images → RGB uint8, with EXIF orientation and every common pixel format handled explicitly.

Grey, grey+alpha, palette, RGBA (composited on white), 16-bit (scaled, not clipped), float and CMYK inputs all come
out as ``(H, W, 3) uint8`` RGB. The header's dimensions are checked against :data:`MAX_PIXELS` *before* any pixel is
decoded, so a decompression bomb is refused cheaply with :class:`~dflab.errors.MediaError` (cause ``too_large``). A
JPEG over the limit is not refused while libjpeg can decode it at 1/2, 1/4 or 1/8 of its size within the limit
(:func:`fit_scale`): phones' 50-200 MP modes are common in what an analyst is sent, and their faces are still
hundreds of pixels wide at that scale.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from dflab.errors import MediaError
from dflab.media.files import missing_error, unreadable_error

if TYPE_CHECKING:
    from PIL import Image

# Pillow is imported where an image is read: ``dflab prepare`` of videos never needs it, and its import (≈ 10 ms) ran
# in the one process whose start-up every worker waits for

#: Largest image accepted, in pixels (80 MP: above any camera frame a face tool meets, far below a bomb).
MAX_PIXELS = 80_000_000
#: Smallest side accepted, in pixels (nothing smaller can hold a face crop).
MIN_SIDE = 8


#: ISO-BMFF brands (bytes 8-12) of HEIF and AVIF still images: an iPhone's photos are HEIC
HEIF_BRANDS = (b"heic", b"heix", b"heim", b"heis", b"mif1", b"avif")


def is_heif_head(head: bytes) -> bool:
    """Whether a file's first 12 bytes are those of a HEIF/AVIF still image."""
    return head[4:8] == b"ftyp" and head[8:12] in HEIF_BRANDS


def _open(path: Path) -> Image.Image:
    """``PIL.Image.open``, with pillow-heif's HEIC plugin registered (once, ≈ 40 ms) when a file needs it; Pillow reads
    AVIF itself.

    Raises:
        MediaError: ``not_media`` (not an image), ``unsupported_codec`` (HEIC without pillow-heif).
        PermissionError: from opening the file.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        return Image.open(path)
    except UnidentifiedImageError as exc:
        with open(path, "rb") as fh:
            heif = is_heif_head(fh.read(12))
        if not heif:
            raise MediaError(path, "not_media", "not an image PIL can identify") from exc
        try:
            import pillow_heif
        except ImportError:
            hint = "a HEIC photo needs pillow-heif: pip install pillow-heif"
            raise MediaError(path, "unsupported_codec", hint) from exc
        pillow_heif.register_heif_opener()
        try:
            return Image.open(path)
        except UnidentifiedImageError as exc2:
            raise MediaError(path, "not_media", "a HEIF header without a readable image") from exc2


#: the reductions libjpeg decodes a JPEG at directly from its DCT coefficients (no full-size pixel buffer is made)
JPEG_SCALES = (2, 4, 8)


def fit_scale(width: int, height: int, max_pixels: int, jpeg: bool) -> int:
    """The divisor at which an image is decoded within ``max_pixels``: 1 if it fits as it is; for a JPEG the smallest
    of :data:`JPEG_SCALES` that fits (each side rounded up, as libjpeg does); 0 if nothing fits (``too_large``)."""
    for s in (1, *JPEG_SCALES) if jpeg else (1,):
        if math.ceil(width / s) * math.ceil(height / s) <= max_pixels:
            return s
    return 0


def _check_dims(path: Path, width: int, height: int, max_pixels: int, jpeg: bool = False) -> int:
    """Refuse an image too small or too large (``bad_dimensions``/``too_large``); else its :func:`fit_scale`."""
    if width < MIN_SIDE or height < MIN_SIDE:
        raise MediaError(path, "bad_dimensions", f"{width}x{height} is smaller than {MIN_SIDE} px")
    scale = fit_scale(width, height, max_pixels, jpeg)
    if not scale:
        limit = f"the {max_pixels} px limit" + (f", even at 1/{JPEG_SCALES[-1]} scale" if jpeg else "")
        raise MediaError(path, "too_large", f"{width}x{height} = {width * height} px exceeds {limit}")
    return scale


def to_rgb_uint8(img: Image.Image) -> np.ndarray:
    """Convert a decoded PIL image of any mode to RGB uint8.

    Shape:
        returns (H, W, 3) uint8.
    """
    from PIL import Image

    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img).astype(np.float64)
        # 16-bit data is scaled by its type range (not min-max, which would change brightness between images)
        peak = 65535.0 if mode.startswith("I;16") or arr.max(initial=0) > 255 else 255.0
        if mode == "F":
            peak = 1.0 if arr.max(initial=0) <= 1.0 else 255.0
        grey = np.clip(arr / peak * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(background, rgba).convert("RGB"))
    if mode == "CMYK":
        # PIL's CMYK->RGB is the naive formula; Adobe JPEGs store inverted CMYK, which PIL already undoes on load.
        return np.asarray(img.convert("RGB"))
    if mode == "RGB":
        return np.asarray(img)
    return np.asarray(img.convert("RGB"))


def read_image(path: str | Path, *, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Read an image file as RGB uint8 with its EXIF orientation applied.

    Args:
        path: image file.
        max_pixels: refuse images with more pixels than this (checked from the header, before decoding); a larger
            JPEG is decoded at the smallest reduction (1/2, 1/4, 1/8) that fits, see :func:`fit_scale`.

    Returns:
        The image, ``(H, W, 3) uint8`` RGB.

    Raises:
        MediaError: ``missing``, ``unreadable``, ``zero_bytes``, ``not_media``, ``truncated``, ``too_large``,
            ``bad_dimensions``, ``decode_error``.

    Shape:
        returns (H, W, 3) uint8.
    """
    from PIL import Image, ImageOps

    path = Path(path)
    if not path.exists():
        raise missing_error(path)
    if path.stat().st_size == 0:
        raise MediaError(path, "zero_bytes")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        saved_limit = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None  # our own limit below, checked from the header
        try:
            try:
                img = _open(path)
            except PermissionError as exc:
                raise unreadable_error(path, exc) from exc
            with img:
                scale = _check_dims(path, img.width, img.height, max_pixels, img.format == "JPEG")
                if scale > 1:  # libjpeg's DCT scaling: the full-size image is never in memory
                    img.draft("RGB", (math.ceil(img.width / scale), math.ceil(img.height / scale)))
                    _check_dims(path, img.width, img.height, max_pixels)
                try:
                    img.load()
                except OSError as exc:
                    cause = (
                        "truncated"
                        if "truncated" in str(exc).lower() or "broken" in str(exc).lower()
                        else "decode_error"
                    )
                    raise MediaError(path, cause, str(exc)) from exc
                except (ValueError, SyntaxError) as exc:
                    raise MediaError(path, "decode_error", str(exc)) from exc
                img = ImageOps.exif_transpose(img) or img
                return np.ascontiguousarray(to_rgb_uint8(img))
        finally:
            Image.MAX_IMAGE_PIXELS = saved_limit


def image_header(path: str | Path) -> tuple[int, int, bool]:
    """(width, height, is_jpeg) after EXIF orientation, read from the header only (a JPEG can be decoded reduced).

    Raises:
        MediaError: ``too_large`` when not even :func:`fit_scale` brings it within :data:`MAX_PIXELS`;
            ``bad_dimensions`` under :data:`MIN_SIDE`; ``not_media``.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit decides, below
            with _open(path) as img:
                w, h = img.size
                jpeg = img.format == "JPEG"
                _check_dims(path, w, h, MAX_PIXELS, jpeg)
                orientation = img.getexif().get(0x0112, 1)
    except Image.DecompressionBombError as exc:  # PIL refuses > 2×its own limit before we can look
        raise MediaError(path, "too_large", str(exc)) from exc
    except (UnidentifiedImageError, OSError) as exc:
        raise MediaError(path, "not_media", str(exc)) from exc
    return (h, w, jpeg) if orientation in (5, 6, 7, 8) else (w, h, jpeg)


#: the IJG (libjpeg) luminance quantisation table at quality 50 (ITU-T T.81, Annex K, Table K.1), in row order
IJG_LUMINANCE = np.array(
    [
        [16, 11, 10, 16, 24, 40, 51, 61],
        [12, 12, 14, 19, 26, 58, 60, 55],
        [14, 13, 16, 24, 40, 57, 69, 56],
        [14, 17, 22, 29, 51, 87, 80, 62],
        [18, 22, 37, 56, 68, 109, 103, 77],
        [24, 35, 55, 64, 81, 104, 113, 92],
        [49, 64, 78, 87, 103, 121, 120, 101],
        [72, 92, 95, 98, 112, 100, 103, 99],
    ],
    np.float64,
)


def ijg_table(quality: int) -> np.ndarray:
    """The luminance table libjpeg writes at ``quality`` (1-100): Annex K's table scaled by 5000 / q below 50, by
    200 − 2q from 50 up, rounded and clipped to 1-255 (baseline)."""
    scale = 5000 / quality if quality < 50 else 200 - 2 * quality
    return np.clip(np.floor((IJG_LUMINANCE * scale + 50) / 100), 1, 255)


def jpeg_quality(path: str | Path) -> int | None:
    """The JPEG quality a still was last saved at, on libjpeg's 1-100 scale; ``None`` for a file that is not a JPEG
    (or has no luminance table).

    Read from the header only: the quality whose IJG luminance table is closest (mean absolute log ratio) to the
    file's first quantisation table. Encoders built on libjpeg (Pillow, OpenCV, most web and phone pipelines) write
    exactly these tables, so their quality comes back exactly; other encoders' tables (cameras, Photoshop) map to the
    libjpeg quality of the same coarseness.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            if img.format != "JPEG":
                return None
            tables = getattr(img, "quantization", None) or {}
    except (OSError, UnidentifiedImageError):
        return None
    if 0 not in tables or len(tables[0]) != 64:
        return None
    table = np.log(np.maximum(np.asarray(tables[0], np.float64).reshape(8, 8), 1))
    errors = [np.abs(table - np.log(ijg_table(q))).mean() for q in range(1, 101)]
    return int(np.argmin(errors)) + 1
