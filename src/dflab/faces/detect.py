"""Face detection and 68-point landmarks, with weights that ship inside installed packages (no download).

Backends (chosen by measurement, see docs/sections/foundation.md):

* ``dlib`` — dlib's HOG + linear SVM frontal detector and the iBUG 68-point shape predictor
  (``shape_predictor_68_face_landmarks.dat`` from ``face-recognition-models``): the landmark model the seed papers use
  (DADD/ADDG, LAE and LiSiam align with dlib's 68 points).
* ``dlib_cnn`` — dlib's MMOD CNN detector (``mmod_human_face_detector.dat``), same 68-point predictor: finds profile
  and small faces the HOG misses, ~100× slower on CPU.

``face-recognition-models`` imports ``pkg_resources`` (gone with setuptools ≥ 81), so its files are located with
:mod:`importlib.resources` instead of importing it.
"""

from __future__ import annotations

import importlib.resources
import importlib.util
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

N_LANDMARKS = 68
BACKENDS = ("dlib", "dlib_cnn")


@dataclass
class DetectedFace:
    """One detected face.

    Attributes:
        box: (x0, y0, x1, y1) detector box in image pixels (float).
        score: detector confidence (HOG SVM margin or CNN score; higher is surer).
        landmarks: (68, 2) float32 iBUG points in image pixels.
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


class FaceDetector:
    """Detect every face in an RGB image and fit 68 landmarks to each.

    Args:
        backend: ``"dlib"`` (HOG) or ``"dlib_cnn"`` (MMOD CNN).
        upsample: image upsamplings before detection (each doubles the side; HOG's smallest face is ~80 px, so one
            upsampling finds ~40 px faces). ``"auto"`` upsamples once when the (possibly downscaled) image's longer
            side is at most ``auto_upsample_below`` px.
        max_side: frames whose longer side exceeds this are downscaled for *detection* only (boxes are mapped back;
            landmarks are fitted at full resolution). ``None`` (default) keeps full resolution: on the 1080p crowd
            video, downscaling to 1280 px lost most faces (0–1 per frame against 2–3 at full resolution).
        min_score: detections below this HOG score are dropped (0.2: measured on the dlib XMLs, every true face
            but one scored ≥ 0.22 and every false one ≤ 0.17; see docs/sections/foundation.md).
        min_size: faces whose box is smaller than this many pixels (full resolution) are dropped.
    """

    def __init__(
        self,
        backend: str = "dlib",
        *,
        upsample: int | str = "auto",
        max_side: int | None = None,
        min_score: float = 0.2,
        min_size: int = 24,
        auto_upsample_below: int = 800,
    ) -> None:
        import dlib

        if backend not in BACKENDS:
            raise ValueError(f"unknown face backend {backend!r}; known: {', '.join(BACKENDS)}")
        if not (upsample == "auto" or (isinstance(upsample, int) and upsample >= 0)):
            raise ValueError(f"upsample must be 'auto' or an int >= 0, got {upsample!r}")
        self.backend = backend
        self.upsample = upsample
        self.max_side = max_side
        self.min_score = min_score
        self.min_size = min_size
        self.auto_upsample_below = auto_upsample_below
        if backend == "dlib":
            self._detector = dlib.get_frontal_face_detector()
        else:
            self._detector = dlib.cnn_face_detection_model_v1(str(model_file("mmod_human_face_detector.dat")))
        self._predictor = dlib.shape_predictor(str(model_file("shape_predictor_68_face_landmarks.dat")))
        self._dlib = dlib

    def config(self) -> dict[str, object]:
        """The settings, for manifests and checkpoint cards."""
        return {
            "backend": self.backend,
            "upsample": self.upsample,
            "max_side": self.max_side,
            "min_score": self.min_score,
            "min_size": self.min_size,
            "landmarks": "dlib shape_predictor_68_face_landmarks (iBUG 68)",
        }

    def _raw_detect(self, rgb: np.ndarray, upsample: int) -> list[tuple[tuple[float, float, float, float], float]]:
        if self.backend == "dlib":
            rects, scores, _ = self._detector.run(rgb, upsample, -1.0)
            boxes = [(r.left(), r.top(), r.right() + 1, r.bottom() + 1) for r in rects]
            return [(b, float(s)) for b, s in zip(boxes, scores, strict=True)]
        dets = self._detector(rgb, upsample)
        return [
            ((d.rect.left(), d.rect.top(), d.rect.right() + 1, d.rect.bottom() + 1), float(d.confidence)) for d in dets
        ]

    def detect(self, rgb: np.ndarray) -> list[DetectedFace]:
        """Detect all faces, sorted left to right.

        Shape:
            rgb (H, W, 3) uint8; each face's landmarks (68, 2) float32 in ``rgb`` pixels.
        """
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"expected (H, W, 3) uint8 RGB, got {rgb.shape} {rgb.dtype}")
        rgb = np.ascontiguousarray(rgb)
        h, w = rgb.shape[:2]
        scale = 1.0
        small = rgb
        if self.max_side is not None and max(h, w) > self.max_side:
            scale = self.max_side / max(h, w)
            small = cv2.resize(rgb, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
        up = self.upsample
        if up == "auto":
            up = 1 if max(small.shape[:2]) <= self.auto_upsample_below else 0
        faces = []
        for (x0, y0, x1, y1), score in self._raw_detect(small, int(up)):
            if score < self.min_score:
                continue
            box = (x0 / scale, y0 / scale, x1 / scale, y1 / scale)
            if min(box[2] - box[0], box[3] - box[1]) < self.min_size:
                continue
            faces.append(DetectedFace(box=box, score=score, landmarks=self.landmarks(rgb, box)))
        faces.sort(key=lambda f: (f.box[0], f.box[1]))
        return faces

    def landmarks(self, rgb: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
        """Fit the 68-point model inside a box.

        Shape:
            rgb (H, W, 3) uint8; returns (68, 2) float32 in image pixels.
        """
        x0, y0, x1, y1 = (round(v) for v in box)
        shape = self._predictor(np.ascontiguousarray(rgb), self._dlib.rectangle(x0, y0, x1 - 1, y1 - 1))
        return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)
