"""The face path every media item takes (``dflab prepare`` and the scanner): decode → detect → track → crop."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dflab.errors import MediaError
from dflab.faces.align import CropResult, crop_face, transform_points
from dflab.faces.detect import DetectedFace, FaceDetector
from dflab.faces.schedule import DetectionSchedule
from dflab.faces.track import track_faces
from dflab.media import iter_frames
from dflab.media.prefetch import prefetch


@dataclass(frozen=True)
class Sampling:
    """Which frames to decode: ``count`` evenly spaced, every ``stride``-th, or all (both ``None``)."""

    count: int | None = None
    stride: int | None = None

    def __post_init__(self) -> None:
        if self.count is not None and self.stride is not None:
            raise ValueError("Sampling takes count or stride, not both")


@dataclass
class FaceCrop:
    """One face of one frame, cropped.

    Attributes:
        frame_index: index of the frame in the video (0 for an image).
        track_id: stable id of the face across the video's sampled frames.
        det: the detection (box, score, landmarks in frame pixels).
        crop: the crop (image, square box, frame→crop matrix).
        landmarks: (68, 2) float32 landmarks in crop pixels.
        frame_size: (width, height) of the frame.
    """

    frame_index: int
    track_id: int
    det: DetectedFace
    crop: CropResult
    landmarks: np.ndarray
    frame_size: tuple[int, int]


#: a per-frame event: (frame_index, kind, detail); kind ``"no_face"`` for a frame where no face was found
Event = tuple[int, str, str]


@dataclass
class FoundFaces:
    """Every face of a run of decoded frames, tracked and cropped (what :func:`find_faces` returns).

    Attributes:
        faces: ordered by (frame_index, track_id).
        events: one ``no_face`` event per frame without a face.
        frames: index of every frame seen, in order.
        kept: the frames the caller asked to keep (``keep(index)`` true), by index.
        frame_size: (width, height) of the first frame (``(0, 0)`` when there was none).
    """

    faces: list[FaceCrop]
    events: list[Event]
    frames: list[int]
    kept: dict[int, np.ndarray]
    frame_size: tuple[int, int]


def find_faces(
    frames: Iterable[tuple[int, np.ndarray]],
    detector: FaceDetector,
    *,
    size: int = 256,
    margin: float = 1.3,
    keep: Callable[[int], bool] | None = None,
    on_frame: Callable[[int], None] | None = None,
    schedule: bool = False,
    on_crop: Callable[[int, DetectedFace, CropResult], None] | None = None,
) -> FoundFaces:
    """Detect, crop and track every face of decoded frames: the one face path of ``prepare`` and ``scan``.

    Faces are cropped as soon as their frame is decoded, so a frame is held only when ``keep`` asks for it (the
    scanner's overlay frames); track ids are given once every frame is seen.

    Args:
        frames: ``(frame_index, rgb)`` in increasing frame order.
        detector: the face detector.
        size: crop side in pixels.
        margin: crop box / detector box (FF++: 1.3).
        keep: which frames to hold on to and return in ``kept``.
        on_frame: called with the number of frames done after each frame (progress, deadlines).
        schedule: search each frame at a size set by the faces already found (:class:`DetectionSchedule`:
            default-size search on key frames and whenever a face could be lost); ``False`` searches every frame at
            the detector's default size.
        on_crop: called with ``(frame_index, detection, crop)`` as soon as a face is cropped, before tracking (the
            scanner starts scoring while later frames are still searched).
    """
    detections: list[tuple[int, list[DetectedFace]]] = []
    crops: dict[tuple[int, int], CropResult] = {}
    sizes: dict[int, tuple[int, int]] = {}
    kept: dict[int, np.ndarray] = {}
    detect = DetectionSchedule(detector).detect if schedule else detector.detect
    for index, rgb in prefetch(frames):  # the next frames decode while this one is searched
        faces = detect(rgb)
        detections.append((index, faces))
        sizes[index] = (rgb.shape[1], rgb.shape[0])
        for j, det in enumerate(faces):
            crops[(index, j)] = crop_face(rgb, det.box, size=size, margin=margin)
            if on_crop is not None:
                on_crop(index, det, crops[(index, j)])
        if keep is not None and keep(index):
            kept[index] = rgb
        if on_frame is not None:
            on_frame(len(detections))
    detector.finish_landmarks()  # fits sent elsewhere (dflab prepare's workers) come back before tracking uses them
    found: list[FaceCrop] = []
    events: list[Event] = []
    for index, labelled in track_faces(detections):
        if not labelled:
            events.append((index, "no_face", ""))
        order = sorted(range(len(labelled)), key=lambda j: labelled[j][0])
        for j in order:
            track_id, det = labelled[j]
            crop = crops[(index, j)]
            landmarks = transform_points(det.landmarks, crop.matrix)
            found.append(FaceCrop(index, track_id, det, crop, landmarks, sizes[index]))
    first = sizes[detections[0][0]] if detections else (0, 0)
    return FoundFaces(found, events, [i for i, _ in detections], kept, first)


def extract_faces(
    path: str | Path,
    sampling: Sampling,
    detector: FaceDetector,
    *,
    size: int = 256,
    margin: float = 1.3,
    schedule: bool = False,
    keep_partial: bool = False,
) -> tuple[list[FaceCrop], list[Event]]:
    """Every face of the sampled frames of a video or image, tracked and cropped (:func:`find_faces` on a file).

    With ``keep_partial``, a video that breaks after some frames decoded keeps the faces of those frames, and a
    ``(-1, "truncated", detail)`` event says where it broke (a break before the first frame still raises).

    Raises:
        MediaError: when the file cannot be decoded (see :func:`dflab.media.iter_frames`).

    Returns:
        ``(faces, events)``: faces ordered by (frame_index, track_id); one ``no_face`` event per frame without a face.
    """
    frames = iter_frames(path, count=sampling.count, stride=sampling.stride)
    broken: list[Event] = []
    if keep_partial:
        frames = _until_broken(frames, broken)
    found = find_faces(frames, detector, size=size, margin=margin, schedule=schedule)
    return found.faces, found.events + broken


def _until_broken(frames: Iterable[tuple[int, np.ndarray]], broken: list[Event]) -> Iterator[tuple[int, np.ndarray]]:
    """``frames`` up to a decoding error after the first one, which is noted in ``broken`` instead of raised."""
    last = None
    try:
        for index, rgb in frames:
            last = index
            yield index, rgb
    except MediaError as exc:
        if last is None:
            raise
        broken.append((-1, "truncated", f"{exc.cause}: {exc.detail}; last frame kept: {last}"))
