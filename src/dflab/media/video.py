"""Video decoding with PyAV: probe, frame sampling by count/stride/indices, seeking instead of decoding gaps.

Frame indices are presentation-order indices from 0, the same numbering an uninterrupted decode gives, whether or not
the decoder seeks: after a seek the index is recovered from the frame's timestamp (``pts × time_base × fps``), which is
exact for the constant-frame-rate videos of the seed datasets; when a stream does not look constant-rate (or has no
timestamps) we never seek and count decoded frames instead.

Sampling follows the papers: ``count`` evenly spaced frames per video (20 or 32 in DADD/LAE/Multi-metric), or every
``stride``-th frame (BiG-Arts tests every 10th frame), or all frames.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from dflab.errors import MediaError
from dflab.media.files import missing_error, unreadable_error
from dflab.media.image import MAX_PIXELS, is_heif_head, read_image

#: Seek instead of decoding forward when the next wanted frame is more than this many frames ahead.
SEEK_GAP = 64
#: FFmpeg decoding threads per video in this process; 0 leaves FFmpeg's choice (one per core). See
#: :func:`set_decode_threads`.
_DECODE_THREADS = 0

IMAGE_EXTS = {
    *(".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".jfif"),
    *(".heic", ".heif", ".avif"),  # phone photos (iPhone: HEIC), read through pillow-heif / Pillow's AVIF plugin
}
VIDEO_EXTS = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv", ".3gp", ".ts"}

#: FFmpeg demuxers that open plain text as a video (``tty``: ANSI art, picked for ``.txt``, ``.nfo``, ``.asc`` …)
_TEXT_DEMUXERS = {"tty"}

_IMAGE_MAGIC = (
    b"\xff\xd8\xff",  # JPEG
    b"\x89PNG\r\n\x1a\n",
    b"GIF87a",
    b"GIF89a",
    b"BM",
    b"II*\x00",  # TIFF little-endian
    b"MM\x00*",  # TIFF big-endian
    b"P5",
    b"P6",
)


@dataclass(frozen=True)
class MediaInfo:
    """What a file holds, read from its header (no pixel decoded for videos).

    Attributes:
        kind: ``"image"``, ``"video"`` or ``"frames"`` (a folder of frame images).
        n_frames: frame count (1 for an image; from the container, else estimated from duration × fps).
        fps: frames per second (0.0 for an image).
        width: frame width in pixels.
        height: frame height in pixels.
        duration: seconds (0.0 for an image).
        jpeg: a JPEG still, which :func:`~dflab.media.image.read_image` can decode at a reduced scale when it is
            over a pixel limit (:func:`~dflab.media.image.fit_scale`).
    """

    kind: str
    n_frames: int
    fps: float
    width: int
    height: int
    duration: float
    jpeg: bool = False


def _looks_like_video_container(head: bytes) -> bool:
    return (
        head[4:8] in (b"ftyp", b"moov", b"mdat", b"free", b"wide")
        or head.startswith(b"\x1a\x45\xdf\xa3")  # Matroska/WebM
        or (head.startswith(b"RIFF") and head[8:12] == b"AVI ")
        or head.startswith(b"FLV")
        or head.startswith(b"\x00\x00\x01\xba")  # MPEG-PS
        or head[:1] == b"\x47"  # MPEG-TS sync byte
        or head.startswith(b"\x30\x26\xb2\x75")  # ASF/WMV
    )


def _is_image_head(head: bytes) -> bool:
    return (  # a HEIF/AVIF still is an ISO-BMFF file like an MP4: its brand tells it apart
        head.startswith(_IMAGE_MAGIC) or (head.startswith(b"RIFF") and head[8:12] == b"WEBP") or is_heif_head(head)
    )


def _is_frame_file(p: Path) -> bool:
    if not p.is_file():
        return False
    if p.suffix.lower() in IMAGE_EXTS:
        return True
    if p.suffix == "":  # VidTIMIT stores its frames as extension-less JPEGs (001, 002, …)
        with open(p, "rb") as fh:
            return _is_image_head(fh.read(32))
    return False


def _frame_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if _is_frame_file(p))


def sniff(path: str | Path) -> str:
    """Tell whether a path is an image or a video (a folder of frame images counts as a video).

    Raises:
        MediaError: ``missing``, ``unreadable``, ``zero_bytes``, ``not_media``, ``truncated`` or
            ``unsupported_codec``.
    """
    path = Path(path)
    if not path.exists():
        raise missing_error(path)
    try:
        if path.is_dir():
            if _frame_files(path):
                return "video"
            raise MediaError(path, "not_media", "folder without frame images")
        if path.stat().st_size == 0:
            raise MediaError(path, "zero_bytes")
        with open(path, "rb") as fh:
            head = fh.read(32)
    except PermissionError as exc:
        raise unreadable_error(path, exc) from exc
    if _is_image_head(head):
        return "image"
    _open_video(path, head).close()
    return "video"


def _open_video(path: Path, head: bytes | None = None) -> av.container.InputContainer:
    if head is None:
        with open(path, "rb") as fh:
            head = fh.read(32)
    try:
        container = av.open(str(path), mode="r")
    except av.error.PermissionError as exc:
        raise unreadable_error(path, exc) from exc
    except av.error.FFmpegError as exc:
        # the message alone: FFmpeg's str() adds an errno number and the path, which a report already shows
        detail = f"FFmpeg: {exc.strerror or type(exc).__name__}"
        if _looks_like_video_container(head):
            raise MediaError(path, "truncated", detail + " (a video container, cut short or damaged)") from exc
        raise MediaError(path, "not_media", detail + " (neither an image nor a video container)") from exc
    if not container.streams.video:
        container.close()
        raise MediaError(path, "not_media", "no video stream")
    stream = container.streams.video[0]
    if container.format.name in _TEXT_DEMUXERS:
        container.close()
        raise MediaError(path, "not_media", "a text file (FFmpeg would render it as ANSI art)")
    if stream.codec_context.width <= 0 and not _looks_like_video_container(head):
        # FFmpeg picks its image2 demuxer from a file name such as ``x.jpg`` and opens any bytes as a 0×0 "video";
        # the bytes did not start like an image (``sniff`` looked), so the file is not the image its name says
        container.close()
        raise MediaError(path, "not_media", f"named {path.suffix} but its bytes are not an image")
    if stream.codec_context is None or stream.codec_context.codec is None:
        container.close()
        raise MediaError(path, "unsupported_codec", f"no decoder for {stream.codec_context}")
    return container


def probe(path: str | Path) -> MediaInfo:
    """Read a media file's kind, frame count, rate and size from its header.

    Raises:
        MediaError: as :func:`sniff`, plus ``too_large``/``bad_dimensions``.
    """
    path = Path(path)
    kind = sniff(path)
    if path.is_dir():
        files = _frame_files(path)
        rgb = read_image(files[0])
        return MediaInfo("frames", len(files), 0.0, rgb.shape[1], rgb.shape[0], 0.0)
    if kind == "image":
        from dflab.media.image import image_header

        w, h, jpeg = image_header(path)
        return MediaInfo("image", 1, 0.0, w, h, 0.0, jpeg)
    with _open_video(path) as container:
        return _video_info(path, container)


def _video_info(path: Path, container: av.container.InputContainer) -> MediaInfo:
    stream = container.streams.video[0]
    w, h = stream.codec_context.width, stream.codec_context.height
    if w <= 0 or h <= 0:
        raise MediaError(path, "bad_dimensions", f"{w}x{h}")
    if w * h > MAX_PIXELS:
        raise MediaError(path, "too_large", f"{w}x{h} frames exceed the {MAX_PIXELS} px limit")
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    fps = float(rate) if rate else 0.0
    if stream.duration is not None and stream.time_base is not None:
        duration = float(stream.duration * stream.time_base)
    elif container.duration is not None:
        duration = container.duration / av.time_base
    else:
        duration = 0.0
    n = int(stream.frames or 0)
    if n <= 0 and fps > 0 and duration > 0:
        n = round(duration * fps)
    return MediaInfo("video", n, fps, w, h, duration)


def sample_indices(n_frames: int, *, count: int | None = None, stride: int | None = None) -> list[int] | None:
    """Frame indices to decode: ``count`` evenly spaced, every ``stride``-th, or ``None`` for all.

    ``count`` spaced frames are ``round(linspace(0, n-1, count))`` (first and last included), de-duplicated when the
    video is shorter than ``count``.
    """
    if count is not None and stride is not None:
        raise ValueError("give count or stride, not both")
    if count is not None:
        if count <= 0:
            raise ValueError(f"count must be positive, got {count}")
        if n_frames <= 0:
            return []
        return sorted({round(x) for x in np.linspace(0, n_frames - 1, num=min(count, n_frames))})
    if stride is not None:
        if stride <= 0:
            raise ValueError(f"stride must be positive, got {stride}")
        return list(range(0, max(n_frames, 0), stride))
    return None


def set_decode_threads(threads: int) -> None:
    """Decode every video of this process with ``threads`` FFmpeg threads (0: FFmpeg's choice, one per core).

    ``dflab prepare`` gives each worker process its share of the cores: with FFmpeg's default every worker started
    a decoding thread per core (32 workers × 33 threads on a 32-core machine), and on 2 cores with 2 workers one
    thread per worker decoded the three reference videos with 0.15 of 1.5 CPU seconds less
    (docs/guide/faces_and_speed.md). Frames are the same either way.
    """
    global _DECODE_THREADS
    if threads < 0:
        raise ValueError(f"threads must be >= 0, got {threads}")
    _DECODE_THREADS = threads


#: decoded pixel format -> the format swscale converts it to for :func:`_to_rgb`: 4:4:4 frames (every FF++ video) go
#: to planar RGB, which PyAV interleaves; swscale has no fast path from 4:4:4 to packed RGB and took 1.7 / 4.6 CPU ms
#: per 640 × 480 / 1280 × 720 frame, against 0.9 / 2.6 ms through planar RGB. The pixels are the same (every frame of
#: the four FF++ videos of ../shared/data, and all 2^24 (Y, U, V) values, tested). From 4:2:0 packed RGB is the fast
#: path (0.1 against 0.3 ms for a 512 × 512 frame).
_RGB_VIA = {"yuv444p": "gbrp"}


def _to_rgb(frame: av.VideoFrame) -> np.ndarray:
    """The frame as RGB uint8 (H, W, 3); with :func:`set_decode_threads`, swscale's conversion gets as many threads
    (its default of one per core took 4.9 instead of 3.5 CPU ms per 1280 × 720 4:4:4 frame of FF++; the pixels are the
    same)."""
    return _upright(_convert(frame), frame)


def _convert(frame: av.VideoFrame) -> np.ndarray:
    fmt = _RGB_VIA.get(frame.format.name, "rgb24")
    if _DECODE_THREADS:
        try:
            return frame.to_ndarray(format=fmt, threads=_DECODE_THREADS)
        except TypeError:  # PyAV < 14: no thread count for the converter
            pass
    return frame.to_ndarray(format=fmt)


def _upright(rgb: np.ndarray, frame: av.VideoFrame) -> np.ndarray:
    """The frame as a player shows it: a phone stores a portrait video's frames sideways with a display rotation
    (FFmpeg's display matrix; PyAV's ``frame.rotation``, degrees counter-clockwise). Left sideways, faces lie at 90°:
    in such a clip of 24 frames dlib's HOG found no face and YuNet 18 (verdict "uncertain"), against 24 upright.

    Shape:
        rgb (H, W, 3); returns (H, W, 3), or (W, H, 3) for a quarter turn.
    """
    turns = round(getattr(frame, "rotation", 0) / 90) % 4  # PyAV < 13 has no ``rotation``: frames as stored
    return np.ascontiguousarray(np.rot90(rgb, turns)) if turns else rgb


def iter_frames(
    path: str | Path,
    *,
    count: int | None = None,
    stride: int | None = None,
    indices: Sequence[int] | None = None,
) -> Iterator[tuple[int, np.ndarray]]:
    """Decode frames of a video (or the single frame of an image) as RGB uint8.

    Args:
        path: video file, image file, or a folder of frame images (VidTIMIT/WildDeepfake layout).
        count: evenly spaced frames (see :func:`sample_indices`).
        stride: every ``stride``-th frame.
        indices: exact frame indices to decode (e.g. the frames sampled in a fake, read from its original).

    Yields:
        ``(frame_index, rgb)`` in increasing frame order.

    Raises:
        MediaError: before the first frame for unusable files; ``truncated``/``decode_error`` mid-stream;
            ``no_frames`` if a video yields nothing.

    Shape:
        rgb (H, W, 3) uint8.
    """
    path = Path(path)
    if sum(x is not None for x in (count, stride, indices)) > 1:
        raise ValueError("give at most one of count, stride, indices")
    kind = sniff(path)
    if path.is_dir():
        files = _frame_files(path)
        wanted = list(indices) if indices is not None else sample_indices(len(files), count=count, stride=stride)
        for i in range(len(files)) if wanted is None else wanted:
            if 0 <= i < len(files):
                yield i, read_image(files[i])
        return
    if kind == "image":
        if indices is None or 0 in indices:
            yield 0, read_image(path)
        return
    yield from _iter_video(path, count=count, stride=stride, indices=indices)


def _iter_video(
    path: Path, *, count: int | None, stride: int | None, indices: Sequence[int] | None
) -> Iterator[tuple[int, np.ndarray]]:
    container = _open_video(path)
    try:
        info = _video_info(path, container)
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        if _DECODE_THREADS:
            stream.codec_context.thread_count = _DECODE_THREADS
        if indices is not None:
            wanted = sorted({int(i) for i in indices if i >= 0})
        else:
            wanted = sample_indices(info.n_frames, count=count, stride=stride)
        start_pts = stream.start_time or 0
        tb = stream.time_base
        can_seek = bool(
            wanted and info.fps > 0 and tb is not None and stream.average_rate and _constant_rate(stream, info)
        )
        produced = 0
        try:
            if wanted is None:
                for idx, frame in enumerate(container.decode(stream)):
                    produced += 1
                    yield idx, _to_rgb(frame)
            elif wanted:
                # counted here, not taken from the generator's return value: an error mid-stream ends it with no
                # return, and a break after good frames must read ``truncated``, not ``decode_error``
                for item in _decode_wanted(container, stream, wanted, info.fps, start_pts, tb, can_seek):
                    produced += 1
                    yield item
        except av.error.FFmpegError as exc:
            detail = f"FFmpeg: {exc.strerror or type(exc).__name__}"
            detail += f", after {produced} frames" if produced else ""
            raise MediaError(path, "truncated" if produced else "decode_error", detail) from exc
        if produced == 0 and (wanted is None or wanted):
            raise MediaError(path, "no_frames", "the decoder produced no frame")
    finally:
        container.close()


def _constant_rate(stream: av.video.stream.VideoStream, info: MediaInfo) -> bool:
    avg, guessed = stream.average_rate, stream.guessed_rate
    if guessed and avg and abs(float(avg) - float(guessed)) > 0.01 * float(avg):
        return False
    if stream.frames and info.duration > 0 and info.fps > 0:
        return abs(stream.frames - info.duration * info.fps) <= max(2.0, 0.01 * stream.frames)
    return True


def _avcc_nal_length_size(stream: av.video.stream.VideoStream) -> int | None:
    """Length-prefix size of an H.264 stream's NAL units in MP4/MKV packets (``avcC`` extradata), else ``None``."""
    ctx = stream.codec_context
    extra = ctx.extradata
    if ctx.name != "h264" or not extra or len(extra) < 7 or extra[0] != 1:
        return None  # not H.264, or Annex B start codes (MPEG-TS): never skip
    return (extra[4] & 3) + 1


def _is_h264_nonref(data: bytes, nal_length_size: int) -> bool:
    """Whether an AVCC packet holds only non-reference slices (``nal_ref_idc == 0``): a picture no other frame is
    predicted from, so leaving it undecoded changes no other frame. A packet we cannot parse is a reference."""
    pos, slices = 0, 0
    while pos + nal_length_size < len(data):
        size = int.from_bytes(data[pos : pos + nal_length_size], "big")
        pos += nal_length_size
        if size <= 0 or pos + size > len(data):
            return False
        header = data[pos]
        if header & 0x1F in (1, 5):  # coded slice (non-IDR, IDR)
            if header & 0x60:
                return False
            slices += 1
        pos += size
    return slices > 0


def _frames(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream, skip: Callable[[int], bool] | None
) -> Iterator[av.VideoFrame]:
    """Decoded frames of a stream; with ``skip``, a non-reference H.264 packet whose frame index ``skip`` says is
    unwanted is never given to the decoder (``container.decode(stream)`` without ``skip``)."""
    nal_size = _avcc_nal_length_size(stream) if skip is not None else None
    if nal_size is None:
        yield from container.decode(stream)
        return
    start_pts, tb, fps = stream.start_time or 0, stream.time_base, float(stream.average_rate)
    for packet in container.demux(stream):
        if (
            packet.size
            and packet.pts is not None
            and not packet.is_keyframe
            and skip(round((packet.pts - start_pts) * tb * fps))
            and _is_h264_nonref(bytes(packet), nal_size)
        ):
            continue
        yield from packet.decode()


def _decode_wanted(
    container: av.container.InputContainer,
    stream: av.video.stream.VideoStream,
    wanted: list[int],
    fps: float,
    start_pts: int,
    tb: Fraction,
    can_seek: bool,
) -> Iterator[tuple[int, np.ndarray]]:
    """Decode only the wanted frames, seeking over long gaps. Returns how many frames were yielded.

    Between wanted frames of a constant-rate H.264 stream, non-reference pictures (most B-frames) are not decoded at
    all (:func:`_frames`): on the three reference videos of ``bench/bench_ratios.py`` (GOP 250, so a seek rarely
    saves anything at 32 frames per video) this cuts decoding from 1.6–1.7 to 1.1–1.2 CPU seconds. Frame indices
    then come from timestamps, as after a seek (``can_seek`` holds only where they are exact).
    """
    produced = 0
    wanted_set = set(wanted)
    skip = (lambda i: i not in wanted_set) if can_seek else None
    pos = 0  # index of the next wanted entry
    idx = -1  # index of the frame last decoded
    if can_seek and wanted[0] > SEEK_GAP:
        # Seeking a decoder that has not yet decoded a frame returns corrupt pictures on some H.264 streams
        # (seen on FF++ c23 High 4:4:4: a first-operation seek to a keyframe gives a green frame). One decoded
        # frame opens the decoder properly; it costs one frame, not the gap.
        next(iter(container.decode(stream)), None)
        idx = 0
    while pos < len(wanted):
        if can_seek and wanted[pos] - idx > SEEK_GAP:
            ts = start_pts + math.floor(wanted[pos] / fps / tb)
            container.seek(ts, stream=stream, backward=True, any_frame=False)
            idx = None  # unknown until the first frame's timestamp
        sought_for = pos
        for frame in _frames(container, stream, skip):
            if idx is None or skip is not None:
                if frame.pts is None:
                    raise av.error.ValueError(0, "frame without timestamp after a seek")
                idx = round((frame.pts - start_pts) * tb * fps)
            else:
                idx += 1
            while pos < len(wanted) and wanted[pos] < idx:
                pos += 1  # a seek landed past it (not expected with backward=True): skip, never duplicate
            if pos < len(wanted) and wanted[pos] == idx:
                produced += 1
                yield idx, _to_rgb(frame)
                pos += 1
            if pos >= len(wanted):
                return produced
            # seek again only for a *new* far target; the keyframe a seek lands on may itself be far before it
            if can_seek and pos != sought_for and wanted[pos] - idx > SEEK_GAP:
                break
        else:
            return produced  # end of stream
    return produced


#: frames decoded from the start of a video to read its quantiser (:func:`h264_qp`): an I-frame and the predicted
#: frames after it, whose QP is higher, as most of a clip's frames are
QP_FRAMES = 4


def h264_qp(path: str | Path, frames: int = QP_FRAMES) -> float | None:
    """The mean H.264 quantiser (QP, 0-51: higher is coarser) of a video's macroblocks over its first ``frames``
    frames, read from the decoder's exported encoding parameters (FFmpeg ``venc_params``); ``None`` for a stream
    that is not H.264 or exports none, or when the file cannot be decoded.

    For a video what the JPEG quality is for a still (:func:`~dflab.media.image.jpeg_quality`): how much of the
    picture's fine detail the encoder threw away. x264 at CRF c gives I-frames a QP near c - 1 and predicted
    frames more; re-encoded at CRF 23 / 28 / 35, the default's held-out videos read 26 / 31 / 37 (median).

    The scanner calls this beside its own decoding (a second open and 4 decoded frames: 0.05 s of CPU for a 1080p
    clip), so that the number it compares with the card is the one measured on the validation videos.
    """
    try:
        container = _open_video(Path(path))
    except (MediaError, OSError):
        return None
    try:
        stream = container.streams.video[0]
        if stream.codec_context.name != "h264":
            return None
        # the quantisers are parsed from the bitstream whatever the picture looks like: no deblocking (-25 % CPU)
        stream.codec_context.options = {"export_side_data": "venc_params", "skip_loop_filter": "all"}
        qps = []
        for frame in container.decode(stream):
            for side in frame.side_data:
                if side.type.name == "VIDEO_ENC_PARAMS" and side.nb_blocks:
                    qps.append(float(np.mean(side.qp_map())))
            if len(qps) >= frames:
                break
        return round(float(np.mean(qps)), 2) if qps else None
    except av.error.FFmpegError:
        return None
    finally:
        container.close()


def write_video(path: str | Path, frames: Sequence[np.ndarray] | np.ndarray, *, fps: int = 25, crf: int = 18) -> Path:
    """Write RGB frames to an H.264 mp4 (used by tests and fixtures; in-process libx264 via PyAV).

    Shape:
        frames (T, H, W, 3) uint8 with even H and W.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = list(frames)
    h, w = frames[0].shape[:2]
    with av.open(str(path), mode="w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height = w, h
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(crf), "g": "12"}
        for rgb in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path
