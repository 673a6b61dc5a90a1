"""Experiment (issue 11): one probe per media kind instead of the shared one.

The default's probe is fitted on still and video faces together and calibrated per kind; videos are its weak side.
Video faces are smaller and compressed, stills are not, so a probe fitted on video faces alone (or with them weighted
up) might read videos better. This measures it on ``train_default``'s own feature cache and folds (GroupKFold over
sources, the shipped recipe from the card): the training faces of the other sources are restricted to one kind
(``train_default.loso``'s ``train`` mask: the other kind takes no part in a fold's fit, its standardisation and PCA
included) or re-weighted, and every held-out face is scored. File AUC per kind from the scanner's aggregation
(within a kind the per-kind calibration does not change the ranking); stills without their test-time views, so
their numbers sit a little below the card's::

    python scripts/experiments/kind_probe.py    # ~3 min here

Results are in docs/default-weights.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import train_default as td


def main() -> None:
    feats, meta = td.load_features()
    blocks, tokens, c, labelled = td.shipped_recipe()
    assert labelled, "the shipped probe trains with the labelled fakes"
    orig = np.array([m["variant"] == "orig" for m in meta])
    video = np.array([td.kind_of(m["file"]) == "video" for m in meta])
    w = td.face_weights(meta)
    print(f"{len(meta)} faces, {int(video.sum())} of them from videos", flush=True)
    variants = {
        "shared probe (shipped)": w,
        "video faces x3": w * np.where(video, 3.0, 1.0),
        "video faces only": np.where(video, w, 0.0),
        "still faces only": np.where(video, 0.0, w),
    }
    for name, weight in variants.items():
        oofs, _ = td.loso(feats, meta, blocks, tokens, (c,), labelled, weight=weight, train=weight > 0)
        files = td.file_scores(meta, oofs[c], orig)
        cells = []
        for kind in ("video", "image"):
            names = [n for n in files if td.kind_of(n) == kind]
            cells.append(f"{kind} {td.auc([files[n]['label'] for n in names], [files[n]['logit'] for n in names])}")
        print(f"{name:24s} " + "  ".join(cells), flush=True)


if __name__ == "__main__":
    main()
