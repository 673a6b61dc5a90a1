"""The face path every media item takes (``dflab prepare`` and the scanner): decode → detect → track → crop."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dflab.faces.align import CropResult, crop_face, transform_points
from dflab.faces.detect import DetectedFace, FaceDetector
from dflab.faces.track import track_faces
from dflab.media import iter_frames


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


def detect_frames(
    frames: Iterator[tuple[int, np.ndarray]], detector: FaceDetector
) -> Iterator[tuple[int, np.ndarray, list[DetectedFace]]]:
    """Run the detector on each decoded frame."""
    for index, rgb in frames:
        yield index, rgb, detector.detect(rgb)


def extract_faces(
    path: str | Path,
    sampling: Sampling,
    detector: FaceDetector,
    *,
    size: int = 256,
    margin: float = 1.3,
) -> tuple[list[FaceCrop], list[Event]]:
    """Every face of the sampled frames of a video or image, tracked and cropped.

    Frames are held only until the video's tracking is done (sampled frames only, so 8–32 per video).

    Raises:
        MediaError: when the file cannot be decoded (see :func:`dflab.media.iter_frames`).

    Returns:
        ``(faces, events)``: faces ordered by (frame_index, track_id); one ``no_face`` event per frame without a face.
    """
    frames = iter_frames(path, count=sampling.count, stride=sampling.stride)
    kept: dict[int, np.ndarray] = {}
    detections: list[tuple[int, list[DetectedFace]]] = []
    for index, rgb, faces in detect_frames(frames, detector):
        detections.append((index, faces))
        if faces:
            kept[index] = rgb
    crops: list[FaceCrop] = []
    events: list[Event] = []
    for index, labelled in track_faces(detections):
        if not labelled:
            events.append((index, "no_face", ""))
            continue
        rgb = kept.pop(index)
        for track_id, det in sorted(labelled, key=lambda x: x[0]):
            crop = crop_face(rgb, det.box, size=size, margin=margin)
            crops.append(
                FaceCrop(
                    frame_index=index,
                    track_id=track_id,
                    det=det,
                    crop=crop,
                    landmarks=transform_points(det.landmarks, crop.matrix),
                    frame_size=(rgb.shape[1], rgb.shape[0]),
                )
            )
    return crops, events
