"""Frame sampling a recipe states (``data.sampling``) checked against what a manifest holds.

The papers sample frames differently (LAE §3.1.1: 200 per training video, 10 per validation/test video; LiSiam
§IV-A.3: 30 per training video, 100 per validation/test video; BiG-Arts §4.1: every 10th frame at test; DADD §4.1:
20 per video), while ``dflab prepare`` extracts what it is told (default 32 evenly spaced). A recipe states its
paper's sampling in :class:`~dflab.train.config.SamplingConfig`; ``dflab train`` and ``dflab eval`` call the
functions here and *warn* (never fail) when the manifest or the evaluation settings do not match it, naming the
``dflab prepare`` / ``dflab eval`` option that would.

The checks read facts, never paths: the manifest's ``settings`` meta (``count`` / ``stride`` of ``prepare``) and the
number of distinct frames per video among the rows (median over videos, so a few short videos do not trigger it).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dflab.data.manifest import FaceRow, Manifest


def frames_per_video(rows: Iterable[FaceRow]) -> float:
    """Median number of distinct frames per (dataset, video) among ``rows`` (0 when there are none)."""
    frames: dict[tuple[str, str], set[int]] = {}
    for r in rows:
        frames.setdefault((r.dataset, r.video_id), set()).add(int(r.frame_index))
    return float(np.median([len(v) for v in frames.values()])) if frames else 0.0


def manifest_settings(manifests: Sequence[str | Path]) -> list[dict[str, Any] | None]:
    """``prepare``'s settings (``count``, ``stride``, …) of each manifest; ``None`` for one not made by prepare."""
    out = []
    for m in manifests:
        with Manifest(m, readonly=True) as man:
            out.append(man.get_meta("settings"))
    return out


def _prepared(settings: Mapping[str, Any] | None) -> str:
    if settings is None:
        return "not by dflab prepare"
    if settings.get("stride"):
        return f"dflab prepare --stride {settings['stride']}"
    if settings.get("count"):
        return f"dflab prepare --frames {settings['count']}"
    return "dflab prepare --all"


def _stride_warnings(want: int, settings: Sequence[Mapping[str, Any] | None], what: str) -> list[str]:
    out = []
    for s in settings:
        if s is not None and s.get("stride") != want:
            out.append(
                f"{what} scores every {want}-th frame of a video; this manifest was made with {_prepared(s)}: "
                f"prepare the validation/test videos with --stride {want}"
            )
    return out


def _count_warnings(
    src: str, verb: str, want: int, rows: Sequence[FaceRow], configured: int | None, stream: str, prep: str
) -> list[str]:
    """A stream's frames per video against the paper's: too few in the manifest, or another ``frames_per_video``."""
    out = []
    have = frames_per_video(rows)
    if have < want:
        out.append(
            f"{src} {verb} on {want} frames per video; the rows of {stream} hold a median of {have:g} per video "
            f"({prep}): prepare those videos with --frames {want} (or more)"
        )
    if configured != want:
        out.append(f"{src} {verb} on {want} frames per video; {stream}.frames_per_video is {configured}")
    return out


def train_sampling_warnings(
    sampling: Mapping[str, Any] | None,
    *,
    train_rows: Sequence[FaceRow],
    train_frames_per_video: int | None,
    val_rows: Sequence[FaceRow] = (),
    val_frames_per_video: int | None = None,
    settings: Sequence[Mapping[str, Any] | None] = (),
) -> list[str]:
    """What ``dflab train`` warns about: the recipe's ``data.sampling`` against the training / validation rows.

    Args:
        sampling: the recipe's ``data.sampling`` as a dict (``None``: the recipe states none, nothing to check).
        train_rows: the default (training) stream's rows.
        val_rows: the validation stream's rows.
        train_frames_per_video: the training stream's ``frames_per_video``.
        val_frames_per_video: the validation stream's ``frames_per_video``.
        settings: the training manifest's ``prepare`` settings.
    """
    if not sampling:
        return []
    src = sampling.get("source") or "the recipe's paper"
    prep = ", ".join(sorted({_prepared(s) for s in settings})) or "unknown settings"
    out = []
    n = sampling.get("train_frames")
    if n:
        out += _count_warnings(src, "trains", n, train_rows, train_frames_per_video, "data.streams.default", prep)
    m = sampling.get("eval_frames")
    if m and val_rows:
        out += _count_warnings(src, "validates", m, val_rows, val_frames_per_video, "data.val", prep)
    k = sampling.get("eval_stride")
    if k:
        out += _stride_warnings(k, settings, src)
    return out


def eval_sampling_warnings(
    sampling: Mapping[str, Any] | None,
    *,
    rows: Sequence[FaceRow],
    frames_per_track: int | None,
    settings: Sequence[Mapping[str, Any] | None] = (),
) -> list[str]:
    """What ``dflab eval`` warns about: the checkpoint's training recipe's ``data.sampling`` (from its card) against
    the test rows and ``--frames-per-track``."""
    if not sampling:
        return []
    src = sampling.get("source") or "the recipe's paper"
    out = []
    m = sampling.get("eval_frames")
    if m:
        have = frames_per_video(rows)
        if have < m:
            prep = ", ".join(sorted({_prepared(s) for s in settings})) or "unknown settings"
            out.append(
                f"{src} tests on {m} frames per video; the test rows hold a median of {have:g} ({prep}): prepare the "
                f"test videos with --frames {m} (or more)"
            )
        elif frames_per_track != m:
            used = f"--frames-per-track {frames_per_track}" if frames_per_track else f"all {have:g}"
            out.append(
                f"{src} tests on {m} frames per video; this evaluation scores {used}: pass --frames-per-track {m}"
            )
    k = sampling.get("eval_stride")
    if k:
        out += _stride_warnings(k, settings, src)
        if frames_per_track is not None:
            out.append(f"{src} scores every {k}-th frame; --frames-per-track {frames_per_track} subsamples them again")
    return out
