"""Checkpoint selection on validation data only (STYLE.md: "checkpoints selected on the test set" is what not to do).

LAE §3.1: the unseen set "only serves the testing purpose, and none of its images is used for model training,
hyperparameters tuning or validation purposes"; DADD §4.1: "We select the model via the validation set of
FaceForensics++". :func:`select_checkpoint` enforces both: the split must be the protocol's validation split and
the selection rows may not share a single video with any of the protocol's test sets.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from dflab.data.manifest import FaceRow
from dflab.eval import metrics
from dflab.eval.predict import load_rows, predict, subsample_per_track
from dflab.eval.protocols import Protocol, SelectionError


def selection_rows(
    protocol: Protocol,
    manifests: Sequence[str | Path],
    split: str = "val",
    test_where: dict[str, dict[str, Any]] | None = None,
) -> list[FaceRow]:
    """Rows on which a checkpoint may be selected; raises :class:`SelectionError` for test data.

    Args:
        protocol: the protocol.
        manifests: prepared manifests.
        split: requested selection split (must be the protocol's validation split).
        test_where: the test filters actually used (after ``--where`` overrides), by test-set name; defaults to
            the protocol's own.
    """
    protocol.check_selection(split)
    rows = load_rows(manifests, {**protocol.select, "split": split})
    if not rows:
        raise SelectionError(f"no {split!r} rows for protocol {protocol.name!r} (filters {protocol.select})")
    wheres = test_where or {t.name: t.where for t in protocol.tests}
    test_videos = {(r.dataset, r.video_id) for w in wheres.values() for r in load_rows(manifests, w)}
    leak = sorted({(r.dataset, r.video_id) for r in rows} & test_videos)
    if leak:
        raise SelectionError(
            f"protocol {protocol.name!r} refuses to select on data that is also test data: {len(leak)} video(s) in "
            f"both, e.g. {leak[:3]}"
        )
    return rows


def select_checkpoint(
    checkpoints: Sequence[str | Path],
    protocol: Protocol,
    manifests: Sequence[str | Path],
    *,
    split: str = "val",
    metric: str = "auc",
    level: str = "video",
    frames_per_track: int | None = None,
    loader: Callable[[str | Path], Any] | None = None,
    test_where: dict[str, dict[str, Any]] | None = None,
    batch_size: int = 32,
) -> dict[str, Any]:
    """Score each checkpoint on the validation rows and return the best by ``metric`` (``eer``: lowest).

    Args:
        checkpoints: checkpoint paths.
        protocol: the protocol whose validation split is used.
        manifests: prepared manifests.
        split: selection split; anything but the protocol's validation split is refused.
        metric: a key of :func:`dflab.eval.metrics.binary_metrics`.
        level: ``video`` or ``frame``.
        frames_per_track: subsample the validation rows.
        loader: ``path -> object with .model and .spec``; defaults to :func:`dflab.models.checkpoint.load_detector`.
        test_where: the test filters in use (see :func:`selection_rows`).
        batch_size: crops per forward pass.

    Returns:
        ``{"best": path, "metric", "level", "split", "candidates": [{"checkpoint", "value", ...}]}``.
    """
    rows = subsample_per_track(selection_rows(protocol, manifests, split, test_where), frames_per_track)
    if loader is None:
        from dflab.models.checkpoint import load_detector as loader
    table = []
    for ck in checkpoints:
        loaded = loader(ck)
        pred = predict(loaded.model, rows, spec=loaded.spec, batch_size=batch_size)
        if level == "video":
            g = pred.videos()
            vals = metrics.binary_metrics(g.labels, g.scores)
        else:
            vals = metrics.binary_metrics(pred.labels, pred.scores)
        table.append({"checkpoint": str(ck), "value": vals[metric], "n": vals["n"]})
    sign = -1.0 if metric == "eer" else 1.0
    valid = [t for t in table if t["value"] == t["value"]]  # drop nan
    if not valid:
        raise SelectionError(f"{metric} is undefined on the {split!r} rows (one class only?)")
    best = max(valid, key=lambda t: sign * t["value"])
    return {"best": best["checkpoint"], "metric": metric, "level": level, "split": split, "candidates": table}
