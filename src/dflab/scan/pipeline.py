"""The scanner: media → sampled frames → faces → tracks → calibrated P(fake) per face, track and file.

One function, :func:`scan_file`, does the work for the CLI (``dflab scan``), the demo and the web service, so the
three always agree. It is five named stages, each callable (and tested) alone:

1. :func:`sample_frames` — check the file, plan the sampled frames, decode them lazily (:mod:`dflab.media`); a
   video that breaks mid-stream keeps the frames decoded before the break (status ``partial``, with the cause);
2. :func:`find_scan_faces` — detection, crops and tracks through :func:`dflab.faces.find_faces`, the very code
   ``dflab prepare`` runs (default detector YuNet, ``ScanOptions.face_detector="dlib"`` for HOG), without the
   68-point landmarks (the scan's crops are box crops);
3. :func:`score_crops` — every crop of the file in batches through the detectors (plus test-time views of stills);
4. :func:`aggregate_tracks` / :func:`decisive_track` / :func:`verdict_of` / :func:`reason_of` — per track and file;
5. :func:`render` — heatmap overlays.

Checkpoints load only through :func:`dflab.models.checkpoint.load_detector` (safetensors + JSON card, nothing
unpickled).

Aggregation (documented in docs/sections/scan.md):

* faces of consecutive sampled frames are linked into tracks (:func:`dflab.faces.track_faces`: Hungarian matching
  on box IoU and landmark-centre distance);
* a track's score is the mean calibrated P(fake) of its faces, with a 95 % bootstrap confidence interval over its
  frames; for a still image the spread comes from test-time views (horizontal flip × three crop margins);
* a file's score is that of its most suspicious track among the tracks that last at least a quarter of the longest
  one (a face swap needs only one swapped face; very short tracks are mostly detector noise);
* verdict ``fake`` / ``real`` by the threshold, ``uncertain`` when the interval straddles it, ``no_face`` when no
  face was found, ``error`` when the media could not be used (with the :class:`~dflab.errors.MediaError` cause).

Calibration and verdicts (from the checkpoint card, fitted on held-out validation by scripts/train_default.py):
``calibration = {"method": "platt", "scale": a, "bias": b}`` gives P(fake) = sigmoid(a · (logit_fake − logit_real)
+ b) (Platt scaling; ``{"temperature": T}`` is the special case a = 1/T, b = 0) for each face; ``calibration.file``
turns a track's mean into the file's P(fake), fitted on held-out files at a prior of 1/2 (:func:`to_file_scale`), so
that its odds are the likelihood ratio of the evidence. ``verdict = {"real_below": lo,
"fake_at": hi}`` is the card's band: a file is ``fake`` at or above ``hi``, ``real`` below ``lo``, ``uncertain``
between, each verdict with its ``reason`` in words. Without a band (or with ``--threshold``), the rule is the
threshold ± margin, and an interval straddling the threshold is uncertain.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dflab.errors import CheckpointError, DflabError, MediaError, ScoreError
from dflab.models.spec import InputSpec

if TYPE_CHECKING:
    import torch

    from dflab.faces import FaceCrop, FaceDetector, FoundFaces
    from dflab.models.base import Detector
    from dflab.models.clip_runtime import ClipProbeRuntime

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"
DEFAULT_WEIGHTS = WEIGHTS_DIR / "default.safetensors"
IMAGE_MAX_PIXELS = 40_000_000  # a 8k × 5k still is fine; a PNG bomb (e.g. 30k × 30k) is refused unread
#: faces scored per track by default, evenly spaced: the default detector's validation scores files the same way
#: (scripts/train_default.py), where 6 faces gave the file AUC of 8 or 12 (0.856; 4: 0.852), and CLIP costs
#: ~0.11 s of CPU per face
FACES_PER_TRACK = 6
#: the sampled frames of a video are held in memory while faces are found when they fit in this many bytes, so the
#: report's key frames and thumbnails need no second decoding (~1 s of a 1080p clip); larger videos decode them again
KEEP_FRAMES_BYTES = 256 << 20
#: decoded frames (bytes) that may wait for the face detector (10 frames of 1080p)
DECODE_AHEAD_BYTES = 64 << 20

ProgressFn = Callable[[float, str], None]


class ScanTimeoutError(DflabError):
    """A scan ran past its deadline (the web service's per-job timeout)."""


@dataclass
class ScanOptions:
    """What to sample and how to decide.

    Attributes:
        every: score every K-th frame; ``None`` spreads ``max_frames`` samples evenly over the video.
        max_frames: upper bound on sampled frames per video.
        batch_size: crops per forward pass.
        threshold: P(fake) at or above which a file is called fake; ``None`` = the detector card's verdict band
            (``verdict.real_below`` / ``verdict.fake_at``, chosen on held-out validation), else 0.5.
        margin: with a threshold, calibrated scores within ``threshold ± margin`` are called ``uncertain``: a
            calibrated detector that is unsure says so with scores near the threshold; ``None`` = 0.05.
        overlays: number of frames per file that get a heatmap overlay in the report (0 = none).
        tta: score still images under test-time views (flip × margins) to get a confidence interval.
        max_duration_s: refuse videos longer than this (``None`` = no limit).
        max_pixels: refuse images/frames with more pixels than this (decompression bombs).
        overlay_video: also keep every sampled frame's overlay, for an overlay video.
        seed: seed of the bootstrap.
        face_detector: face detection backend (``None``: :data:`dflab.faces.DEFAULT_BACKEND`, YuNet).
        faces_per_track: at most this many faces of each track are scored, evenly spaced over the track (the overlay
            frames' faces among them); ``None`` or 0 scores every face. Every face is still detected and tracked;
            the record says how many were scored (``n_scored``, per track and per file).
    """

    every: int | None = None
    max_frames: int = 32
    batch_size: int = 16
    threshold: float | None = None
    margin: float | None = None
    overlays: int = 4
    tta: bool = True
    max_duration_s: float | None = None
    max_pixels: int = IMAGE_MAX_PIXELS
    overlay_video: bool = False
    seed: int = 0
    face_detector: str | None = None
    faces_per_track: int | None = FACES_PER_TRACK


# ----------------------------------------------------------------------------------------------------------------
# detectors


@dataclass
class Scorer:
    """A loaded detector plus its preprocessing and calibration.

    Attributes:
        model: the detector in eval mode: a torch :class:`~dflab.models.base.Detector`, or an array runtime (numpy
            in, numpy out; ``array_io = True``) such as :class:`~dflab.models.clip_runtime.ClipProbeRuntime`, which
            the default detector runs on so that a scan never imports torch.
        spec: its input contract (crop size, margin, mean, std).
        card: the checkpoint card (``{}`` for an in-memory model).
        temperature: logits are divided by this before the softmax (1 = uncalibrated); Platt's ``scale`` = 1/T.
        name: short label used in reports.
        scale, bias: Platt calibration, P(fake) = sigmoid(scale · (logit_fake − logit_real) + bias).
        platt_by_kind: the card's Platt fits per media kind (``{"image": (scale, bias), "video": ...}``), used in
            preference to ``scale``/``bias`` for a file of that kind: still and video scores are distributed
            differently, and one fit for both makes a P(fake) of one kind mean something else for the other.
        band: the card's verdict band ``(real_below, fake_at)``, or ``None``.
        bands_by_kind: the card's bands per media kind (``{"image": (lo, hi), "video": (lo, hi)}``), used in
            preference to ``band`` for a file of that kind.
        file_platt, file_platt_by_kind: the card's file-level calibration (``calibration.file``, overall and per
            kind): a track's score, the mean P(fake) of its faces, becomes the file's P(fake) through
            :func:`~dflab.eval.calibration.file_calibrate`; ``None`` / empty: the mean is reported as it is.
    """

    model: Detector | ClipProbeRuntime
    spec: InputSpec
    card: dict[str, Any] = field(default_factory=dict)
    temperature: float = 1.0
    name: str = "detector"
    scale: float = 1.0
    bias: float = 0.0
    band: tuple[float, float] | None = None
    bands_by_kind: dict[str, tuple[float, float]] = field(default_factory=dict)
    platt_by_kind: dict[str, tuple[float, float]] = field(default_factory=dict)
    file_platt: tuple[float, float] | None = None
    file_platt_by_kind: dict[str, tuple[float, float]] = field(default_factory=dict)
    _cam_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _cam_layer: Any = field(default=None, repr=False)

    @property
    def array_io(self) -> bool:
        """Whether the model takes and returns numpy arrays (no torch)."""
        return bool(getattr(self.model, "array_io", False))

    @property
    def maps_in_forward(self) -> bool:
        """Whether the maps come out of the scoring pass itself (the detector's own maps, no gradient), so that
        maps cost nothing beyond the scores and need no separate pass."""
        if not getattr(self.model, "gradcam", True):
            return True
        from dflab.models.base import Detector

        return type(self.model).explain_maps is not Detector.explain_maps

    def to_array(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        """The crops as the detector takes them (:meth:`InputSpec.to_input`).

        Shape:
            crops: N × (C, C, 3) uint8 (C = ``spec.crop_px``); returns (N, 3, S, S) float32 with S = ``spec.size``.
        """
        return self.spec.to_input(crops)

    def to_tensor(self, crops: Sequence[np.ndarray]) -> torch.Tensor:
        """:meth:`to_array` as a torch tensor. Shape: as :meth:`to_array`."""
        import torch

        return torch.from_numpy(self.to_array(crops))

    def platt(self, kind: str | None = None) -> tuple[float, float]:
        """(scale, bias) of the calibration for a file of media ``kind`` (its own fit when the card has one)."""
        if kind in self.platt_by_kind:
            return self.platt_by_kind[kind]
        return self.scale / self.temperature, self.bias

    def file_fit(self, kind: str | None = None) -> tuple[float, float] | None:
        """(scale, bias) of the file-level calibration for a file of media ``kind``, or ``None`` (none in the card)."""
        return self.file_platt_by_kind.get(kind or "", self.file_platt)

    def probs(self, outputs: dict[str, torch.Tensor], kind: str | None = None) -> torch.Tensor:
        """Calibrated P(fake), (B,), of a torch detector's outputs for a file of media ``kind``."""
        scale, bias = self.platt(kind)
        if scale == 1.0 and bias == 0.0:
            return self.model.score(outputs).float()
        import torch

        logits = outputs["logits"].float()
        return torch.sigmoid(scale * (logits[:, 1] - logits[:, 0]) + bias)

    def array_probs(self, logits: np.ndarray, kind: str | None = None) -> np.ndarray:
        """Calibrated P(fake), (B,), from (B, 2) logits (an array runtime's; softmax when uncalibrated)."""
        scale, bias = self.platt(kind)
        z = scale * (logits[:, 1].astype(np.float64) - logits[:, 0]) + bias
        return (1.0 / (1.0 + np.exp(-z))).astype(np.float32)

    def score(
        self, crops: Sequence[np.ndarray], *, maps: bool = False, kind: str | None = None
    ) -> tuple[np.ndarray, list[np.ndarray] | None]:
        """Score a batch of crops of a file of media ``kind`` (``image``/``video``: the card's calibration for that
        kind; ``None``: the overall one); optionally return one localisation map per crop.

        Maps are the detector's own ``explain_maps`` (predicted masks, CAM attention, CLIP patch evidence) when it
        has them, else Grad-CAM of the fake class on the last convolution feeding the logits
        (:mod:`dflab.explain.gradcam`).

        Shape:
            crops: N × (C, C, 3) uint8; returns scores (N,) float32 and maps N × (C, C) float32 in [0, 1], in crop
            pixels.
        """
        px = crops[0].shape[0] if len(crops) else self.spec.crop_px
        if self.array_io:
            outputs = self.model(self.to_array(crops))
            scores = self.array_probs(outputs["logits"], kind)
            own = self.model.explain_maps(outputs) if maps else {}
        else:
            import torch

            x = self.to_tensor(crops)
            with torch.inference_mode():
                outputs = self.model(x)
                scores = self.probs(outputs, kind).numpy().astype(np.float32)
                own = {k: v.float().numpy() for k, v in self.model.explain_maps(outputs).items()} if maps else {}
        if not maps:
            return scores, None
        if own:
            return scores, crop_maps(own, px)
        if not getattr(self.model, "gradcam", True):  # no gradient reaches the image (a frozen encoder outside torch)
            return scores, None
        import cv2

        from dflab.explain.gradcam import cam_layer_of, gradcam

        x = self.to_tensor(crops)
        with self._cam_lock:  # Grad-CAM hooks the shared model: one batch at a time
            if self._cam_layer is None:
                self._cam_layer = cam_layer_of(self.model, x[:1])
            cams = gradcam(self.model, x, layer=self._cam_layer)
        return scores, [_norm01(c if c.shape[0] == px else cv2.resize(c, (px, px))) for c in cams]


def crop_maps(own: dict[str, np.ndarray], size: int) -> list[np.ndarray]:
    """One map per crop from a detector's named maps: the predicted mask when there is one, else the union (max) of
    the named maps, resized (bilinear, half-pixel centres as torch's ``align_corners=False``) to the crop and
    scaled to [0, 1].

    Shape:
        own: name -> (B, h, w) or (B, C, h, w) (channel 0 used); returns B × (size, size) float32.
    """
    import cv2

    parts = [own["mask"]] if "mask" in own else list(own.values())
    m = np.stack([p[:, 0] if p.ndim == 4 else p for p in parts]).astype(np.float32).max(axis=0)
    return [_norm01(cv2.resize(a, (size, size), interpolation=cv2.INTER_LINEAR)) for a in m]


def _norm01(a: np.ndarray) -> np.ndarray:
    a = a.astype(np.float32)
    lo, hi = float(a.min()), float(a.max())
    return np.zeros_like(a) if hi - lo < 1e-8 else (a - lo) / (hi - lo)


def scorer_from_model(
    model: Detector | ClipProbeRuntime, card: dict[str, Any] | None = None, name: str | None = None
) -> Scorer:
    """Wrap an in-memory detector (tests, freshly trained models) or an array runtime."""
    card = card or {}
    cal = card.get("calibration", {})
    temp = float(cal.get("temperature", 1.0))
    scale, bias = (float(cal["scale"]), float(cal["bias"])) if cal.get("method") == "platt" else (1.0, 0.0)
    platt_by_kind = {k: (float(f["scale"]), float(f["bias"])) for k, f in (cal.get("by_kind") or {}).items()}
    fc = cal.get("file") or {}
    file_platt = (float(fc["scale"]), float(fc["bias"])) if "scale" in fc and "bias" in fc else None
    file_by_kind = {k: (float(f["scale"]), float(f["bias"])) for k, f in (fc.get("by_kind") or {}).items()}
    v = card.get("verdict") or {}
    band = (float(v["real_below"]), float(v["fake_at"])) if "real_below" in v and "fake_at" in v else None
    by_kind = {k: (float(b["real_below"]), float(b["fake_at"])) for k, b in (v.get("by_kind") or {}).items()}
    label = name or card.get("name") or model.config().get("variant") or type(model).__name__
    if hasattr(model, "eval"):
        model = model.eval()
    return Scorer(
        model,
        model.input_spec,
        card,
        temp,
        str(label),
        scale=scale,
        bias=bias,
        band=band,
        bands_by_kind=by_kind,
        platt_by_kind=platt_by_kind,
        file_platt=file_platt,
        file_platt_by_kind=file_by_kind,
    )


def load_scorer(detector: str | Path | None = None, *, runtime: str = "auto") -> Scorer:
    """Load a detector for scanning.

    Args:
        detector: a checkpoint (``.safetensors`` file or a directory holding one with its card), ``"default"``/
            ``None`` for the weights shipped in ``dflab/weights``. Registered names without weights are refused:
            an untrained model's scores would mean nothing.
        runtime: ``"auto"`` runs a ``clip_probe`` checkpoint that :mod:`dflab.models.clip_runtime` reproduces on
            ONNX Runtime + numpy (no torch import: ~3 s less start-up) and every other detector in torch;
            ``"torch"`` always loads the torch detector.

    Raises:
        CheckpointError: no such checkpoint, or no default weights in this install.
    """
    if detector in (None, "default"):
        path = DEFAULT_WEIGHTS
        if not path.exists():
            raise CheckpointError(
                f"no default weights at {path}; train them with scripts/train_default.py or pass --detector CKPT"
            )
    else:
        path = Path(detector)
        if not path.exists():
            raise CheckpointError(f"{path}: no such checkpoint (pass a .safetensors file or its directory)")
    if runtime not in ("auto", "torch"):
        raise ValueError(f"runtime must be 'auto' or 'torch', got {runtime!r}")
    from dflab.models import clip_runtime
    from dflab.models.checkpoint import read_card

    card = read_card(path)
    if runtime == "auto" and clip_runtime.supports(card):
        model, _, card = clip_runtime.load_runtime(path, card)
    else:
        from dflab.models.checkpoint import load_detector

        loaded = load_detector(path)
        model, card = loaded.model, loaded.card
    name = card.get("name") or Path(path).stem
    return scorer_from_model(model, card, name=str(name))


# ----------------------------------------------------------------------------------------------------------------
# stage 1: sample frames


def _read_still(path: Path, opts: ScanOptions) -> np.ndarray:
    """dflab.media's reader: EXIF, 16-bit, RGBA, grey → RGB uint8; refuses bombs from the header (``too_large``)."""
    from dflab import media

    return media.read_image(path, max_pixels=opts.max_pixels)


def sample_plan(n_frames: int, opts: ScanOptions) -> list[int]:
    """Frame indices to score: every ``every``-th frame (at most ``max_frames``), else ``max_frames`` spread evenly."""
    from dflab.media import sample_indices

    if opts.every:
        return list(range(0, max(n_frames, 1), max(1, int(opts.every))))[: opts.max_frames]
    return sample_indices(max(n_frames, 1), count=opts.max_frames) or [0]


@dataclass
class FrameSource:
    """The frames a scan samples, decoded lazily: iterate it for ``(frame_index, rgb)``.

    A video that breaks after some frames decoded ends the iteration early instead of raising: ``broken`` then holds
    the cause and the frames before the break are scored (status ``partial``). A break before the first frame
    still raises, as an unusable file.

    Attributes:
        kind: ``"image"`` or ``"video"``.
        fps: frames per second (0 for an image).
        n_frames: frames in the file (from its header).
        planned: the frame indices sampled.
        broken: the error that stopped decoding mid-stream, if any.
        frame_size: (width, height) from the header (``(0, 0)`` when unknown).
    """

    kind: str
    fps: float
    n_frames: int
    planned: list[int]
    frames: Iterator[tuple[int, np.ndarray]] = field(repr=False)
    broken: MediaError | None = None
    frame_size: tuple[int, int] = (0, 0)

    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
        n = 0
        try:
            for item in self.frames:
                n += 1
                yield item
        except MediaError as exc:
            if n == 0:
                raise
            self.broken = exc


def sample_frames(path: Path, opts: ScanOptions) -> FrameSource:
    """Stage 1: check the file and plan which frames to decode (images: the one frame).

    Raises:
        MediaError: missing, empty, unsupported, too large or too long.
    """
    from dflab import media
    from dflab.media.files import missing_error

    if not path.exists():
        raise missing_error(path)
    if path.stat().st_size == 0:
        raise MediaError(path, "zero_bytes")
    if media.sniff(path) == "image":
        return FrameSource("image", 0.0, 1, [0], iter([(0, _read_still(path, opts))]))
    info = media.probe(path)
    if info.width * info.height > opts.max_pixels:
        raise MediaError(path, "too_large", f"{info.width}x{info.height} frames")
    if opts.max_duration_s is not None and info.duration and info.duration > opts.max_duration_s:
        raise MediaError(path, "too_large", f"{info.duration:.1f} s > limit {opts.max_duration_s:.0f} s")
    planned = sample_plan(int(info.n_frames or 0), opts)
    frames = media.iter_frames(path, indices=planned)
    size = (int(info.width or 0), int(info.height or 0))
    return FrameSource("video", float(info.fps or 25.0), int(info.n_frames or 0), planned, frames, frame_size=size)


# ----------------------------------------------------------------------------------------------------------------
# stage 2: faces and tracks (dflab.faces, the prepare path's code)


_LOCAL = threading.local()  # detectors hold per-call state (dlib, YuNet's input size): one per thread and backend


def face_detector(backend: str | None = None) -> FaceDetector:
    """This thread's :class:`dflab.faces.FaceDetector` for ``backend`` (default: :data:`dflab.faces.DEFAULT_BACKEND`).

    The backend's own detection size applies (YuNet: frames downscaled to 960 px for detection); boxes and crops use
    the full frame. No 68-point landmarks are fitted: the scan's crops are box crops.
    """
    from dflab.faces import DEFAULT_BACKEND, FaceDetector

    backend = backend or DEFAULT_BACKEND
    cache = getattr(_LOCAL, "detectors", None)
    if cache is None:
        cache = _LOCAL.detectors = {}
    if backend not in cache:
        # the scan crops boxes and tracks box centres: dlib's 68-point model (0.5–1 s of CPU to load) is not needed
        cache[backend] = FaceDetector(backend, landmarks=False)
    return cache[backend]


#: a face's identity before tracking: (frame index, detection box)
FaceKey = tuple[int, tuple[float, ...]]


def face_key(frame_index: int, box: Sequence[float]) -> FaceKey:
    """A face's :data:`FaceKey` (early scoring keys a face by it before it has a track)."""
    return (int(frame_index), tuple(float(v) for v in box))


@dataclass
class ScanFace:
    """A face found by the scan: the shared :class:`~dflab.faces.FaceCrop` plus what the scan adds to it.

    Attributes:
        face: frame index, track id, detection (box, score; no landmarks) and crop (image, box, frame→crop matrix).
        time_s: timestamp of its frame.
        score: calibrated P(fake) (mean over detectors, and over views for a still); NaN when not scored.
        heat: localisation map in crop pixels (overlay frames' faces; every scored face when the detector's maps
            come free with its scores).
        scored: whether the face was scored (see ``ScanOptions.faces_per_track``).
    """

    face: FaceCrop
    time_s: float
    score: float = float("nan")
    heat: np.ndarray | None = None
    scored: bool = False

    @property
    def frame_index(self) -> int:
        return self.face.frame_index

    @property
    def track_id(self) -> int:
        return self.face.track_id

    @property
    def det_box(self) -> tuple[float, float, float, float]:
        return self.face.det.box

    @property
    def matrix(self) -> np.ndarray:
        return self.face.crop.matrix

    @property
    def key(self) -> FaceKey:
        return face_key(self.frame_index, self.det_box)


def find_scan_faces(
    source: FrameSource,
    spec: InputSpec,
    opts: ScanOptions,
    keep: set[int],
    on_frame: Callable[[int], None] | None = None,
    on_crop: Callable[[int, Any, Any], None] | None = None,
) -> tuple[FoundFaces, list[ScanFace]]:
    """Stage 2: detect, crop (the detector's input contract) and track every face of the sampled frames.

    Frames in ``keep`` (overlays; a still's one frame, for its test-time views) are held for later stages; so is
    every sampled frame when they all fit in :data:`KEEP_FRAMES_BYTES` (the report then shows its key frames and
    thumbnails without decoding the video again). ``on_crop`` sees each face as soon as it is cropped
    (:class:`EarlyScoring`).
    """
    from dflab.faces import find_faces, one_opencv_thread
    from dflab.media.prefetch import prefetch

    keep_all = source.kind == "image" or opts.overlay_video or _frames_fit(source)
    # decoding starts before the face detector is built and runs up to DECODE_AHEAD_BYTES of frames ahead, so the
    # other core is not left idle
    w, h = source.frame_size
    ahead = prefetch(source, depth=max(2, min(16, DECODE_AHEAD_BYTES // max(1, w * h * 3))))
    first = next(ahead, None)  # starts the decoding thread now (a generator runs at its first item)
    frames = itertools.chain([] if first is None else [first], ahead)
    # one OpenCV thread while faces are searched (the decoding thread holds the other core); the detection schedule
    # searches each frame at the size its faces need, with full-size searches on key frames (the faces benchmark
    # guards it)
    try:
        with one_opencv_thread():
            found = find_faces(
                frames,
                face_detector(opts.face_detector),
                size=spec.crop_px,
                margin=spec.margin,
                keep=lambda i: keep_all or i in keep,
                on_frame=on_frame,
                schedule=source.kind == "video",
                on_crop=on_crop,
            )
    finally:
        ahead.close()  # a scan stopped early (deadline, error) stops its decoding thread now
    fps = source.fps
    return found, [ScanFace(f, f.frame_index / fps if fps else 0.0) for f in found.faces]


def _frames_fit(source: FrameSource) -> bool:
    w, h = source.frame_size
    return 0 < len(source.planned) * w * h * 3 <= KEEP_FRAMES_BYTES


def spread_picks(frames: Sequence[int], per_track: int, prefer: set[int] = frozenset()) -> list[int]:
    """Positions (into ``frames``, a track's frame indices in order) of the ``per_track`` faces to score.

    The picks are ``per_track`` positions spread evenly from the first frame to the last; a frame in ``prefer`` (the
    report's overlay frames) then takes the place of the nearest pick not already preferred, so that overlays show
    scored faces. Fewer frames than ``per_track``: all of them.
    """
    if len(frames) <= per_track:
        return list(range(len(frames)))
    picks = sorted({round(float(x)) for x in np.linspace(0, len(frames) - 1, num=per_track)})
    fixed: set[int] = set()
    for pos in (p for p, i in enumerate(frames) if i in prefer):
        if pos in picks:
            fixed.add(pos)
            continue
        free = [p for p in picks if p not in fixed]
        if not free:
            break
        nearest = min(free, key=lambda p: abs(p - pos))
        picks[picks.index(nearest)] = pos
        fixed.add(pos)
    return sorted(picks)


def select_faces(faces: Sequence[ScanFace], per_track: int | None, prefer: set[int] = frozenset()) -> list[int]:
    """Indices (into ``faces``) of the faces to score: at most ``per_track`` of each track, evenly spaced over it
    with the overlay frames (``prefer``) among them (:func:`spread_picks`). ``None`` or 0 keeps every face."""
    if not per_track or per_track <= 0:
        return list(range(len(faces)))
    by_track: dict[int, list[int]] = {}
    for i, f in enumerate(faces):
        by_track.setdefault(f.track_id, []).append(i)
    chosen: list[int] = []
    for members in by_track.values():
        members = sorted(members, key=lambda i: faces[i].frame_index)
        chosen += [members[p] for p in spread_picks([faces[i].frame_index for i in members], per_track, prefer)]
    return sorted(chosen)


# ----------------------------------------------------------------------------------------------------------------
# stage 3: score


def score_crops(
    crops: Sequence[np.ndarray],
    scorers: Sequence[Scorer],
    *,
    batch_size: int = 16,
    maps: Sequence[bool] | None = None,
    check: Callable[[], None] | None = None,
    on_batch: Callable[[int], None] | None = None,
    kind: str | None = None,
) -> tuple[np.ndarray, list[np.ndarray | None]]:
    """Score crops of a file of media ``kind`` in batches of ``batch_size`` (every face of a file together,
    whatever its frame or track).

    The file's score is the mean of the detectors' calibrated probabilities (the ensemble). Maps come from the
    first detector, for the crops flagged in ``maps``. When its maps come out of the scoring pass
    (:attr:`Scorer.maps_in_forward`: CLIP patch evidence, predicted masks) they are taken from that pass for every
    crop whenever ``maps`` is given (``heats`` then has maps beyond the flagged crops: the report's key frames are
    chosen after scoring, and their faces' maps are then already there instead of costing a second pass);
    otherwise Grad-CAM needs a backward pass, so it runs in a separate pass over the flagged crops alone (not every
    face batched with them), which keeps it cheap. The overlay faces are thus encoded once, not twice.

    Shape:
        crops: N × (S, S, 3) uint8; returns scores (N,) float32 and N maps (S, S) or ``None``.
    """
    scores = np.zeros(len(crops), np.float32)
    heats: list[np.ndarray | None] = [None] * len(crops)
    flags = list(maps or [False] * len(crops))
    inline = bool(scorers) and getattr(scorers[0], "maps_in_forward", False)
    for start in range(0, len(crops), batch_size):
        if check is not None:
            check()
        stop = min(len(crops), start + batch_size)
        chunk = list(crops[start:stop])
        got = []
        for k, sc in enumerate(scorers):
            s, m = sc.score(chunk, maps=k == 0 and inline and maps is not None, kind=kind)
            got.append(s)
            heats[start:stop] = m if m is not None else heats[start:stop]
        scores[start:stop] = np.mean(got, axis=0)
        if on_batch is not None:
            on_batch(stop)
    wanted = [] if inline else [i for i, w in enumerate(flags) if w]
    for start in range(0, len(wanted), batch_size):
        if check is not None:
            check()
        idx = wanted[start : start + batch_size]
        _, got_maps = scorers[0].score([crops[i] for i in idx], maps=True, kind=kind)
        if got_maps is None:  # the detector has no localisation map
            continue
        for i, m in zip(idx, got_maps, strict=True):
            heats[i] = m
    return scores, heats


class EarlyScoring:
    """Stage 3 begun during stage 2: faces scored in a background thread as soon as they are cropped.

    The faces of ``frames`` are queued by :meth:`offer` (the ``on_crop`` hook of :func:`dflab.faces.find_faces`) and
    scored in batches of at most ``batch_size`` (whatever is waiting) by one thread, while the next frames are
    decoded and searched: ONNX Runtime and torch release the GIL while they run, so on two cores the detector's
    pass overlaps decoding and YuNet instead of following them. The scan's choice of faces is unchanged: after
    tracking, :func:`select_faces` picks the faces to score, those scored early keep their score, the others are
    scored then, and an early score of a face not picked is dropped (the per-track budget stays exact). ``frames``
    are therefore the frames a track followed through the whole video would have picked (:func:`early_frames`).

    Args:
        scorers: the detectors.
        frames: frame indices whose faces are scored early.
        maps: frame indices whose faces also get a localisation map (the overlay frames).
        batch_size: largest batch per forward pass.
        kind: the file's media kind (its calibration).
        check: called before each batch (the scan's deadline); what it raises stops the scoring and is raised by
            :meth:`take`.
    """

    def __init__(
        self,
        scorers: Sequence[Scorer],
        frames: set[int],
        maps: set[int],
        batch_size: int,
        kind: str | None = None,
        check: Callable[[], None] | None = None,
    ) -> None:
        import queue

        self.scorers, self.frames, self.maps, self.batch_size = list(scorers), set(frames), set(maps), batch_size
        self.kind, self.check = kind, check
        self._queue: queue.Queue[tuple[FaceKey, np.ndarray, bool] | None] = queue.Queue()
        self._done: dict[FaceKey, tuple[float, np.ndarray | None]] = {}
        self._error: BaseException | None = None
        self._cancelled = False
        self._thread = threading.Thread(target=self._run, name="dflab-early-scoring", daemon=True)
        self._thread.start()

    def offer(self, index: int, det: Any, crop: Any) -> None:
        """Queue a just-cropped face when its frame is one of ``frames``."""
        if index in self.frames:
            self._queue.put((face_key(index, det.box), crop.image, index in self.maps))

    def _run(self) -> None:
        import queue

        while True:
            item = self._queue.get()
            batch = []
            while item is not None:
                batch.append(item)
                if len(batch) == self.batch_size:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            if batch and not self._cancelled and self._error is None:
                try:
                    if self.check is not None:
                        self.check()
                    scores, heats = score_crops(
                        [c for _, c, _ in batch],
                        self.scorers,
                        batch_size=self.batch_size,
                        maps=[m for *_, m in batch],
                        kind=self.kind,
                    )
                except Exception as exc:  # noqa: BLE001 -- re-raised in the scan's thread by take()
                    self._error = exc
                else:
                    for (key, _, _), s, h in zip(batch, scores, heats, strict=True):
                        self._done[key] = (float(s), h)
            if item is None:
                return

    def take(self) -> dict[FaceKey, tuple[float, np.ndarray | None]]:
        """Wait for every queued face; their (P(fake), map) by ``(frame index, detection box)``.

        Raises:
            Exception: the error a detector raised in the background thread, re-raised here.
        """
        self._queue.put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._done

    def cancel(self) -> None:
        """Drop what is queued and stop the thread (a scan that failed or ran out of time)."""
        if self._thread.is_alive():
            self._cancelled = True
            self._queue.put(None)
            self._thread.join()


def early_frames(planned: Sequence[int], per_track: int | None, prefer: set[int]) -> set[int]:
    """The frames whose faces :class:`EarlyScoring` scores: the picks of :func:`spread_picks` for a track present
    in every planned frame (every planned frame when all faces are scored)."""
    if not per_track or per_track <= 0:
        return set(planned)
    return {planned[p] for p in spread_picks(planned, per_track, prefer)}


def still_views(rgb: np.ndarray, face: FaceCrop, spec: InputSpec) -> list[np.ndarray]:
    """Test-time views of a still's face: horizontal flip × crop margins (spec margin − 0.1, itself, + 0.1)."""
    from dflab.faces import crop_face

    views = []
    for m in (spec.margin - 0.1, spec.margin, spec.margin + 0.1):
        crop = crop_face(rgb, face.det.box, size=spec.crop_px, margin=m).image
        views += [crop, np.ascontiguousarray(crop[:, ::-1])]
    return views


# ----------------------------------------------------------------------------------------------------------------
# stage 4: aggregate per track and file


def bootstrap_ci(values: np.ndarray, rng: np.random.Generator, n: int = 1000, level: float = 0.95) -> list[float]:
    """Percentile bootstrap interval of the mean; a single value gives a zero-width interval."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) < 2:
        return [float(values.mean()), float(values.mean())]
    means = values[rng.integers(0, len(values), size=(n, len(values)))].mean(axis=1)
    a = (1 - level) / 2
    return [float(np.quantile(means, a)), float(np.quantile(means, 1 - a))]


def verdict_of(
    score: float, ci: Sequence[float], threshold: float, margin: float = 0.0, band: tuple[float, float] | None = None
) -> str:
    """``fake``/``real``/``uncertain``.

    With a ``band`` (real_below, fake_at) chosen on validation: ``fake`` at or above ``fake_at``, ``real`` below
    ``real_below``, ``uncertain`` between (the band already measures how far scores of this detector can be trusted,
    so the interval is not used). Without one: ``uncertain`` when the interval straddles the threshold or the score
    lies within ``margin`` of it.
    """
    if band is not None:
        lo, hi = band
        return "fake" if score >= hi else ("real" if score < lo else "uncertain")
    if ci[0] < threshold <= ci[1] and ci[1] - ci[0] > 0:
        return "uncertain"
    if abs(score - threshold) < margin:
        return "uncertain"
    return "fake" if score >= threshold else "real"


#: above this many faces in one frame, the reason says that one track of a crowd decides
MANY_FACES = 8
#: below this face size (pixels, the detector box's longer side) a verdict is not given, unless the card states its
#: own validated size (``verdict.min_face_px``): compression and upsampling erase or imitate the traces a detector
#: reads in smaller faces
MIN_FACE_PX = 40


def decide(top: dict[str, Any], tracks: list[dict[str, Any]], face_px: float, rule: dict[str, Any]) -> tuple[str, str]:
    """The file's verdict and its reason in words.

    Args:
        top: the decisive track (``score``, ``ci``).
        tracks: all tracks of the file.
        face_px: the decisive track's median face size (longer side of the detector box, pixels).
        rule: ``{"band": (lo, hi), "errors": ...}`` or ``{"threshold": t, "margin": m}``, with ``min_face_px``, the
            ``caution`` a `real` verdict quotes (:func:`compression_caution`) and, for a JPEG
            still, its ``jpeg_quality`` and the card's ``min_jpeg_quality``, for an H.264 video its ``video_qp``
            and the card's ``max_video_qp`` (see :func:`verdict_rule`): compressed harder than that, a `real`
            verdict becomes `uncertain`, since heavy compression erases a forgery's traces (it does not invent
            them, so `fake` stands).
    """
    score, ci = top["score"], top["ci"]
    if not np.isfinite(score):
        return "uncertain", "the detector returned no usable score for this face"
    min_px = rule.get("min_face_px", MIN_FACE_PX)
    if face_px < min_px:
        return "uncertain", (f"face too small ({face_px:.0f} px; this detector's verdicts need faces of at least "
                             f"{min_px:.0f} px): P(fake) {score:.2f} is shown but not trusted")  # fmt: skip
    band = rule.get("band")
    v = verdict_of(score, ci, rule.get("threshold", 0.5), rule.get("margin", 0.0), band=band)
    many = f" ({len(tracks)} faces; the verdict is the most suspicious one's)" if len(tracks) > 1 else ""
    squeezed = too_compressed(rule)
    if v == "real" and squeezed:
        return "uncertain", (f"heavily compressed ({squeezed}): P(fake) {score:.2f} is low, but compression this "
                             "heavy erases the traces of a forgery" + many)  # fmt: skip
    if band is not None:
        lo, hi = band
        d = digits_apart(score, lo, hi)
        errs = rule.get("errors")
        reals, fakes = (
            (f"{errs['real_called_fake']:.0%} of", f"{errs['fake_called_real']:.0%} of") if errs else ("few", "few")
        )
        why = {
            "fake": f"P(fake) {score:.{d}f} is at or above {hi:.{d}f}, where {reals} held-out real files scored",
            "real": f"P(fake) {score:.{d}f} is below {lo:.{d}f}, where {fakes} held-out fake files scored",
            "uncertain": f"P(fake) {score:.{d}f} lies between {lo:.{d}f} and {hi:.{d}f}, where held-out real and fake "
            "files overlap: this detector cannot tell",
        }[v]
        if v == "real" and rule.get("caution"):
            why += f"; but {rule['caution']}"
    else:
        t, m = rule.get("threshold", 0.5), rule.get("margin", 0.0)
        why = (f"P(fake) {score:.2f} (95 % interval {ci[0]:.2f}-{ci[1]:.2f}) is too close to the threshold {t:.2f}"
               if v == "uncertain" else f"P(fake) {score:.2f} vs threshold {t:.2f} ± {m:.2f}")  # fmt: skip
    return v, why + many


def too_compressed(rule: dict[str, Any]) -> str | None:
    """Why a file is compressed harder than the card's `real` verdicts were validated for, in words (``None`` when
    it is not, or when the card or the file says nothing): a JPEG quality under ``min_jpeg_quality``, an H.264
    quantiser over ``max_video_qp``."""
    quality, least = rule.get("jpeg_quality"), rule.get("min_jpeg_quality")
    if quality is not None and least is not None and quality < least:
        return f"JPEG quality {quality}; this detector's 'real' verdicts need quality {least} or more"
    qp, most = rule.get("video_qp"), rule.get("max_video_qp")
    if qp is not None and most is not None and qp > most:
        return f"H.264 quantiser {qp:.1f}; this detector's 'real' verdicts need a quantiser of {most:g} or less"
    return None


def digits_apart(*values: float) -> int:
    """Decimals (2 to 4) that print ``values`` as different numbers: a score of 0.2904 against a band edge of 0.2905
    reads "0.2904 is below 0.2905", not "0.29 is below 0.29"."""
    for d in (2, 3):
        if len({round(float(v), d) for v in values}) == len(set(map(float, values))):
            return d
    return 4


def verdict_rule(
    scorer: Scorer,
    opts: ScanOptions,
    kind: str | None = None,
    jpeg_quality: int | None = None,
    video_qp: float | None = None,
) -> dict[str, Any]:
    """The decision rule of a scan: an explicit ``--threshold`` wins, else the card's band for this media ``kind``
    (``image``/``video``), else its overall band, else 0.5 ± 0.05; faces smaller than the card's
    ``verdict.min_face_px`` (else :data:`MIN_FACE_PX`) get no verdict, and a still saved at a ``jpeg_quality``
    under the card's ``verdict.min_jpeg_quality``, or an H.264 video whose quantiser ``video_qp``
    (:func:`~dflab.media.video.h264_qp`) is over its ``verdict.max_video_qp`` (when the card states them), no `real`
    verdict."""
    verdict = scorer.card.get("verdict") or {}
    facts: dict[str, Any] = {"min_face_px": float(verdict.get("min_face_px", MIN_FACE_PX))}
    if jpeg_quality is not None and verdict.get("min_jpeg_quality") is not None:
        facts |= {"jpeg_quality": int(jpeg_quality), "min_jpeg_quality": int(verdict["min_jpeg_quality"])}
    if video_qp is not None and verdict.get("max_video_qp") is not None:
        facts |= {"video_qp": float(video_qp), "max_video_qp": float(verdict["max_video_qp"])}
    fit = scorer.file_fit(kind)
    if fit is not None:
        facts["file_calibration"] = fit
    if (caution := compression_caution(verdict, jpeg_quality, video_qp)) is not None:
        facts["caution"] = caution
    band = scorer.bands_by_kind.get(kind or "", scorer.band)
    if opts.threshold is None and band is not None:
        return {"band": band, "threshold": band[1], "errors": band_errors(verdict, kind), **facts}
    t = 0.5 if opts.threshold is None else opts.threshold
    return {"threshold": t, "margin": 0.05 if opts.margin is None else opts.margin, **facts}


def band_errors(verdict: dict[str, Any], kind: str | None) -> dict[str, float] | None:
    """The share of held-out fake files the card's band called real and of real files it called fake, for files of
    media ``kind`` (its ``by_kind`` band, else the overall one). Preferred: the numbers on sources the band was not
    chosen on (``bands[alpha]["held_out_sources"]``: band fitted on half the sources, judged on the other half),
    since a file to scan comes from a source the band has not seen; else the out-of-fold numbers the band was chosen
    on (``in_sample``), which a band meets by construction. ``None`` when the card states neither."""
    chosen = (verdict.get("by_kind") or {}).get(kind or "") or verdict
    table = (chosen.get("bands") or {}).get(str(chosen.get("alpha")), {})
    for part in ("held_out_sources", "in_sample"):
        row = table.get(part) or {}
        if "fake_called_real" in row and "real_called_fake" in row:
            return {
                "fake_called_real": float(row["fake_called_real"]),
                "real_called_fake": float(row["real_called_fake"]),
            }
    return None


#: a JPEG at this quality or better is as the validation's own fakes were saved (95, or PNG): no caution
FIRST_SAVE_JPEG_QUALITY = 95


def compression_caution(verdict: dict[str, Any], jpeg_quality: int | None, video_qp: float | None) -> str | None:
    """What the card measured about forgeries compressed like this file, in words, for a `real` verdict's reason.

    A re-save or re-encode hides a forgery's traces, and the verdict band was fitted on first-generation fakes: a
    JPEG under :data:`FIRST_SAVE_JPEG_QUALITY` quotes the share of held-out fake photos re-saved whole at the
    nearest measured quality at or below its own that were called real (``min_jpeg_quality_evidence``); an H.264
    video quotes that share in its quantiser's bin (``max_video_qp_evidence``, first-generation and re-encoded
    copies pooled). ``None`` when the card or the file says nothing."""
    if jpeg_quality is not None and jpeg_quality < FIRST_SAVE_JPEG_QUALITY:
        ev = (verdict.get("min_jpeg_quality_evidence") or {}).get("whole_file_fakes_called_real") or {}
        measured = sorted((int(q), float(r)) for q, r in ev.items() if q.isdigit() and int(q) <= jpeg_quality)
        if measured:
            q, rate = measured[-1]
            clean = ev.get("clean")
            than = f" (unsaved: {float(clean):.0%})" if clean is not None else ""
            return (f"a forged photo re-saved whole at JPEG quality {q} was called real {rate:.0%} of the time on "
                    f"validation{than}, and this file is a JPEG at quality {jpeg_quality}")  # fmt: skip
    if video_qp is not None:
        bins = (verdict.get("max_video_qp_evidence") or {}).get("fakes_called_real_by_qp") or {}
        for label, rate in bins.items():
            if _in_qp_bin(label, video_qp):
                return (f"of the held-out fake videos at a quantiser like this file's (H.264 QP {video_qp:.1f}, bin "
                        f"{label}; first-generation and re-encoded copies pooled), {float(rate):.0%} were called "
                        "real")  # fmt: skip
    return None


def _in_qp_bin(label: str, qp: float) -> bool:
    """Whether ``qp`` lies in a bin labelled ``"<24"``, ``"24-27"`` or ``">=40"`` (lower edge included)."""
    if label.startswith("<"):
        return qp < float(label[1:])
    if label.startswith(">="):
        return qp >= float(label[2:])
    lo, _, hi = label.partition("-")
    return float(lo) <= qp < float(hi)


def aggregate_tracks(
    faces: Sequence[ScanFace], rng: np.random.Generator, views: dict[int, Sequence[float]] | None = None
) -> list[dict[str, Any]]:
    """Per track: mean score of its scored faces and a 95 % bootstrap interval over their frames (over its
    test-time views for a still, given in ``views`` by track id). ``n_faces`` counts every face of the track (found
    and tracked), ``n_scored`` those scored (``ScanOptions.faces_per_track``)."""
    tracks = []
    for tid in sorted({f.track_id for f in faces}):
        mine = [f for f in faces if f.track_id == tid]
        scored = [f for f in mine if np.isfinite(f.score)]  # faces beyond faces_per_track have NaN
        vals = np.array((views or {}).get(tid) or [f.score for f in scored])
        tracks.append(
            {
                "track_id": tid,
                "n_faces": len(mine),
                "n_scored": len(scored),
                "score": float(np.mean([f.score for f in scored])),
                "ci": bootstrap_ci(vals, rng),
                "first_frame": mine[0].frame_index,
                "last_frame": mine[-1].frame_index,
            }
        )
    return tracks


def decisive_track(tracks: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The file's track: the most suspicious of those lasting at least a quarter of the longest (a face swap needs
    only one swapped face; very short tracks are mostly detector noise)."""
    longest = max(t["n_faces"] for t in tracks)
    eligible = [t for t in tracks if t["n_faces"] >= max(1, longest / 4)]
    return max(eligible, key=lambda t: t["score"])


def face_facts(found: FoundFaces) -> dict[str, Any]:
    """What the reason for a verdict may rest on: the smallest face's side and the most faces in one frame."""
    per_frame: dict[int, int] = {}
    for f in found.faces:
        per_frame[f.frame_index] = per_frame.get(f.frame_index, 0) + 1
    sides = [min(f.det.width, f.det.height) for f in found.faces]
    return {
        "smallest_face_px": round(float(min(sides)), 1) if sides else None,
        "max_faces_per_frame": max(per_frame.values(), default=0),
    }


def reason_of(record: dict[str, Any]) -> str | None:
    """Why a file got a verdict other than a plain ``fake``/``real``, in words (``None`` when there is nothing to
    say). This is the one place that turns a record's facts into the reason shown beside its verdict."""
    reasons = [record["reason"]] if record.get("reason") else []  # the verdict's own reason (:func:`decide`)
    if record.get("status") == "no_face":
        reasons.append(
            f"no face found in {record.get('n_sampled', 0)} sampled frame(s): faces smaller than about 40 px, in "
            "profile or heavily occluded are not detected"
        )
    if (record.get("max_faces_per_frame") or 0) > MANY_FACES:
        reasons.append(
            f"{record['max_faces_per_frame']} faces in one frame: each is scored, the most suspicious track decides"
        )
    if record.get("status") == "partial":
        err = record.get("error") or {}
        reasons.append(f"only frames before a decoding failure were scored ({err.get('cause')})")
    return "; ".join(reasons) or None


# ----------------------------------------------------------------------------------------------------------------
# the scan: the stages in order


@dataclass
class ScanResult:
    """What :func:`scan_file` found. ``record`` is JSON-able; ``overlays`` are RGB images for the report.

    ``frames`` (the sampled frames of the scored faces, when they were held: see :data:`KEEP_FRAMES_BYTES`) and
    ``heats`` (per ``(frame_index, track_id)`` a scored face's map in crop pixels and its frame → crop matrix) let
    :func:`dflab.scan.views.render_views` draw key frames, thumbnails and heatmap layers without decoding or
    scoring again; both may be empty.
    """

    record: dict[str, Any]
    overlays: list[tuple[str, np.ndarray]] = field(default_factory=list)
    video_frames: list[np.ndarray] = field(default_factory=list)
    fps: float = 0.0
    frames: dict[int, np.ndarray] = field(default_factory=dict, repr=False)
    heats: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = field(default_factory=dict, repr=False)


def _error_dict(exc: DflabError) -> dict[str, str]:
    if isinstance(exc, MediaError):
        return {"cause": exc.cause, "detail": exc.detail}
    if isinstance(exc, ScanTimeoutError):
        return {"cause": "timeout", "detail": str(exc)}
    return {"cause": type(exc).__name__, "detail": str(exc)}


def _error_result(path: Path, exc: DflabError, t0: float) -> ScanResult:
    return ScanResult(
        {
            "path": str(path),
            "status": "error",
            "verdict": "error",
            "reason": None,
            "score": None,
            "ci": None,
            "error": _error_dict(exc),
            "seconds": round(time.time() - t0, 3),
        }
    )


def scan_file(
    path: str | Path,
    scorers: Scorer | Sequence[Scorer],
    opts: ScanOptions | None = None,
    *,
    progress: ProgressFn | None = None,
    deadline: float | None = None,
) -> ScanResult:
    """Scan one image or video. Never raises for bad media: the record then has ``status == "error"``.

    Args:
        path: an image or video file (kind decided by content, not extension).
        scorers: one detector, or several for the ensemble (mean of calibrated probabilities).
        opts: sampling and decision options.
        progress: called with (fraction done, message).
        deadline: ``time.monotonic()`` value after which the scan stops with a ``timeout`` error record.
    """
    path = Path(path)
    opts = opts or ScanOptions()
    scorers = [scorers] if isinstance(scorers, Scorer) else list(scorers)
    t0 = time.time()
    try:
        return _scan(path, scorers, opts, progress or (lambda f, m: None), deadline, t0)
    except DflabError as exc:
        return _error_result(path, exc, t0)
    except PermissionError as exc:  # not a damaged file: the record must not send the analyst looking for one
        from dflab.media.files import unreadable_error

        return _error_result(path, unreadable_error(path, exc), t0)
    except (OSError, ValueError, MemoryError) as exc:  # decoder failures that escaped the media layer
        return _error_result(path, MediaError(path, "decode_error", f"{type(exc).__name__}: {exc}"), t0)


def _finite(scores: np.ndarray, names: Sequence[str]) -> np.ndarray:
    """Scores, after checking they are all finite: a NaN must become an error record, never a verdict."""
    if not np.isfinite(scores).all():
        raise ScoreError(
            f"detector {', '.join(names)} returned non-finite P(fake) for {int((~np.isfinite(scores)).sum())} faces"
        )
    return scores


def _check_deadline(deadline: float | None) -> None:
    if deadline is not None and time.monotonic() > deadline:
        raise ScanTimeoutError("scan ran past its time limit")


def _scan(
    path: Path, scorers: list[Scorer], opts: ScanOptions, progress: ProgressFn, deadline: float | None, t0: float
) -> ScanResult:
    def check() -> None:
        _check_deadline(deadline)

    source = sample_frames(path, opts)  # 1. sample frames
    progress(0.02, f"{source.kind}: decoding")
    overlay_frames = _overlay_frame_choice(source.planned, opts)

    def on_frame(n: int) -> None:
        check()
        progress(0.02 + 0.58 * n / len(source.planned), f"faces in {n}/{len(source.planned)} frames")

    check()
    early = None
    if source.kind == "video":  # stage 3 starts beside stage 2 (a still has one frame: nothing to overlap)
        picks = early_frames(source.planned, opts.faces_per_track, overlay_frames)
        early = EarlyScoring(scorers, picks, overlay_frames, opts.batch_size, kind=source.kind, check=check)
    try:
        found, faces = find_scan_faces(  # 2. faces and tracks
            source, scorers[0].spec, opts, overlay_frames, on_frame, on_crop=early.offer if early else None
        )
        if not found.frames:
            raise MediaError(path, "no_frames", "the decoder returned no frame")
        done = early.take() if early else {}
    finally:
        if early:
            early.cancel()
    from dflab.media.image import jpeg_quality
    from dflab.media.video import h264_qp

    quality = jpeg_quality(path) if source.kind == "image" else None
    qp = h264_qp(path) if source.kind == "video" else None
    rule = verdict_rule(scorers[0], opts, source.kind, quality, qp)
    record = _base_record(path, source, found, scorers, rule) | {"jpeg_quality": quality, "video_qp": qp}
    if faces:  # 3. score the budget's faces (those not scored early), with maps for the overlay frames' faces
        todo = [faces[i] for i in select_faces(faces, opts.faces_per_track, overlay_frames)]
        rest = [f for f in todo if f.key not in done]
        scores, heats = score_crops(
            [f.face.crop.image for f in rest],
            scorers,
            batch_size=opts.batch_size,
            maps=[f.frame_index in overlay_frames for f in rest],
            check=check,
            on_batch=lambda n: progress(0.6 + 0.35 * n / len(rest), "scoring faces"),
            kind=source.kind,
        )
        for f, s, h in zip(rest, scores, heats, strict=True):
            done[f.key] = (float(s), h)
        # a NaN becomes an error record, never a verdict
        _finite(np.array([done[f.key][0] for f in todo], np.float32), [s.name for s in scorers])
        for f in todo:
            f.score, f.heat = done[f.key]
            f.scored = True
        views = _score_still_views(source, found, todo, scorers, opts) if source.kind == "image" and opts.tta else {}
        record.update(_summary(faces, views, opts, rule))  # 4. aggregate per track and file
        record["faces_per_track"] = opts.faces_per_track or None
        record["status"] = "partial" if source.broken is not None else "ok"
    record["frames"] = _frame_records(found, faces, source.fps)
    record["reason"] = reason_of(record)
    result = render(record, found, faces, overlay_frames, opts, source.fps)  # 5. render
    scored_frames = {f.frame_index for f in faces if f.scored}
    result.frames = {i: rgb for i, rgb in found.kept.items() if i in scored_frames}
    result.heats = {(f.frame_index, f.track_id): (f.heat, f.matrix) for f in faces if f.heat is not None}
    record["seconds"] = round(time.time() - t0, 3)
    if faces:
        progress(1.0, f"{record['verdict']} ({record['score']:.2f})")
    else:
        progress(1.0, "no face found")
    return result


def _base_record(
    path: Path, source: FrameSource, found: FoundFaces, scorers: Sequence[Scorer], rule: dict[str, Any]
) -> dict[str, Any]:
    record: dict[str, Any] = {
        "path": str(path),
        "kind": source.kind,
        "width": int(found.frame_size[0]),
        "height": int(found.frame_size[1]),
        "fps": source.fps,
        "n_frames": source.n_frames,
        "n_sampled": len(found.frames),
        "threshold": rule["threshold"],
        "margin": rule.get("margin"),
        "band": list(rule["band"]) if "band" in rule else None,
        "detectors": [s.name for s in scorers],
        "status": "no_face",
        "verdict": "no_face",
        "reason": None,
        "score": None,
        "ci": None,
        "n_faces": 0,
        "tracks": [],
        **face_facts(found),
    }
    if source.broken is not None:
        # the frames decoded before the break were scored; the record says what stopped the rest
        record["status"] = "partial"
        record["error"] = {
            **_error_dict(source.broken),
            "frames_decoded": len(found.frames),
            "frames_planned": len(source.planned),
        }
    return record


def _score_still_views(
    source: FrameSource, found: FoundFaces, faces: Sequence[ScanFace], scorers: Sequence[Scorer], opts: ScanOptions
) -> dict[int, list[float]]:
    """A still has one frame: test-time views (flip × margins) of each face give its interval. Every face's views
    are scored in one batched pass; a face's score becomes its views' mean, so overlay, face and file agree."""
    rgb = found.kept[0]
    views = [still_views(rgb, f.face, scorers[0].spec) for f in faces]
    flat, _ = score_crops([v for vs in views for v in vs], scorers, batch_size=opts.batch_size, kind="image")
    flat = _finite(flat, [s.name for s in scorers])
    out: dict[int, list[float]] = {}
    for i, f in enumerate(faces):
        vals = flat[i * len(views[i]) : (i + 1) * len(views[i])]
        out[f.track_id] = [float(v) for v in vals]
        f.score = float(np.mean(vals))
    return out


def _summary(
    faces: Sequence[ScanFace], views: dict[int, list[float]], opts: ScanOptions, rule: dict[str, Any]
) -> dict[str, Any]:
    tracks = aggregate_tracks(faces, np.random.default_rng(opts.seed), views)
    to_file_scale(faces, tracks, rule.get("file_calibration"))
    top = decisive_track(tracks)
    sides: dict[int, list[float]] = {}  # each track's face sizes (longer side of the detector box, px)
    for f in faces:
        sides.setdefault(f.track_id, []).append(max(f.det_box[2] - f.det_box[0], f.det_box[3] - f.det_box[1]))
    for t in tracks:  # each face track's own verdict and reason, by the same rule as the file's
        t["verdict"], t["reason"] = decide(t, [t], float(np.median(sides[t["track_id"]])), rule)
    verdict, reason = decide(top, tracks, float(np.median(sides[top["track_id"]])), rule)
    odds = top["score"] / max(1e-6, 1 - top["score"])
    return {
        "score": top["score"],
        "ci": top["ci"],
        # the odds of a P(fake) calibrated at a prior of 1/2 (the likelihood ratio); a mean of face probabilities
        # has none
        "likelihood_ratio": odds if rule.get("file_calibration") else None,
        "verdict": verdict,
        "reason": reason,
        "decisive_track": top["track_id"],
        "n_faces": len(faces),
        "n_scored": sum(1 for f in faces if f.scored),
        "tracks": tracks,
    }


def to_file_scale(faces: Sequence[ScanFace], tracks: Sequence[dict[str, Any]], fit: tuple[float, float] | None) -> None:
    """Put every score of a scan on the file's calibrated scale, in place (nothing when the card has no file-level
    ``fit``; see :func:`~dflab.eval.calibration.file_calibrate`).

    A track's score (the mean P(fake) of its faces) and its interval's ends become the file-level P(fake) the card
    calibrated on held-out files. Each scored face's P(fake) goes through the same monotone map, so that it reads
    as "a file whose faces all looked like this one": a face drawn red, a frame above the timeline's line and a file
    called fake all mean one thing. A face's mapped value is not the calibrated probability of that single face
    (one frame is noisier than a track's mean), and the file's score is not the mean of its faces' mapped values.
    """
    if fit is None:
        return
    from dflab.eval.calibration import file_calibrate

    for t in tracks:
        t["score"] = float(file_calibrate(t["score"], *fit))
        t["ci"] = [float(file_calibrate(c, *fit)) for c in t["ci"]]
    for f in faces:
        if np.isfinite(f.score):
            f.score = float(file_calibrate(f.score, *fit))


def _frame_records(found: FoundFaces, faces: Sequence[ScanFace], fps: float) -> list[dict[str, Any]]:
    by_frame: dict[int, list[ScanFace]] = {}
    for f in faces:
        by_frame.setdefault(f.frame_index, []).append(f)
    return [
        {
            "frame_index": idx,
            "time_s": round(idx / fps if fps else 0.0, 3),
            "faces": [
                {
                    "track_id": f.track_id,
                    "score": round(f.score, 5) if f.scored else None,  # None: not scored (faces_per_track)
                    "box": [round(float(v), 1) for v in f.det_box],
                    "det_score": round(float(f.face.det.score), 3),
                }
                for f in by_frame.get(idx, [])
            ],
        }
        for idx in found.frames
    ]


# ----------------------------------------------------------------------------------------------------------------
# stage 5: render


def _overlay_frame_choice(indices: list[int], opts: ScanOptions) -> set[int]:
    if opts.overlays <= 0 or not indices:
        return set()
    pick = np.linspace(0, len(indices) - 1, num=min(opts.overlays, len(indices))).round().astype(int)
    return {indices[i] for i in pick}


def render(
    record: dict[str, Any],
    found: FoundFaces,
    faces: Sequence[ScanFace],
    overlay_frames: set[int],
    opts: ScanOptions,
    fps: float,
) -> ScanResult:
    """Stage 5: heatmap overlays of the chosen frames (and every sampled frame for an overlay video)."""
    stride = found.frames[1] - found.frames[0] if len(found.frames) > 1 else 1
    result = ScanResult(record, fps=fps / max(1, stride) if fps else 0.0)
    if record["status"] not in ("ok", "partial") or not faces:
        return result
    by_frame: dict[int, list[ScanFace]] = {}
    for f in faces:
        by_frame.setdefault(f.frame_index, []).append(f)
    for idx in found.frames:
        rgb = found.kept.get(idx)
        if rgb is None or not (idx in overlay_frames or opts.overlay_video):
            continue
        ov = render_overlay(rgb, by_frame.get(idx, []), record["threshold"])
        if idx in overlay_frames:
            result.overlays.append((f"frame{idx:06d}", ov))
        if opts.overlay_video:
            result.video_frames.append(ov)
    return result


def render_overlay(rgb: np.ndarray, faces: Sequence[ScanFace], threshold: float) -> np.ndarray:
    """Draw each face's heatmap (warped back from crop to frame) and a box coloured by its score.

    The frame is downscaled first and each heatmap blended only over its face's window: blending full 1080p frames
    in float took ~0.17 s per overlay, a tenth of the whole scan's budget.

    Shape:
        rgb (H, W, 3) uint8; returns (H', W', 3) uint8 with H' ≤ 720 (downscaled for the report).
    """
    import cv2

    h, w = rgb.shape[:2]
    scale = min(1.0, 720 / max(h, w))
    if scale < 1.0:
        out = cv2.resize(rgb, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    else:
        out = rgb.copy()
    oh, ow = out.shape[:2]
    for f in faces:
        if f.heat is None:
            continue
        to_out = scale * cv2.invertAffineTransform(f.matrix.astype(np.float64))  # crop → output pixels
        s = f.heat.shape[0]
        corners = np.array([[0, 0, 1], [s, 0, 1], [0, s, 1], [s, s, 1]], np.float64) @ to_out.T
        x0, y0 = np.floor(corners.min(0)).astype(int).clip(0, [ow, oh])
        x1, y1 = np.ceil(corners.max(0)).astype(int).clip(0, [ow, oh])
        if x1 <= x0 or y1 <= y0:
            continue
        to_out[:, 2] -= (x0, y0)  # into the face's window
        heat = cv2.warpAffine(f.heat, to_out, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR, borderValue=0)
        colour = cv2.applyColorMap((heat * 255).astype(np.uint8), cv2.COLORMAP_JET)[:, :, ::-1]
        alpha = (0.55 * heat)[:, :, None]
        win = out[y0:y1, x0:x1].astype(np.float32)
        out[y0:y1, x0:x1] = (win * (1 - alpha) + colour.astype(np.float32) * alpha).clip(0, 255).astype(np.uint8)
    thick = max(2, round(max(h, w) / 300 * scale))
    for f in faces:
        x0, y0, x1, y1 = (round(float(v) * scale) for v in f.det_box)
        if not f.scored:  # beyond the faces_per_track budget: boxed in grey, without a score
            cv2.rectangle(out, (x0, y0), (x1, y1), (150, 150, 150), thick)
            continue
        red = f.score >= threshold
        colour = (230, 40, 40) if red else (40, 200, 60)
        cv2.rectangle(out, (x0, y0), (x1, y1), colour, thick)
        cv2.putText(out, f"{f.score:.2f}", (x0, max(12, y0 - 6)), cv2.FONT_HERSHEY_SIMPLEX, thick / 3, colour, thick)
    return out
