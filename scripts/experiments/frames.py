"""Experiment (issue 11): all 32 prepared frames of each real video in training, not 12.

The default encodes :data:`train_default.REAL_FRAMES` = 12 of the 32 prepared frames of a real video (each with
its twin). Issue 11 asked for many frames per video (≥ 32): more of a real video's motion blur, compression and
expressions, each with a twin. This encodes the other frames of every real video (and their SBI / ADDG twins,
replayed by ``train_default.item_crop`` with the seeds of a 32-frame plan) and adds them to training only: the
validation still scores the same faces of each file, so the numbers compare with the shipped set's.

    python scripts/experiments/frames.py make    # crops + encode, resumable by chunk
    python scripts/experiments/frames.py eval    # LOSO: shipped set, + the extra frames (and twins)

Results are in docs/default-weights.md.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pooling
import real_aug
import tune_ln

td, tt = pooling.td, pooling.tt
RUN = td.RUN
OUT = RUN / "frames"
CHUNK = 128


def extra_items() -> list[tuple[str, dict, object]]:
    """(file, item, row) of the 32-frame plan of the real videos that the shipped 12-frame plan does not hold."""
    from dflab.data.manifest import Manifest

    with Manifest(RUN / "faces", readonly=True) as man:
        rows = man.faces()
    shipped = td.plan(rows)
    real_frames, td.REAL_FRAMES = td.REAL_FRAMES, td.PREPARE_FRAMES
    try:
        wide = td.plan(rows)
    finally:
        td.REAL_FRAMES = real_frames
    out = []
    for key, items in wide.items():
        have = {(it["row"], it["variant"]) for it in shipped[key]}
        out += [
            (key, it, rows[it["row"]])
            for it in items
            if it["variant"] != "resampled" and (it["row"], it["variant"]) not in have
        ]
    return out


def _meta(key: str, item: dict, row) -> dict:
    variant = "extra" if item["variant"] == "orig" else item["variant"]
    return {
        "variant": variant,
        "file": key,
        "frame": row.frame_index,
        "track": row.track_id,
        "label": td.item_label(item["variant"], row.label),
        "source": td.source_of(row),
    }


def cmd_make() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    items = extra_items()
    (OUT / "meta.json").write_text(json.dumps([_meta(*x) for x in items]))

    def make(start: int, stop: int) -> tuple[list, list]:
        made = [td.item_crop(key, it, row) for key, it, row in items[start:stop]]
        return [tune_ln._resized(m[0]) for m in made], [m[1] for m in made]

    pooling.encode_chunks(OUT, len(items), make, CHUNK)


def cmd_eval() -> None:
    base_x, base_m, views = real_aug.shipped_set()
    td.select = pooling.select
    src = {m["file"]: m for m in base_m}
    em = [src[m["file"]] | m for m in json.loads((OUT / "meta.json").read_text())]
    ef = pooling.load_chunks(OUT)
    em = em[: len(ef)]
    runs = {
        "shipped set (resampled reals)": (base_x, base_m),
        "+ the other 20 frames of each real video": (np.concatenate([base_x, ef]), base_m + em),
        "+ their reals only (no twins)": (
            np.concatenate([base_x, ef[[m["variant"] == "extra" for m in em]]]),
            base_m + [m for m in em if m["variant"] == "extra"],
        ),
    }
    blocks = tuple(range(int(os.environ.get("FIRST", "4")), 13))
    for name, (x, mm) in runs.items():
        o = np.array([m["variant"] == "orig" for m in mm])
        oofs, voofs = td.loso(x, mm, blocks, ("cls", "mean"), (0.01,), labelled=True, views=views)
        tt.summary(name, mm, o, oofs[0.01], voofs[0.01])


if __name__ == "__main__":
    {"make": cmd_make, "eval": cmd_eval}[sys.argv[1]]()
