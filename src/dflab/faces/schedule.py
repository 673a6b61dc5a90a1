"""Detection size per sampled frame of a video, chosen from the size of the faces already found.

YuNet's cost grows with the pixels it is given (measured on this 2-core machine: 26 ms at 640 × 480, 45 ms at
960 × 540, 5–7 ms at 320 × 240), while the faces of most videos are far larger than the smallest face it can find.
:class:`DetectionSchedule` therefore searches a video's frames at the size where the smallest face followed so far
is :data:`FACE_PX` pixels wide, and falls back to the detector's full search whenever that could lose a face:

* **key frames** — the first sampled frame, every ``key_every``-th one, and any frame after one without a face get
  the detector's default search (up to 960 px, pad-and-retry), so a new small face is found at the next key frame;
* **retry** — a reduced search that finds fewer faces than the previous frame held is redone at the default size
  (a face that left the frame costs one retry; a face the small search missed is found);
* faces are never searched smaller than :data:`MIN_SIDE` pixels of frame side, nor larger than the default.

The 68 landmarks are fitted at full resolution either way; only the box that starts dlib's predictor comes from a
smaller image. Measured (docs/guide/faces_and_speed.md): with the smallest face at 48 px in the searched image the
68-point error against the iBUG ground truth of the dlib XMLs (faces upscaled × 3, 110–330 px) is 0.0310 of the eye
distance, against 0.0314 at the default size (40 px: 0.0321, 32 px: 0.0343), and recall stays 43/43.
Only YuNet is scheduled: dlib's HOG loses faces when downscaled, and ``--face-detector dlib`` is there to reproduce
the papers' preprocessing exactly, so it searches every frame at full size.
"""

from __future__ import annotations

import numpy as np

from dflab.faces.detect import DetectedFace, FaceDetector

#: width (px, dlib box) of the smallest followed face in the reduced search image
FACE_PX = 48
#: smallest longer side of a reduced search image
MIN_SIDE = 160
#: sampled frames between two default-size searches
KEY_EVERY = 8


class DetectionSchedule:
    """Detect the faces of a video's sampled frames, in order, searching at a size set by the faces found so far.

    Args:
        detector: the face detector; backends other than ``yunet`` search every frame at their default size.
        face_px: width of the smallest followed face in the reduced search image (:data:`FACE_PX`).
        key_every: default-size search every this many sampled frames (:data:`KEY_EVERY`; 1: every frame).
        min_side: smallest longer side of a reduced search image (:data:`MIN_SIDE`).

    Attributes:
        searches: ``(frame position, searched side or None for the default, faces found)`` per search, for tests and
            the benchmark.
    """

    def __init__(
        self,
        detector: FaceDetector,
        *,
        face_px: int = FACE_PX,
        key_every: int = KEY_EVERY,
        min_side: int = MIN_SIDE,
    ) -> None:
        if key_every < 1:
            raise ValueError(f"key_every must be >= 1, got {key_every}")
        self.detector = detector
        self.face_px = face_px
        self.key_every = key_every
        self.min_side = min_side
        self.enabled = detector.backend == "yunet" and key_every > 1
        self._pos = 0
        self._last: list[DetectedFace] = []
        self._side: int | None = None
        self.searches: list[tuple[int, int | None, int]] = []

    def _reduced_side(self, shape: tuple[int, ...]) -> int | None:
        """Longer side of the reduced search, or ``None`` when only the default search will do."""
        if not self.enabled or not self._last or self._pos % self.key_every == 0:
            return None
        default = self.detector.max_side or max(shape[:2])
        smallest = min(min(f.width, f.height) for f in self._last)
        need = max(self.min_side, max(shape[:2]) * self.face_px / max(smallest, 1.0))
        # a side that changes with every frame would build a new network each time (YuNet's input size is fixed
        # per network): keep the last side while it is large enough and not over 1.25× what is needed, else round
        # up to a multiple of 32 (YuNet's largest stride)
        if self._side is None or not need <= self._side <= 1.25 * need:
            self._side = -(-round(need) // 32) * 32
        return self._side if self._side < min(default, max(shape[:2])) else None

    def detect(self, rgb: np.ndarray) -> list[DetectedFace]:
        """Faces of the next sampled frame (call in frame order).

        Shape:
            rgb (H, W, 3) uint8; as :meth:`FaceDetector.detect`.
        """
        side = self._reduced_side(rgb.shape)
        faces: list[DetectedFace] = []
        if side is not None:
            faces = self.detector.detect(rgb, max_side=side, pad_retry=False)
            self.searches.append((self._pos, side, len(faces)))
        if side is None or len(faces) < len(self._last):
            faces = self.detector.detect(rgb)
            self.searches.append((self._pos, None, len(faces)))
        self._last = faces
        self._pos += 1
        return faces
