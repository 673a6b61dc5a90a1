"""The scanner: media → sampled frames → faces → tracks → calibrated P(fake) per face, track and file.

One function, :func:`scan_file`, does the work for the CLI (``dflab scan``), the demo and the web service, so the
three always agree. It reuses the prepare path's pieces — :mod:`dflab.media` for decoding and sniffing,
:mod:`dflab.faces` for detection and the FF++-style square crop — and loads checkpoints only through
:func:`dflab.models.checkpoint.load_detector` (safetensors + JSON card, nothing unpickled).

Aggregation (documented in docs/sections/scan.md):

* faces of consecutive sampled frames are linked into tracks by greedy box IoU;
* a track's score is the mean calibrated P(fake) of its faces, with a 95 % bootstrap confidence interval over its
  frames; for a still image the spread comes from test-time views (horizontal flip × three crop margins);
* a file's score is that of its most suspicious track among the tracks that last at least a quarter of the longest
  one (a face swap needs only one swapped face; very short tracks are mostly detector noise);
* verdict ``fake`` / ``real`` by the threshold, ``uncertain`` when the interval straddles it, ``no_face`` when no
  face was found, ``error`` when the media could not be used (with the :class:`~dflab.errors.MediaError` cause).

Calibration and verdicts (from the checkpoint card, fitted on held-out validation by scripts/train_default.py):
``calibration = {"method": "platt", "scale": a, "bias": b}`` gives P(fake) = sigmoid(a · (logit_fake − logit_real)
+ b) (Platt scaling; ``{"temperature": T}`` is the special case a = 1/T, b = 0). ``verdict = {"real_below": lo,
"fake_at": hi}`` is the card's band: a file is ``fake`` at or above ``hi``, ``real`` below ``lo``, ``uncertain``
between, each verdict with its ``reason`` in words. Without a band (or with ``--threshold``), the rule is the
threshold ± margin, and an interval straddling the threshold is uncertain.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dflab.errors import CheckpointError, DflabError, MediaError, ScoreError
from dflab.models.base import Detector, InputSpec

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"
DEFAULT_WEIGHTS = WEIGHTS_DIR / "default.safetensors"
IMAGE_MAX_PIXELS = 40_000_000  # a 8k × 5k still is fine; a PNG bomb (e.g. 30k × 30k) is refused unread
DETECT_LONG_SIDE = 960  # faces are found on a copy at most this long (≥ 40–80 px faces); crops use the full frame

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


# ----------------------------------------------------------------------------------------------------------------
# detectors


@dataclass
class Scorer:
    """A loaded detector plus its preprocessing and calibration.

    Attributes:
        model: the detector in eval mode.
        spec: its input contract (crop size, margin, mean, std).
        card: the checkpoint card (``{}`` for an in-memory model).
        temperature: logits are divided by this before the softmax (1 = uncalibrated); Platt's ``scale`` = 1/T.
        name: short label used in reports.
        scale, bias: Platt calibration, P(fake) = sigmoid(scale · (logit_fake − logit_real) + bias).
        band: the card's verdict band ``(real_below, fake_at)``, or ``None``.
    """

    model: Detector
    spec: InputSpec
    card: dict[str, Any] = field(default_factory=dict)
    temperature: float = 1.0
    name: str = "detector"
    scale: float = 1.0
    bias: float = 0.0
    band: tuple[float, float] | None = None
    _cam_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _cam_layer: Any = field(default=None, repr=False)

    def to_tensor(self, crops: Sequence[np.ndarray]) -> torch.Tensor:
        """Normalise RGB uint8 crops.

        Shape:
            crops: N × (S, S, 3) uint8 with S = ``spec.size``; returns (N, 3, S, S) float32.
        """
        x = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float().div_(255.0)
        mean = torch.tensor(self.spec.mean).view(1, 3, 1, 1)
        std = torch.tensor(self.spec.std).view(1, 3, 1, 1)
        return (x - mean) / std

    def probs(self, outputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Calibrated P(fake), (B,)."""
        scale = self.scale / self.temperature
        if scale == 1.0 and self.bias == 0.0:
            return self.model.score(outputs).float()
        logits = outputs["logits"].float()
        return torch.sigmoid(scale * (logits[:, 1] - logits[:, 0]) + self.bias)

    def score(self, crops: Sequence[np.ndarray], *, maps: bool = False) -> tuple[np.ndarray, list[np.ndarray] | None]:
        """Score a batch of crops; optionally return one localisation map per crop.

        Maps are the detector's own ``explain_maps`` (predicted masks, CAM attention) when it has them, else
        Grad-CAM of the fake class on the last convolution feeding the logits (:mod:`dflab.explain.gradcam`).

        Shape:
            crops: N × (S, S, 3) uint8; returns scores (N,) float32 and maps N × (S, S) float32 in [0, 1].
        """
        x = self.to_tensor(crops)
        with torch.inference_mode():
            outputs = self.model(x)
            scores = self.probs(outputs).numpy().astype(np.float32)
            own = self.model.explain_maps(outputs) if maps else {}
        if not maps:
            return scores, None
        if own:
            # one map per crop: the predicted mask when there is one, else the union (max) of the named maps
            parts = [own["mask"]] if "mask" in own else list(own.values())
            m = torch.stack([p.float()[:, None] if p.dim() == 3 else p.float()[:, :1] for p in parts]).amax(dim=0)
            m = torch.nn.functional.interpolate(m, size=x.shape[-2:], mode="bilinear", align_corners=False)
            return scores, [_norm01(a[0].numpy()) for a in m]
        from dflab.explain.gradcam import cam_layer_of, gradcam

        with self._cam_lock:  # Grad-CAM hooks the shared model: one batch at a time
            if self._cam_layer is None:
                self._cam_layer = cam_layer_of(self.model, x[:1])
            cams = gradcam(self.model, x, layer=self._cam_layer)
        return scores, [_norm01(c) for c in cams]


def _norm01(a: np.ndarray) -> np.ndarray:
    a = a.astype(np.float32)
    lo, hi = float(a.min()), float(a.max())
    return np.zeros_like(a) if hi - lo < 1e-8 else (a - lo) / (hi - lo)


def scorer_from_model(model: Detector, card: dict[str, Any] | None = None, name: str | None = None) -> Scorer:
    """Wrap an in-memory detector (tests, freshly trained models)."""
    card = card or {}
    cal = card.get("calibration", {})
    temp = float(cal.get("temperature", 1.0))
    scale, bias = (float(cal["scale"]), float(cal["bias"])) if cal.get("method") == "platt" else (1.0, 0.0)
    v = card.get("verdict") or {}
    band = (float(v["real_below"]), float(v["fake_at"])) if "real_below" in v and "fake_at" in v else None
    label = name or card.get("name") or model.config().get("variant") or type(model).__name__
    return Scorer(model.eval(), model.input_spec, card, temp, str(label), scale=scale, bias=bias, band=band)


def load_scorer(detector: str | Path | None = None) -> Scorer:
    """Load a detector for scanning.

    Args:
        detector: a checkpoint (``.safetensors`` file or a directory holding one with its card), ``"default"``/
            ``None`` for the weights shipped in ``dflab/weights``. Registered names without weights are refused:
            an untrained model's scores would mean nothing.

    Raises:
        CheckpointError: no such checkpoint, or no default weights in this install.
    """
    from dflab.models.checkpoint import load_detector

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
    loaded = load_detector(path)
    name = loaded.card.get("name") or Path(path).stem
    return scorer_from_model(loaded.model, loaded.card, name=str(name))


# ----------------------------------------------------------------------------------------------------------------
# media


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


# ----------------------------------------------------------------------------------------------------------------
# faces


@dataclass
class _Face:
    frame_index: int
    time_s: float
    box: np.ndarray  # crop window in frame px (x0, y0, x1, y1)
    det_box: np.ndarray
    det_score: float
    crop: np.ndarray
    matrix: np.ndarray  # 2x3 frame → crop
    track_id: int = -1
    score: float = float("nan")
    heat: np.ndarray | None = None


_LOCAL = threading.local()  # dlib's detector is not thread-safe: one FaceDetector per thread (--jobs, workers)


def face_detector():
    """This thread's :class:`dflab.faces.FaceDetector` (dlib HOG + 68 landmarks, the prepare path's detector).

    Frames are downscaled to :data:`DETECT_LONG_SIDE` for detection only; crops come from the full frame.
    """
    from dflab.faces import FaceDetector

    if getattr(_LOCAL, "detector", None) is None:
        _LOCAL.detector = FaceDetector(backend="dlib", max_side=DETECT_LONG_SIDE)
    return _LOCAL.detector


def _crop(rgb: np.ndarray, det: Any, spec: InputSpec, frame_index: int, ts: float, margin: float | None = None):
    from dflab.faces import crop_face

    c = crop_face(rgb, tuple(det.box), size=spec.size, margin=spec.margin if margin is None else margin)
    box = np.asarray(det.box, np.float32)
    return _Face(frame_index, ts, np.asarray(c.box, np.float32), box, float(det.score), c.image, c.matrix)


# ----------------------------------------------------------------------------------------------------------------
# aggregation


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


#: below this face size (pixels, the detector box's longer side) a verdict is not given: the detector was trained on
#: faces of 80-400 px, and compression erases the blending traces it reads in smaller ones
MIN_FACE_PX = 40


def decide(top: dict[str, Any], tracks: list[dict[str, Any]], face_px: float, rule: dict[str, Any]) -> tuple[str, str]:
    """The file's verdict and its reason in words.

    Args:
        top: the decisive track (``score``, ``ci``).
        tracks: all tracks of the file.
        face_px: the decisive track's median face size (longer side of the detector box, pixels).
        rule: ``{"band": (lo, hi)}`` or ``{"threshold": t, "margin": m}`` (see :func:`verdict_rule`).
    """
    score, ci = top["score"], top["ci"]
    if not np.isfinite(score):
        return "uncertain", "the detector returned no usable score for this face"
    if face_px < MIN_FACE_PX:
        return "uncertain", (f"face too small ({face_px:.0f} px; verdicts need faces of at least {MIN_FACE_PX} px): "
                             f"P(fake) {score:.2f} is shown but not trusted")  # fmt: skip
    band = rule.get("band")
    v = verdict_of(score, ci, rule.get("threshold", 0.5), rule.get("margin", 0.0), band=band)
    many = f" ({len(tracks)} faces; the verdict is the most suspicious one's)" if len(tracks) > 1 else ""
    if band is not None:
        lo, hi = band
        why = {
            "fake": f"P(fake) {score:.2f} is at or above {hi:.2f}, where at most a few % of held-out real files scored",
            "real": f"P(fake) {score:.2f} is below {lo:.2f}, where at most a few % of held-out fake files scored",
            "uncertain": f"P(fake) {score:.2f} lies between {lo:.2f} and {hi:.2f}, where held-out real and fake files "
            "overlap: this detector cannot tell",
        }[v]
    else:
        t, m = rule.get("threshold", 0.5), rule.get("margin", 0.0)
        why = (f"P(fake) {score:.2f} (95 % interval {ci[0]:.2f}-{ci[1]:.2f}) is too close to the threshold {t:.2f}"
               if v == "uncertain" else f"P(fake) {score:.2f} vs threshold {t:.2f} ± {m:.2f}")  # fmt: skip
    return v, why + many


def verdict_rule(scorer: Scorer, opts: ScanOptions) -> dict[str, Any]:
    """The decision rule of a scan: an explicit ``--threshold`` wins, else the card's band, else 0.5 ± 0.05."""
    if opts.threshold is None and scorer.band is not None:
        return {"band": scorer.band, "threshold": scorer.band[1]}
    t = 0.5 if opts.threshold is None else opts.threshold
    return {"threshold": t, "margin": 0.05 if opts.margin is None else opts.margin}


# ----------------------------------------------------------------------------------------------------------------
# the scan


@dataclass
class ScanResult:
    """What :func:`scan_file` found. ``record`` is JSON-able; ``overlays`` are RGB images for the report."""

    record: dict[str, Any]
    overlays: list[tuple[str, np.ndarray]] = field(default_factory=list)
    video_frames: list[np.ndarray] = field(default_factory=list)
    fps: float = 0.0


def _error_result(path: Path, exc: DflabError, t0: float) -> ScanResult:
    if isinstance(exc, MediaError):
        err = {"cause": exc.cause, "detail": exc.detail}
    elif isinstance(exc, ScanTimeoutError):
        err = {"cause": "timeout", "detail": str(exc)}
    else:
        err = {"cause": type(exc).__name__, "detail": str(exc)}
    return ScanResult(
        {
            "path": str(path),
            "status": "error",
            "verdict": "error",
            "score": None,
            "ci": None,
            "error": err,
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


def _scan(path, scorers, opts, progress, deadline, t0) -> ScanResult:
    from dflab import media

    if not path.exists():
        raise MediaError(path, "missing")
    if path.stat().st_size == 0:
        raise MediaError(path, "zero_bytes")
    kind = media.sniff(path)
    spec = scorers[0].spec
    rule = verdict_rule(scorers[0], opts)
    progress(0.02, f"{kind}: decoding")
    # decode → detect → crop one frame at a time; a frame is kept only if an overlay (or the TTA) needs it
    frames: list[tuple[int, float, np.ndarray | None]] = []
    detections: list[tuple[int, list[Any]]] = []
    crops: dict[tuple[int, int], _Face] = {}
    fps = 0.0
    if kind == "image":
        source = iter([(0, _read_still(path, opts))])
        wanted = [0]
        n_total = 1
    else:
        info = media.probe(path)
        if info.width * info.height > opts.max_pixels:
            raise MediaError(path, "too_large", f"{info.width}x{info.height} frames")
        if opts.max_duration_s is not None and info.duration and info.duration > opts.max_duration_s:
            raise MediaError(path, "too_large", f"{info.duration:.1f} s > limit {opts.max_duration_s:.0f} s")
        fps = float(info.fps or 25.0)
        n_total = int(info.n_frames or 0)
        wanted = sample_plan(n_total, opts)
        source = media.iter_frames(path, indices=wanted)
    overlay_frames = _overlay_frame_choice(wanted, opts)
    first_shape = (0, 0)
    for idx, rgb in source:
        _check_deadline(deadline)
        ts = idx / fps if fps else 0.0
        dets = face_detector().detect(rgb)
        detections.append((int(idx), dets))
        for j, det in enumerate(dets):
            crops[(int(idx), j)] = _crop(rgb, det, spec, int(idx), ts)
        keep = kind == "image" or opts.overlay_video or idx in overlay_frames
        frames.append((int(idx), ts, rgb if keep else None))
        first_shape = first_shape if first_shape[0] else rgb.shape[:2]
        progress(0.02 + 0.58 * len(frames) / len(wanted), f"faces in {len(frames)}/{len(wanted)} frames")
    if not frames:
        raise MediaError(path, "no_frames", "the decoder returned no frame")

    # tracks: the prepare path's tracker (dflab.faces.track_faces) links the detections across sampled frames
    from dflab.faces import track_faces

    per_frame: list[list[_Face]] = []
    dets_by_track: dict[int, Any] = {}
    for idx, labelled in track_faces(detections):
        faces = []
        for j, (tid, det) in enumerate(labelled):
            face = crops[(idx, j)]
            face.track_id = tid
            faces.append(face)
            dets_by_track.setdefault(tid, det)
        per_frame.append(faces)
    n_tracks = 1 + max((f.track_id for faces in per_frame for f in faces), default=-1)
    all_faces = [f for faces in per_frame for f in faces]
    base = {
        "path": str(path),
        "kind": kind,
        "width": int(first_shape[1]),
        "height": int(first_shape[0]),
        "fps": fps,
        "n_frames": n_total,
        "n_sampled": len(frames),
        "threshold": rule["threshold"],
        "margin": rule.get("margin"),
        "band": list(rule["band"]) if "band" in rule else None,
        "detectors": [s.name for s in scorers],
    }
    if not all_faces:
        rec = {**base, "status": "no_face", "verdict": "no_face", "score": None, "ci": None, "tracks": []}
        rec["reason"] = (f"no face found in {len(frames)} sampled frame(s): faces smaller than about 40 px, in "
                         "profile or heavily occluded are not detected")  # fmt: skip
        rec["frames"] = [{"frame_index": i, "time_s": round(t, 3), "faces": []} for i, t, _ in frames]
        rec["seconds"] = round(time.time() - t0, 3)
        progress(1.0, "no face found")
        return ScanResult(rec, fps=fps)

    # score: frames chosen for overlays get maps; the rest are scored without gradients
    rng = np.random.default_rng(opts.seed)
    want = [f.frame_index in overlay_frames for f in all_faces]
    for start in range(0, len(all_faces), opts.batch_size):
        _check_deadline(deadline)
        chunk = all_faces[start : start + opts.batch_size]
        need = want[start : start + opts.batch_size]
        per_det = []
        for j, sc in enumerate(scorers):
            scores, maps = sc.score([f.crop for f in chunk], maps=(j == 0 and any(need)))
            per_det.append(scores)
            if maps is not None:
                for f, m, n in zip(chunk, maps, need, strict=True):
                    f.heat = m if n else None
        mean = _finite(np.mean(per_det, axis=0), [s.name for s in scorers])
        for i, f in enumerate(chunk):
            f.score = float(mean[i])
        progress(0.6 + 0.35 * min(1.0, (start + len(chunk)) / len(all_faces)), "scoring faces")

    # still images: test-time views give the interval (flip × margins 1.2/1.3/1.4)
    tta_scores: dict[int, list[float]] = {}
    if kind == "image" and opts.tta:
        rgb = frames[0][2]
        for tid, det in dets_by_track.items():
            views = []
            for m in (spec.margin - 0.1, spec.margin, spec.margin + 0.1):
                crop = _crop(rgb, det, spec, 0, 0.0, margin=m).crop
                views += [crop, np.ascontiguousarray(crop[:, ::-1])]
            vals = _finite(np.mean([sc.score(views)[0] for sc in scorers], axis=0), [s.name for s in scorers])
            tta_scores[tid] = [float(v) for v in vals]
            for f in all_faces:  # a still's face score is its views' mean, so overlay, face and file agree
                if f.track_id == tid:
                    f.score = float(np.mean(vals))

    tracks = []
    for tid in range(n_tracks):
        faces = [f for f in all_faces if f.track_id == tid]
        vals = np.array(tta_scores.get(tid) or [f.score for f in faces])
        ci = bootstrap_ci(vals, rng)
        tracks.append(
            {
                "track_id": tid,
                "n_faces": len(faces),
                "score": float(np.mean([f.score for f in faces])),
                "ci": ci,
                "first_frame": faces[0].frame_index,
                "last_frame": faces[-1].frame_index,
            }
        )
    longest = max(t["n_faces"] for t in tracks)
    eligible = [t for t in tracks if t["n_faces"] >= max(1, longest / 4)]
    top = max(eligible, key=lambda t: t["score"])
    sizes = [
        max(f.det_box[2] - f.det_box[0], f.det_box[3] - f.det_box[1])
        for f in all_faces
        if f.track_id == top["track_id"]
    ]
    verdict, reason = decide(top, tracks, float(np.median(sizes)), rule)
    rec = {
        **base,
        "status": "ok",
        "score": top["score"],
        "ci": top["ci"],
        "verdict": verdict,
        "reason": reason,
        "decisive_track": top["track_id"],
        "n_faces": len(all_faces),
        "tracks": tracks,
        "frames": [
            {
                "frame_index": idx,
                "time_s": round(ts, 3),
                "faces": [
                    {
                        "track_id": f.track_id,
                        "score": round(f.score, 5),
                        "box": [round(float(v), 1) for v in f.det_box],
                        "det_score": round(f.det_score, 3),
                    }
                    for f in faces
                ],
            }
            for (idx, ts, _), faces in zip(frames, per_frame, strict=True)
        ],
    }
    result = ScanResult(rec, fps=fps / max(1, _stride_of(frames)) if fps else 0.0)
    for (idx, _ts, rgb), faces in zip(frames, per_frame, strict=True):
        if rgb is not None and (idx in overlay_frames or opts.overlay_video):
            ov = render_overlay(rgb, faces, rule["threshold"])
            if idx in overlay_frames:
                result.overlays.append((f"frame{idx:06d}", ov))
            if opts.overlay_video:
                result.video_frames.append(ov)
    rec["seconds"] = round(time.time() - t0, 3)
    progress(1.0, f"{rec['verdict']} ({rec['score']:.2f})")
    return result


def _stride_of(frames: list[tuple[int, float, np.ndarray]]) -> int:
    return frames[1][0] - frames[0][0] if len(frames) > 1 else 1


def _overlay_frame_choice(indices: list[int], opts: ScanOptions) -> set[int]:
    if opts.overlays <= 0 or not indices:
        return set()
    pick = np.linspace(0, len(indices) - 1, num=min(opts.overlays, len(indices))).round().astype(int)
    return {indices[i] for i in pick}


def render_overlay(rgb: np.ndarray, faces: list[_Face], threshold: float) -> np.ndarray:
    """Draw each face's heatmap (warped back from crop to frame) and a box coloured by its score.

    Shape:
        rgb (H, W, 3) uint8; returns (H', W', 3) uint8 with H' ≤ 720 (downscaled for the report).
    """
    import cv2

    out = rgb.astype(np.float32)
    h, w = rgb.shape[:2]
    for f in faces:
        if f.heat is not None:
            inv = cv2.invertAffineTransform(f.matrix.astype(np.float64))
            heat = cv2.warpAffine(f.heat, inv, (w, h), flags=cv2.INTER_LINEAR, borderValue=0)
            colour = cv2.applyColorMap((heat * 255).astype(np.uint8), cv2.COLORMAP_JET)[:, :, ::-1]
            alpha = (0.55 * heat)[:, :, None]
            out = out * (1 - alpha) + colour.astype(np.float32) * alpha
    out = out.clip(0, 255).astype(np.uint8)
    thick = max(2, round(max(h, w) / 300))
    for f in faces:
        x0, y0, x1, y1 = (round(float(v)) for v in f.det_box)
        red = f.score >= threshold
        colour = (230, 40, 40) if red else (40, 200, 60)
        cv2.rectangle(out, (x0, y0), (x1, y1), colour, thick)
        cv2.putText(out, f"{f.score:.2f}", (x0, max(12, y0 - 6)), cv2.FONT_HERSHEY_SIMPLEX, thick / 3, colour, thick)
    scale = min(1.0, 720 / max(h, w))
    if scale < 1.0:
        out = cv2.resize(out, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    return out
