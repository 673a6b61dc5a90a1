"""A broken-media corpus for fuzzing the scanner and the web service (tests and ``bench_serve``), plus good files.

Every broken entry lists the outcomes it may get: a clear error record (its cause), ``no_face``, or a valid
result (``ok``). Nothing here is downloaded: the good files derive from scikit-image's astronaut photo.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import cv2
import numpy as np

#: file name -> the statuses it may end with (scan record ``status``, or the error ``cause``)
EXPECTED: dict[str, set[str]] = {
    "zero_bytes.mp4": {"zero_bytes"},
    "truncated.mp4": {"truncated", "decode_error", "no_frames", "not_media"},
    "broken_midstream.mp4": {"partial"},
    "text_renamed.mp4": {"not_media"},
    "text_renamed.jpg": {"not_media"},
    "png_bomb.png": {"too_large"},
    "one_pixel.png": {"bad_dimensions", "no_face"},
    "faceless.png": {"no_face"},
    "sixteen_bit.png": {"ok"},
    "rgba.png": {"ok"},
}


def _png_bomb(path: Path, side: int = 30_000) -> None:
    """A valid PNG header announcing side × side grey pixels with a tiny compressed body (a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    row = b"\x00" + b"\x00" * side
    comp = zlib.compressobj(9)
    body = b"".join(comp.compress(row) for _ in range(64)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", body) + chunk(b"IEND", b""))


def _broken_midstream(path: Path, frames: list[np.ndarray]) -> None:
    """An MP4 whose index comes first (``faststart``) and whose second half is noise: the first frames decode,
    then the decoder fails — the scanner must score what it got (status ``partial``)."""
    import av

    tmp = path.with_suffix(".tmp.mp4")
    with av.open(str(tmp), mode="w", options={"movflags": "faststart"}) as out:
        stream = out.add_stream("libx264", rate=12)
        stream.width, stream.height = frames[0].shape[1], frames[0].shape[0]
        stream.pix_fmt = "yuv420p"
        stream.options = {"g": "4"}
        for rgb in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    data = tmp.read_bytes()
    tmp.unlink()
    noise = np.random.default_rng(0).integers(0, 256, len(data) - len(data) // 2, dtype=np.uint8).tobytes()
    path.write_bytes(data[: len(data) // 2] + noise)


def write_corpus(out: Path, astronaut: np.ndarray | None = None) -> dict[str, Path]:
    """Write ``astronaut.png``, ``clip.mp4`` (12 frames of it drifting) and every :data:`EXPECTED` file under ``out``.

    Returns:
        file name -> path.
    """
    from dflab.media import write_video

    if astronaut is None:
        from skimage import data

        astronaut = data.astronaut()
    out.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out / "astronaut.png"), astronaut[:, :, ::-1])
    small = cv2.resize(astronaut, (256, 256), interpolation=cv2.INTER_AREA)
    frames = [np.roll(small, shift=2 * i, axis=1) for i in range(12)]
    write_video(out / "clip.mp4", np.stack(frames), fps=12)
    (out / "zero_bytes.mp4").write_bytes(b"")
    data = (out / "clip.mp4").read_bytes()
    (out / "truncated.mp4").write_bytes(data[: len(data) // 3])
    _broken_midstream(out / "broken_midstream.mp4", [np.roll(small, shift=2 * i, axis=1) for i in range(24)])
    (out / "text_renamed.mp4").write_text("this is a text file, not a video\n" * 20)
    (out / "text_renamed.jpg").write_text("this is a text file, not a photo\n" * 20)
    _png_bomb(out / "png_bomb.png")
    cv2.imwrite(str(out / "one_pixel.png"), np.zeros((1, 1, 3), np.uint8))
    sky = np.zeros((240, 320, 3), np.uint8)
    sky[:] = (235, 206, 135)  # BGR sky blue, no face anywhere
    cv2.imwrite(str(out / "faceless.png"), sky)
    cv2.imwrite(str(out / "sixteen_bit.png"), astronaut[:, :, ::-1].astype(np.uint16) * 257)
    rgba = np.dstack([astronaut[:, :, ::-1], np.full(astronaut.shape[:2], 255, np.uint8)])
    cv2.imwrite(str(out / "rgba.png"), rgba)
    return {p.name: p for p in sorted(out.iterdir())}


def outcome(record: dict) -> str:
    """``ok``/``partial``/``no_face`` or the error cause of a scan record."""
    return record["error"]["cause"] if record["status"] == "error" else record["status"]
