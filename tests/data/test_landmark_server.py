"""The 68-point landmark server of ``dflab prepare``: the points it fits for its clients equal the inline fit's."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import cv2
import numpy as np
import pytest

from dflab.data import landmark_server
from dflab.data.landmark_server import LandmarkServer, LandmarkServiceError, connect
from dflab.faces import FaceDetector
from dflab.faces.detect import intensity


@pytest.fixture(scope="module")
def inline():
    return FaceDetector("yunet")


@pytest.fixture(scope="module")
def server():
    s = LandmarkServer(n_clients=8)
    yield s
    s.close()


@pytest.fixture
def client(server):
    """A client in this process (a worker's view; the server is a process either way)."""
    return connect(*server.client_args())


def _deferred(client) -> FaceDetector:
    detector = FaceDetector("yunet")
    detector.defer_landmarks(client)
    client.begin()
    return detector


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
    assert not detector.landmarks68.loaded and detector.config()["landmarks"]
    assert detector.landmarks(astronaut, (180, 60, 300, 180)).shape == (68, 2)
    assert detector.landmarks68.loaded


@pytest.mark.parametrize("scene", ["one", "two", "tight"])
def test_served_fits_equal_inline_fits(inline, client, astronaut, scene):
    """Faces come back without landmarks; ``finish_landmarks`` fills in exactly the inline points, for several faces
    and for a tight crop found only in the padded image (fitted there, shifted back)."""
    image = {"one": astronaut, "two": _two_faces(astronaut), "tight": _tight(astronaut, inline)}[scene]
    if scene == "tight":
        assert inline.detect(image, pad_retry=False) == []
    want = inline.detect(image)
    assert want and all(f.landmarks.shape == (68, 2) for f in want)
    deferred = _deferred(client)
    got = deferred.detect(image)
    assert [f.box for f in got] == [f.box for f in want]
    assert all(f.landmarks.shape == (0, 2) for f in got)
    deferred.finish_landmarks()
    for g, w in zip(got, want, strict=True):
        assert g.landmarks.dtype == w.landmarks.dtype
        np.testing.assert_array_equal(g.landmarks, w.landmarks)
    assert not deferred.landmarks68.loaded  # the client never loaded the model; the server did


def test_late_answers_of_an_aborted_video_are_dropped(client, astronaut):
    deferred = _deferred(client)
    aborted = deferred.detect(astronaut)  # its video raised before finish: never collected
    client.begin()
    kept = deferred.detect(_two_faces(astronaut))
    deferred.finish_landmarks()
    assert [f.landmarks.shape for f in aborted] == [(0, 2)]
    assert [f.landmarks.shape for f in kept] == [(68, 2), (68, 2)]


def test_a_client_waits_for_answers_beyond_max_in_flight(inline, client, astronaut, monkeypatch):
    """At most MAX_IN_FLIGHT images wait for their points (a bound on what queues up while the model loads)."""
    monkeypatch.setattr(landmark_server, "MAX_IN_FLIGHT", 2)
    deferred = _deferred(client)
    frames = [np.roll(astronaut, 8 * i, axis=1) for i in range(5)]
    got = []
    for frame in frames:
        got += deferred.detect(frame)
        assert len(client._pending) <= 2
    deferred.finish_landmarks()
    for g, frame in zip(got, frames, strict=True):
        np.testing.assert_array_equal(g.landmarks, inline.detect(frame)[0].landmarks)


def test_a_model_that_fails_to_load_is_an_error_for_the_client_not_a_hang(tmp_path, astronaut):
    (tmp_path / "truncated.dat").write_bytes(b"\0" * 64)
    broken = LandmarkServer(n_clients=1, model=str(tmp_path / "truncated.dat"))
    try:
        deferred = _deferred(connect(*broken.client_args()))
        deferred.detect(astronaut)
        with pytest.raises(LandmarkServiceError, match="failed to load"):
            deferred.finish_landmarks()
    finally:
        broken.close()


def test_a_server_that_dies_is_an_error_for_the_client_not_a_hang(astronaut, monkeypatch):
    monkeypatch.setattr(landmark_server, "POLL_S", 0.05)
    doomed = LandmarkServer(n_clients=1)
    try:
        deferred = _deferred(connect(*doomed.client_args()))
        os.kill(doomed.pid, signal.SIGKILL)
        deferred.detect(astronaut)
        with pytest.raises(LandmarkServiceError, match="ended"):
            deferred.finish_landmarks()
    finally:
        doomed.close()


def test_more_clients_than_the_server_has_room_for_is_an_error():
    small = LandmarkServer(n_clients=1)
    try:
        connect(*small.client_args())
        with pytest.raises(LandmarkServiceError, match="more than 1"):
            connect(*small.client_args())
    finally:
        small.close()


def test_a_detector_without_landmarks_ignores_the_sink(client, astronaut):
    bare = FaceDetector("yunet", landmarks=False)
    bare.defer_landmarks(client)
    faces = bare.detect(astronaut)
    bare.finish_landmarks()
    assert [f.landmarks.shape for f in faces] == [(0, 2)]


def test_the_module_loads_without_numpy_so_a_server_can_start_before_the_imports():
    code = (
        "import sys\n"
        "from dflab.data import landmark_server\n"
        "assert not {'numpy', 'cv2', 'av', 'dlib'} & set(sys.modules), sorted(sys.modules)\n"
        "landmark_server.preload()\n"
        "server = landmark_server.take_preloaded()\n"
        "assert server is not None and landmark_server.take_preloaded() is None\n"
        "assert not {'numpy', 'cv2', 'av', 'dlib'} & set(sys.modules)\n"
        "server.close()\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_a_stopped_server_ends_by_itself(astronaut, inline):
    """``stop`` does not wait (``dflab prepare`` stops the server when the last video is in, so that it ends while the
    workers do): the server ends with exit code 0 without ``close``; a second ``stop`` sends nothing more."""
    own = LandmarkServer(n_clients=1)
    try:
        deferred = _deferred(connect(*own.client_args()))
        faces = deferred.detect(astronaut)
        deferred.finish_landmarks()
        np.testing.assert_array_equal(faces[0].landmarks, inline.detect(astronaut)[0].landmarks)
        own.stop()
        own.stop()
        own._process.join(timeout=30)
        assert own._process.exitcode == 0
        assert own.inbox.empty()
    finally:
        own.close()
