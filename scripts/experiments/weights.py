"""Experiment (issue 11): how much the labelled fakes weigh against the synthesised twins in the probe's fit.

Everything that added faces to one side moved the balance and cost: a second SBI twin per real face (0.839), all 32
frames of each real video with their twins (0.860). The labelled fakes of other sources are what teaches
whole-face synthesis (+0.05-0.09 when LOSO first chose them), and they are ~650 faces against ~1,640 twins. This
re-weights the faces in the logistic fit (class balance kept) instead of adding any, under the LOSO protocol on the
shipped set (resampled reals).

    python scripts/experiments/weights.py    # LOSO per weighting (WEIGHTS="fakes:2,twins:0.5" picks)

Results are in docs/default-weights.md.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pooling
import real_aug

td, tt = pooling.td, pooling.tt


def main() -> None:
    x, mm, views = real_aug.shipped_set()
    td.select = pooling.select
    fakes = np.array([m["variant"] == "orig" and m["label"] == 1 for m in mm])
    twins = np.array([m["variant"] in ("sbi", "addg") for m in mm])
    videos = np.array([td.kind_of(m["file"]) == "video" for m in mm])
    groups = {"fakes": fakes, "twins": twins, "videos": videos}
    o = np.array([m["variant"] == "orig" for m in mm])
    spec = os.environ.get("WEIGHTS", "none,fakes:2,fakes:4,twins:0.5")
    for name in spec.split(","):
        w = None
        if name != "none":
            w = np.ones(len(mm))
            for part in name.split("+"):
                g, v = part.split(":")
                w[groups[g]] *= float(v)
        oofs, voofs = td.loso(
            x, mm, tuple(range(4, 13)), ("cls", "mean"), (0.01,), labelled=True, views=views, weight=w
        )
        tt.summary(name, mm, o, oofs[0.01], voofs[0.01])


if __name__ == "__main__":
    main()
