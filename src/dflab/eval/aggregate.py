"""Frame → face-track → video aggregation over explicit ids (STYLE.md §9: never parsed from paths).

Video score = mean of its frame scores by default, as BiG-Arts §4.1 ("we sample one frame every ten frames in each
video and average the scores of these frames as the score of video") and LiSiam §IV-C (video-level results by
averaging the frames). When a video holds several faces, frames are first aggregated per face track and the
track scores are then combined with ``track_how`` (default ``max``: a video is as fake as its most fake face, e.g.
a DFDC video in which one of two people is swapped). For a one-face video both steps reduce to the frame mean.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

Reducer = Callable[[np.ndarray], float]


def _vote(s: np.ndarray) -> float:
    return float(np.mean(s >= 0.5))


def _logit_mean(s: np.ndarray) -> float:
    p = np.clip(s, 1e-6, 1 - 1e-6)
    m = float(np.mean(np.log(p / (1 - p))))
    return float(1 / (1 + np.exp(-m)))


#: name -> reducer of a 1-D score array
REDUCERS: dict[str, Reducer] = {
    "mean": lambda s: float(np.mean(s)),
    "median": lambda s: float(np.median(s)),
    "max": lambda s: float(np.max(s)),
    "min": lambda s: float(np.min(s)),
    "vote": _vote,
    "logit_mean": _logit_mean,
}


def reducer(name: str) -> Reducer:
    try:
        return REDUCERS[name]
    except KeyError:
        raise KeyError(f"unknown aggregation {name!r}; known: {', '.join(sorted(REDUCERS))}") from None


@dataclass
class Grouped:
    """Scores aggregated per group.

    Attributes:
        keys: group keys in first-appearance order, one tuple per group.
        scores: aggregated score per group, (G,).
        labels: group label = max of member labels (a group with any fake member is fake), (G,).
        sizes: number of members per group, (G,).
    """

    keys: list[tuple]
    scores: np.ndarray
    labels: np.ndarray
    sizes: np.ndarray


def group_scores(keys: Sequence[tuple], scores: np.ndarray, labels: np.ndarray, how: str = "mean") -> Grouped:
    """Aggregate ``scores`` over rows sharing a key.

    Shape:
        keys: N tuples; scores (N,); labels (N,).
    """
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels).astype(np.int64)
    if not (len(keys) == scores.size == labels.size):
        raise ValueError(f"keys ({len(keys)}), scores ({scores.size}) and labels ({labels.size}) differ in length")
    fn = reducer(how)
    index: dict[tuple, list[int]] = {}
    for i, k in enumerate(keys):
        index.setdefault(tuple(k), []).append(i)
    out_keys = list(index)
    agg = np.array([fn(scores[idx]) for idx in index.values()], dtype=np.float64)
    lab = np.array([int(labels[idx].max()) for idx in index.values()], dtype=np.int64)
    sizes = np.array([len(idx) for idx in index.values()], dtype=np.int64)
    return Grouped(out_keys, agg, lab, sizes)


def track_scores(
    video_ids: Sequence[str],
    track_ids: Sequence[int],
    scores: np.ndarray,
    labels: np.ndarray,
    how: str = "mean",
    datasets: Sequence[str] | None = None,
) -> Grouped:
    """Per face-track scores; keys are ``(dataset, video_id, track_id)``.

    Shape:
        video_ids, track_ids, datasets: N each; scores (N,); labels (N,).
    """
    ds = datasets if datasets is not None else [""] * len(video_ids)
    keys = [(d, v, int(t)) for d, v, t in zip(ds, video_ids, track_ids, strict=True)]
    return group_scores(keys, scores, labels, how)


def video_scores(
    video_ids: Sequence[str],
    scores: np.ndarray,
    labels: np.ndarray,
    *,
    track_ids: Sequence[int] | None = None,
    datasets: Sequence[str] | None = None,
    how: str = "mean",
    track_how: str = "max",
) -> Grouped:
    """Video-level scores; keys are ``(dataset, video_id)``.

    Frames are reduced per face track with ``how``; the tracks of a video are reduced with ``track_how``.

    Shape:
        video_ids, track_ids, datasets: N each; scores (N,); labels (N,).
    """
    tids = track_ids if track_ids is not None else [0] * len(video_ids)
    tracks = track_scores(video_ids, tids, scores, labels, how, datasets)
    vkeys = [k[:2] for k in tracks.keys]
    videos = group_scores(vkeys, tracks.scores, tracks.labels, track_how)
    # sizes count frames, not tracks
    n_frames: dict[tuple, int] = {}
    for k, n in zip(vkeys, tracks.sizes, strict=True):
        n_frames[k] = n_frames.get(k, 0) + int(n)
    videos.sizes = np.array([n_frames[k] for k in videos.keys], dtype=np.int64)
    return videos
