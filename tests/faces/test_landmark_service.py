"""68-point fits deferred to another thread or process (``dflab prepare``'s workers): the same points as inline."""

from __future__ import annotations

import multiprocessing

import cv2
import numpy as np
import pytest

from dflab.faces import FaceDetector
from dflab.faces.detect import intensity
from dflab.faces.landmark_service import LandmarkServer, LandmarkServiceError, connect


@pytest.fixture(scope="module")
def inline():
    return FaceDetector("yunet")


@pytest.fixture
def service():
    """A server thread and one client in this process (the queues work the same way within one process)."""
    server = LandmarkServer(FaceDetector("yunet"), 1, multiprocessing.get_context("fork"))
    client = connect(*server.client_args())
    server.start()
    yield client
    server.close()


def _tight(astronaut: np.ndarray, detector: FaceDetector) -> np.ndarray:
    """The face cut inside its box and upscaled: found only padded (as in tests/faces/test_faces.py)."""
    x0, y0, x1, y1 = detector.detect(astronaut)[0].box
    cx, cy, s = (x0 + x1) / 2, (y0 + y1) / 2, 0.7 * (x1 - x0)
    cut = astronaut[round(cy - s / 2) : round(cy + s / 2), round(cx - s / 2) : round(cx + s / 2)]
    return cv2.resize(cut, (512, 512), interpolation=cv2.INTER_CUBIC)


def _two_faces(astronaut: np.ndarray) -> np.ndarray:
    face = astronaut[:260, 120:330]
    canvas = np.full((300, 560, 3), 90, np.uint8)
    canvas[20:280, 30:240] = face
    canvas[20:280, 300:510] = face[:, ::-1]
    return canvas


def test_intensity_is_dlibs_and_gives_identical_points(inline, astronaut):
    rgb = astronaut.astype(np.int64)
    np.testing.assert_array_equal(intensity(astronaut), (rgb[..., 0] + rgb[..., 1] + rgb[..., 2]) // 3)
    face = inline.detect(astronaut)[0]
    np.testing.assert_array_equal(inline.landmarks(intensity(astronaut), face.box), face.landmarks)


def test_model_loads_on_first_fit_not_when_built(astronaut):
    detector = FaceDetector("yunet")
    assert detector._predictor is None and detector.config()["landmarks"]
    assert detector.landmarks(astronaut, (180, 60, 300, 180)).shape == (68, 2)
    assert detector._predictor is not None


@pytest.mark.parametrize("scene", ["one", "two", "tight"])
def test_deferred_fits_equal_inline_fits(inline, service, astronaut, scene):
    """Faces come back without landmarks; ``finish_landmarks`` fills in exactly the inline points, for several faces
    and for a tight crop found only in the padded image (fitted there, shifted back)."""
    image = {
        "one": astronaut,
        "two": _two_faces(astronaut),
        "tight": _tight(astronaut, inline),
    }[scene]
    if scene == "tight":
        assert inline.detect(image, pad_retry=False) == []
    want = inline.detect(image)
    assert want and all(f.landmarks.shape == (68, 2) for f in want)
    client = service
    deferred = FaceDetector("yunet")
    deferred.defer_landmarks(client)
    client.begin()
    got = deferred.detect(image)
    assert [f.box for f in got] == [f.box for f in want]
    assert all(f.landmarks.shape == (0, 2) for f in got)
    deferred.finish_landmarks()
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g.landmarks, w.landmarks)
    assert deferred._predictor is None  # the client never loaded the model; the server did


def test_late_answers_of_an_aborted_video_are_dropped(inline, service, astronaut):
    client = service
    deferred = FaceDetector("yunet")
    deferred.defer_landmarks(client)
    client.begin()
    aborted = deferred.detect(astronaut)  # its video raised before finish: never collected
    client.begin()
    kept = deferred.detect(_two_faces(astronaut))
    deferred.finish_landmarks()
    assert [f.landmarks.shape for f in aborted] == [(0, 2)]
    assert [f.landmarks.shape for f in kept] == [(68, 2), (68, 2)]


def test_a_worker_waits_for_answers_beyond_max_in_flight(inline, service, astronaut, monkeypatch):
    """At most MAX_IN_FLIGHT images wait for their points (a bound on what queues up while the model loads)."""
    from dflab.faces import landmark_service

    monkeypatch.setattr(landmark_service, "MAX_IN_FLIGHT", 2)
    client = service
    deferred = FaceDetector("yunet")
    deferred.defer_landmarks(client)
    client.begin()
    frames = [np.roll(astronaut, 8 * i, axis=1) for i in range(5)]
    got = []
    for frame in frames:
        got += deferred.detect(frame)
        assert len(client._pending) <= 2
    deferred.finish_landmarks()
    for g, frame in zip(got, frames, strict=True):
        np.testing.assert_array_equal(g.landmarks, inline.detect(frame)[0].landmarks)


def test_a_model_that_fails_to_load_is_an_error_in_the_worker_not_a_hang(tmp_path, astronaut):
    broken = FaceDetector("yunet")
    broken._predictor_path = str(tmp_path / "truncated.dat")
    (tmp_path / "truncated.dat").write_bytes(b"\0" * 64)
    server = LandmarkServer(broken, 1, multiprocessing.get_context("fork"))
    client = connect(*server.client_args())
    server.start()
    try:
        deferred = FaceDetector("yunet")
        deferred.defer_landmarks(client)
        client.begin()
        deferred.detect(astronaut)
        with pytest.raises(LandmarkServiceError, match="failed to load"):
            deferred.finish_landmarks()
    finally:
        server.close()


def test_a_detector_without_landmarks_ignores_the_sink(service, astronaut):
    client = service
    bare = FaceDetector("yunet", landmarks=False)
    bare.defer_landmarks(client)
    faces = bare.detect(astronaut)
    bare.finish_landmarks()
    assert [f.landmarks.shape for f in faces] == [(0, 2)]
