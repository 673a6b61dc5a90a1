"""Run a loaded detector over manifest rows: one score (and optionally one embedding) per face crop.

Rows come from one or several prepared manifests (:func:`load_rows`); crop paths are made absolute so rows of
different manifests can be mixed (cross-dataset protocols). The crop goes through the checkpoint's own input
contract (:class:`dflab.models.base.InputSpec`: size, mean, std); an optional degradation is applied to the uint8
crop first (robustness sweeps, BiG-Arts §5), per crop or, for video re-encoding, per face track in frame order.
A crop that cannot be read is recorded in :attr:`Predictions.missing`, never silently replaced.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from dflab.data.manifest import FaceRow, Manifest
from dflab.eval.aggregate import Grouped, track_scores, video_scores
from dflab.models.base import Detector, InputSpec

#: output keys searched, in order, for a per-sample embedding (MML embedding, LAE latent z, LiSiam features)
EMBEDDING_KEYS = ("embedding", "embeddings", "features", "feat", "z", "latent")


def load_rows(manifests: Sequence[str | Path], where: dict[str, Any] | None = None) -> list[FaceRow]:
    """Face rows matching ``where`` from every manifest, with absolute crop/original/mask paths.

    Filters on columns a manifest lacks are an error (``KeyError`` from :meth:`Manifest.faces`).
    """
    out: list[FaceRow] = []
    for m in manifests:
        with Manifest(m, readonly=True) as man:
            for r in man.faces(**(where or {})):
                out.append(
                    dataclasses.replace(
                        r,
                        crop_path=str(man.abspath(r.crop_path)),
                        original_crop=str(man.abspath(r.original_crop)) if r.original_crop else "",
                        mask_crop=str(man.abspath(r.mask_crop)) if r.mask_crop else "",
                    )
                )
    return out


def video_paths(manifests: Sequence[str | Path]) -> dict[tuple[str, str], str]:
    """``(dataset, video_id) -> absolute media path`` from the manifests' video tables (for frame overlays)."""
    out: dict[tuple[str, str], str] = {}
    for m in manifests:
        with Manifest(m, readonly=True) as man:
            for v in man.videos():
                out[(v["dataset"], v["video_id"])] = str(man.abspath(v["path"]))
    return out


def subsample_per_track(rows: Sequence[FaceRow], k: int | None) -> list[FaceRow]:
    """Keep at most ``k`` evenly spaced frames per face track (BiG-Arts §4.1 samples every tenth frame)."""
    if not k:
        return list(rows)
    tracks: dict[tuple, list[FaceRow]] = {}
    for r in rows:
        tracks.setdefault((r.dataset, r.video_id, r.track_id), []).append(r)
    out = []
    for t in tracks.values():
        t.sort(key=lambda r: r.frame_index)
        idx = np.unique(np.linspace(0, len(t) - 1, num=min(k, len(t))).round().astype(int))
        out.extend(t[i] for i in idx)
    return out


def read_rgb(path: str | Path) -> np.ndarray:
    """Read an image file as RGB uint8 (H, W, 3); ``FileNotFoundError`` naming the file when unreadable."""
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise FileNotFoundError(f"cannot read image {path}")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def to_tensor(rgbs: Sequence[np.ndarray], spec: InputSpec) -> torch.Tensor:
    """Resize uint8 RGB crops to ``spec.size`` and normalise with ``spec.mean``/``spec.std``
    (:meth:`InputSpec.to_input`).

    Shape:
        rgbs: B × (H, W, 3) uint8; returns (B, 3, size, size) float32.
    """
    return torch.from_numpy(spec.to_input(rgbs))


@dataclass
class Degradation:
    """A deterministic image degradation applied before the detector's preprocessing.

    Attributes:
        name: report name (``jpeg@70``).
        fn: ``fn(rgb) -> rgb`` per crop, or ``fn(list_of_rgb) -> list_of_rgb`` per track when ``per_sequence``.
        per_sequence: the degradation needs a track's frames in order (H.264 re-encoding).
    """

    name: str
    fn: Callable[..., Any]
    per_sequence: bool = False


@dataclass
class Predictions:
    """Per-face scores of one detector over a list of rows.

    Attributes:
        rows: the scored rows (unreadable ones are in ``missing`` instead).
        scores: P(fake) per row, (N,).
        embeddings: (N, D) when requested and the detector gives one, else ``None``.
        missing: ``{"path", "error"}`` records of crops that could not be read.
    """

    rows: list[FaceRow]
    scores: np.ndarray
    embeddings: np.ndarray | None = None
    missing: list[dict[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def labels(self) -> np.ndarray:
        return np.array([r.label for r in self.rows], dtype=np.int64)

    def column(self, name: str) -> list[Any]:
        return [getattr(r, name) for r in self.rows]

    def subset(self, keep: Iterable[bool] | np.ndarray) -> Predictions:
        keep = np.asarray(list(keep) if not isinstance(keep, np.ndarray) else keep, dtype=bool)
        emb = self.embeddings[keep] if self.embeddings is not None else None
        rows = [r for r, k in zip(self.rows, keep, strict=True) if k]
        return Predictions(rows, self.scores[keep], emb, list(self.missing))

    def videos(self, how: str = "mean", track_how: str = "max") -> Grouped:
        """Video-level scores (see :func:`dflab.eval.aggregate.video_scores`)."""
        return video_scores(
            self.column("video_id"),
            self.scores,
            self.labels,
            track_ids=self.column("track_id"),
            datasets=self.column("dataset"),
            how=how,
            track_how=track_how,
        )

    def tracks(self, how: str = "mean") -> Grouped:
        return track_scores(
            self.column("video_id"), self.column("track_id"), self.scores, self.labels, how, self.column("dataset")
        )

    def records(self) -> list[dict[str, Any]]:
        """One flat dict per row (for CSV)."""
        cols = ("dataset", "video_id", "frame_index", "track_id", "label", "method", "split", "compression")
        return [
            {**{c: getattr(r, c) for c in cols}, "score": float(s), "crop_path": r.crop_path}
            for r, s in zip(self.rows, self.scores, strict=True)
        ]


def _embedding(outputs: dict[str, torch.Tensor]) -> torch.Tensor | None:
    for k in EMBEDDING_KEYS:
        v = outputs.get(k)
        if isinstance(v, torch.Tensor) and v.dim() >= 2:
            return v.flatten(1) if v.dim() == 2 else v.float().mean(dim=tuple(range(2, v.dim())))
    return None


@torch.no_grad()
def predict(
    model: Detector,
    rows: Sequence[FaceRow],
    *,
    spec: InputSpec | None = None,
    batch_size: int = 32,
    degradation: Degradation | None = None,
    transform: Callable[[FaceRow, np.ndarray], np.ndarray] | None = None,
    embeddings: bool = False,
    device: str | torch.device = "cpu",
    progress: Callable[[int, int], None] | None = None,
) -> Predictions:
    """Score every row's crop with ``model`` (in eval mode).

    Args:
        model: a detector; ``model.score(model(x))`` gives P(fake).
        rows: rows with absolute ``crop_path`` (see :func:`load_rows`).
        spec: input contract; defaults to ``model.input_spec``.
        batch_size: crops per forward pass.
        degradation: applied to the uint8 crops before preprocessing.
        transform: ``transform(row, rgb) -> rgb`` applied first, per row (partial-face fakes); raising
            ``FileNotFoundError`` or ``ValueError`` records the row as missing.
        embeddings: also return an embedding per row (first of :data:`EMBEDDING_KEYS` found in the outputs).
        device: torch device.
        progress: called with ``(done, total)`` after each batch.
    """
    spec = spec or model.input_spec
    model.eval().to(device)
    images: list[np.ndarray | None] = []
    missing: list[dict[str, str]] = []
    for r in rows:
        try:
            im = read_rgb(r.crop_path)
            images.append(transform(r, im) if transform is not None else im)
        except (FileNotFoundError, ValueError) as exc:
            images.append(None)
            missing.append({"path": r.crop_path, "error": str(exc)})
    if degradation is not None:
        images = _degrade(rows, images, degradation)
    keep = [i for i, im in enumerate(images) if im is not None]
    kept_rows = [rows[i] for i in keep]
    scores: list[np.ndarray] = []
    embs: list[np.ndarray] = []
    for start in range(0, len(keep), batch_size):
        batch = [images[i] for i in keep[start : start + batch_size]]
        x = to_tensor(batch, spec).to(device)  # type: ignore[arg-type]
        out = model(x)
        scores.append(model.score(out).float().cpu().numpy())
        if embeddings:
            e = _embedding(out)
            if e is not None:
                embs.append(e.float().cpu().numpy())
        if progress is not None:
            progress(min(start + batch_size, len(keep)), len(keep))
    s = np.concatenate(scores) if scores else np.zeros(0)
    emb = np.concatenate(embs) if embs and sum(len(e) for e in embs) == len(s) else None
    return Predictions(kept_rows, s.astype(np.float64), emb, missing)


def _degrade(rows: Sequence[FaceRow], images: list[np.ndarray | None], deg: Degradation) -> list[np.ndarray | None]:
    if not deg.per_sequence:
        return [deg.fn(im) if im is not None else None for im in images]
    out = list(images)
    tracks: dict[tuple, list[int]] = {}
    for i, r in enumerate(rows):
        if images[i] is not None:
            tracks.setdefault((r.dataset, r.video_id, r.track_id), []).append(i)
    for idx in tracks.values():
        idx.sort(key=lambda i: rows[i].frame_index)
        res = deg.fn([images[i] for i in idx])
        for i, im in zip(idx, res, strict=True):
            out[i] = im
    return out


_WORKER_MODELS: dict[str, tuple[Detector, InputSpec]] = {}


def predict_task(
    checkpoint: str, positions: list[int], rows: list[FaceRow], kwargs: dict[str, Any]
) -> tuple[list[int], Predictions]:
    """One video's rows as a Ray task: the worker loads the checkpoint once (safetensors + card) and scores them.

    Returns:
        the input positions of the scored rows (unreadable ones left out), and their predictions.
    """
    if checkpoint not in _WORKER_MODELS:
        from dflab.models.checkpoint import load_detector

        loaded = load_detector(checkpoint)
        _WORKER_MODELS[checkpoint] = (loaded.model, loaded.spec)
    model, spec = _WORKER_MODELS[checkpoint]
    pred = predict(model, rows, spec=kwargs.pop("spec", None) or spec, **kwargs)
    kept = {id(r) for r in pred.rows}
    return [p for p, r in zip(positions, rows, strict=True) if id(r) in kept], pred


def predict_on_ray(checkpoint: str | Path, rows: Sequence[FaceRow], *, address: str, **kwargs: Any) -> Predictions:
    """:func:`predict` with one Ray task per video (:mod:`dflab.distributed`); the result is the same, in the same
    row order, as a local :func:`predict` (``kwargs`` are its keyword arguments, without ``progress``/``device``).

    Raises:
        RuntimeError: a video's task failed (after Ray's retries of lost workers).
    """
    from dflab.distributed import run_tasks

    videos: dict[tuple[str, str], list[int]] = {}
    for i, r in enumerate(rows):
        videos.setdefault((r.dataset, r.video_id), []).append(i)
    parts: list[tuple[list[int], Predictions]] = []

    def failed(key: tuple[str, str], exc: BaseException) -> None:
        raise RuntimeError(f"prediction task for video {key} failed: {type(exc).__name__}: {exc}") from exc

    run_tasks(
        predict_task,
        ((key, (str(checkpoint), idx, [rows[i] for i in idx], dict(kwargs))) for key, idx in videos.items()),
        address=address,
        on_result=lambda _key, part: parts.append(part),
        on_failure=failed,
    )
    order = sorted((pos, k, j) for k, (positions, _) in enumerate(parts) for j, pos in enumerate(positions))
    scores = np.array([parts[k][1].scores[j] for _, k, j in order], dtype=np.float64)
    emb = None
    if order and all(parts[k][1].embeddings is not None for _, k, _ in order):
        emb = np.stack([parts[k][1].embeddings[j] for _, k, j in order])
    missing = [m for _, pred in parts for m in pred.missing]
    return Predictions([rows[pos] for pos, _, _ in order], scores, emb, missing)
