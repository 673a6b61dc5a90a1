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
from tune_tail import Shipped

GROUPS = {
    "blocks 6-12": tuple(range(6, 13)),
    "blocks 4-12": tuple(range(4, 13)),
    "blocks 8-12": tuple(range(8, 13)),
}


def main() -> None:
    run = Shipped.load()
    sh, shv = run.loso()
    run.summary("shipped", sh, shv)
    per_block = {}
    for b in sorted({b for g in GROUPS.values() for b in g}):
        per_block[b] = run.loso(blocks=(b,))
        run.summary(f"block {b} alone", *per_block[b])
    for name, group in GROUPS.items():
        oof = np.mean([per_block[b][0] for b in group], axis=0)
        voof = {i: np.mean([per_block[b][1][i] for b in group], axis=0) for i in per_block[group[0]][1]}
        run.summary(f"mean of {name}", oof, voof)
    if os.environ.get("KIND_SETS"):  # e.g. b9-12_cls_mean,b11_cls_mean: video faces scored by that set's probe
        video = np.array([td.kind_of(m["file"]) == "video" for m in run.meta])
        for vs in os.environ["KIND_SETS"].split(","):
            blocks, tokens = td.FEATURE_SETS[vs]
            o, _ = run.loso(blocks=blocks, tokens=tokens, views={})
            run.summary(f"videos by {vs}", np.where(video, o, sh), shv)


if __name__ == "__main__":
    main()
