"""The detection schedule: reduced searches where faces are large, default searches on key frames and retries, and
the same faces as searching every frame at the default size."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from dflab.faces import DetectedFace, FaceDetector, box_iou, find_faces
from dflab.faces.schedule import DetectionSchedule
from dflab.media import iter_frames, write_video


class _Scripted:
    """A stand-in detector: faces per call, chosen by the searched size (``None`` = default)."""

    backend = "yunet"
    max_side = 960

    def __init__(self, default: int, reduced: int, width: float = 200.0) -> None:
        self.default, self.reduced, self.width = default, reduced, width
        self.calls: list[int | str | None] = []

    def _faces(self, n: int) -> list[DetectedFace]:
        return [
            DetectedFace((300.0 * i, 0.0, 300.0 * i + self.width, self.width), 0.9, np.zeros((68, 2))) for i in range(n)
        ]

    def detect(self, rgb, *, max_side="default", pad_retry=None):
        self.calls.append(None if max_side == "default" else max_side)
        return self._faces(self.default if max_side == "default" else self.reduced)


FRAME = np.zeros((1080, 1920, 3), np.uint8)


def test_key_frames_and_reduced_searches():
    det = _Scripted(default=2, reduced=2)
    sched = DetectionSchedule(det, key_every=4)
    for _ in range(9):
        assert len(sched.detect(FRAME)) == 2
    # 200 px faces in a 1920 px frame: the 48 px face needs a 461 px search, rounded up to 480
    assert det.calls == [None, 480, 480, 480, None, 480, 480, 480, None]


def test_a_reduced_search_that_loses_a_face_is_redone_at_the_default_size():
    det = _Scripted(default=3, reduced=2)
    sched = DetectionSchedule(det, key_every=8)
    counts = [len(sched.detect(FRAME)) for _ in range(3)]
    assert counts == [3, 3, 3]
    assert det.calls == [None, 480, None, 480, None]
    assert sched.searches == [(0, None, 3), (1, 480, 2), (1, None, 3), (2, 480, 2), (2, None, 3)]


def test_small_faces_and_other_backends_get_the_default_search():
    small = _Scripted(default=1, reduced=1, width=60.0)  # a 1920 px search would be needed: no reduction
    sched = DetectionSchedule(small)
    for _ in range(3):
        sched.detect(FRAME)
    assert small.calls == [None, None, None]
    hog = _Scripted(default=1, reduced=1)
    hog.backend = "dlib"
    sched = DetectionSchedule(hog)
    for _ in range(3):
        sched.detect(FRAME)
    assert hog.calls == [None, None, None]


def test_no_face_means_a_default_search_on_the_next_frame():
    det = _Scripted(default=0, reduced=0)
    sched = DetectionSchedule(det)
    for _ in range(3):
        sched.detect(FRAME)
    assert det.calls == [None, None, None]


def _two_face_video(tmp_path, astronaut) -> list[np.ndarray]:
    """A 640×480 video: a large face drifting right for 24 frames, a second one entering at frame 10."""
    big = cv2.resize(astronaut[:320, 60:380], (200, 200), interpolation=cv2.INTER_AREA)
    small = cv2.resize(astronaut[:320, 60:380], (120, 120), interpolation=cv2.INTER_AREA)
    frames = []
    for t in range(24):
        canvas = np.full((480, 640, 3), 90, np.uint8)
        canvas[60:260, 20 + 4 * t : 220 + 4 * t] = big
        if t >= 10:
            canvas[300:420, 480:600] = small
        frames.append(canvas)
    write_video(tmp_path / "two.mp4", frames, fps=25)
    return [rgb for _, rgb in iter_frames(tmp_path / "two.mp4")]


def _same_faces(a: list[list[DetectedFace]], b: list[list[DetectedFace]], iou: float) -> None:
    assert [len(x) for x in a] == [len(x) for x in b]
    for fa, fb in zip(a, b, strict=True):
        for x, y in zip(fa, fb, strict=True):
            assert box_iou(x.box, y.box) > iou
            iod = float(np.linalg.norm(y.landmarks[36] - y.landmarks[45]))
            assert float(np.linalg.norm(x.landmarks - y.landmarks, axis=1).mean()) < 0.05 * iod


def test_schedule_finds_the_faces_of_every_frame_search(tmp_path, astronaut):
    """Every face, from the frame it enters (between key frames, found by the reduced search or by its retry)."""
    frames = _two_face_video(tmp_path, astronaut)
    det = FaceDetector("yunet")
    sched = DetectionSchedule(det, key_every=8)
    got = [sched.detect(f) for f in frames]
    want = [det.detect(f) for f in frames]
    _same_faces(got, want, iou=0.8)
    assert [len(x) for x in got] == [1] * 10 + [2] * 14
    assert any(side is not None for _, side, _ in sched.searches)  # it did search smaller


def test_find_faces_with_the_schedule_gives_the_same_tracks(tmp_path, astronaut):
    frames = _two_face_video(tmp_path, astronaut)
    det = FaceDetector("yunet")
    a = find_faces(enumerate(frames), det, size=64, schedule=True)
    b = find_faces(enumerate(frames), det, size=64)
    assert [(f.frame_index, f.track_id) for f in a.faces] == [(f.frame_index, f.track_id) for f in b.faces]
    assert a.events == b.events == []


@pytest.mark.slow
@pytest.mark.parametrize(
    "video",
    [
        "multi_face/crowd_video.mp4",
        "ffpp/original_sequences/youtube/c23/videos/519.mp4",
        "ffpp/manipulated_sequences/NeuralTextures/c23/videos/004_982.mp4",
        "real_videos/liveportrait_d0.mp4",
    ],
)
def test_schedule_on_shared_videos_finds_every_face(shared_data, video):
    """On the crowd video (1080p, 4–8 faces of 24–50 px) and the three reference videos of the prepare benchmark,
    the scheduled search finds as many faces per frame as the default search of every frame, at the same places."""
    det = FaceDetector("yunet")
    frames = [rgb for _, rgb in iter_frames(shared_data / video, count=16)]
    sched = DetectionSchedule(det)
    got = [sched.detect(f) for f in frames]
    want = [det.detect(f) for f in frames]
    assert [len(x) for x in got] == [len(x) for x in want]
    for fa, fb in zip(got, want, strict=True):
        for x in fb:
            assert max(box_iou(x.box, y.box) for y in fa) > 0.7
