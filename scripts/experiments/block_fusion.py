"""Experiment (issue 11): one probe per CLIP block, their logits averaged (RINE's per-layer view), and a probe per
media kind's best blocks, against the shipped single probe on the concatenated blocks.

The note that started the default (``../shared/notes/clip-probe.md``) found that the block serving video faces best
(11) is not the one serving stills best (5-7), and that a plain concatenation does not combine them well. The
shipped probe is one logistic regression on blocks 6-12 concatenated (standardised, PCA 384). Here each block gets
its own probe (its class and mean patch token, the same standardisation, PCA and C), and a face's logit is the mean
of the blocks' logits: an ensemble that is still one linear map of the features (so it would cost the scanner
nothing). Measured under the default's protocol (LOSO folds, the scanner's aggregation and per-kind calibration,
bands chosen and judged on held-out halves)::

    DFLAB_DEFAULT_RUN=runs/clip_b3 python scripts/experiments/block_fusion.py    # ~15 min here
    KIND_SETS=b9-12_cls_mean,b11_cls_mean python scripts/experiments/block_fusion.py   # + video faces by those sets

Results are in docs/default-weights.md.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import train_default as td
from tune_tail import summary

GROUPS = {
    "blocks 6-12": tuple(range(6, 13)),
    "blocks 4-12": tuple(range(4, 13)),
    "blocks 8-12": tuple(range(8, 13)),
}


def main() -> None:
    feats, meta = td.load_features()
    views = td.load_views()
    blocks, tokens, c, labelled = td.shipped_recipe()
    weight = td.face_weights(meta)
    orig = np.array([m["variant"] == "orig" for m in meta])
    sh, shv = td.loso(feats, meta, blocks, tokens, (c,), labelled, views, weight=weight)
    summary("shipped", meta, orig, sh[c], shv[c])
    per_block = {}
    for b in sorted({b for g in GROUPS.values() for b in g}):
        o, v = td.loso(feats, meta, (b,), tokens, (c,), labelled, views, weight=weight)
        per_block[b] = (o[c], v[c])
        summary(f"block {b} alone", meta, orig, *per_block[b])
    for name, group in GROUPS.items():
        oof = np.mean([per_block[b][0] for b in group], axis=0)
        voof = {i: np.mean([per_block[b][1][i] for b in group], axis=0) for i in per_block[group[0]][1]}
        summary(f"mean of {name}", meta, orig, oof, voof)
    if os.environ.get("KIND_SETS"):  # e.g. b9-12_cls_mean,b11_cls_mean: video faces scored by that set's probe
        video = np.array([td.kind_of(m["file"]) == "video" for m in meta])
        for vs in os.environ["KIND_SETS"].split(","):
            o, _ = td.loso(feats, meta, *td.FEATURE_SETS[vs], (c,), labelled, None, weight=weight)
            mixed = np.where(video, o[c], sh[c])
            summary(f"videos by {vs}", meta, orig, mixed, shv[c])


if __name__ == "__main__":
    main()
