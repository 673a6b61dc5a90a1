"""Whether two ``dflab prepare`` output folders hold the same results: manifest and crop pixels.

A speed change to ``dflab prepare`` must not change what it writes. Run the same command with the old and the new
code into two folders, then::

    python -m bench.compare_prepare OLD_OUT NEW_OUT

Compared: every row of the manifest's ``faces``, ``videos`` and ``events`` tables (and the order of each video's
face rows), its ``meta`` entries, and the decoded pixels of every PNG under ``crops/`` (the file bytes may differ:
PNG is lossless, and the encoder's filter and compression are free to change). Exit code 0 when equal, 1 otherwise.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
from pathlib import Path

import cv2
import numpy as np

MANIFEST = "manifest.sqlite"
#: per table: the columns that identify a row (rows are compared in this order)
TABLE_KEYS = {
    "faces": "dataset, video_id, frame_index, track_id",
    "videos": "dataset, video_id",
    "events": "dataset, video_id, frame_index, kind",
}
#: meta entries that may differ between two equal runs
VOLATILE_META = frozenset({"created", "updated", "seconds"})


def _rows(db: Path, table: str) -> list[tuple]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
        return con.execute(f"SELECT * FROM {table} ORDER BY {TABLE_KEYS[table]}").fetchall()


def _video_order(db: Path) -> dict[tuple[str, str], list[tuple[int, int]]]:
    """Each video's face rows in the order they were written."""
    order: dict[tuple[str, str], list[tuple[int, int]]] = {}
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
        for ds, vid, frame, track in con.execute(
            "SELECT dataset, video_id, frame_index, track_id FROM faces ORDER BY rowid"
        ):
            order.setdefault((ds, vid), []).append((frame, track))
    return order


def _meta(db: Path) -> dict[str, str]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
        return {k: v for k, v in con.execute("SELECT key, value FROM meta") if k not in VOLATILE_META}


def _crops(out: Path) -> list[Path]:
    """Every crop file (a folder may be named ``*.png`` too: an image's crops live in a folder named after it)."""
    return sorted(p.relative_to(out) for p in (out / "crops").rglob("*.png") if p.is_file())


def compare(old: Path, new: Path, max_report: int = 10) -> list[str]:
    """Differences between two prepare output folders (empty when equal)."""
    diffs: list[str] = []
    a, b = old / MANIFEST, new / MANIFEST
    for table in TABLE_KEYS:
        ra, rb = _rows(a, table), _rows(b, table)
        if len(ra) != len(rb):
            diffs.append(f"{table}: {len(ra)} rows against {len(rb)}")
        bad = [(x, y) for x, y in zip(ra, rb, strict=False) if x != y]
        diffs += [f"{table}: {x} != {y}" for x, y in bad[:max_report]]
    if _video_order(a) != _video_order(b):
        diffs.append("faces: a video's rows were written in another order")
    if _meta(a) != _meta(b):
        diffs.append(f"meta: {_meta(a)} != {_meta(b)}")
    crops_a = _crops(old)
    crops_b = _crops(new)
    if crops_a != crops_b:
        diffs.append(f"crop files differ: {sorted(set(crops_a) ^ set(crops_b))[:max_report]}")
    n_bad = 0
    for rel in sorted(set(crops_a) & set(crops_b)):
        pa = cv2.imread(str(old / rel), cv2.IMREAD_UNCHANGED)
        pb = cv2.imread(str(new / rel), cv2.IMREAD_UNCHANGED)
        if pa is None or pb is None or pa.shape != pb.shape or not np.array_equal(pa, pb):
            n_bad += 1
            if n_bad <= max_report:
                diffs.append(f"crop pixels differ: {rel}")
    if n_bad > max_report:
        diffs.append(f"... {n_bad} crops differ in all")
    return diffs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("old", type=Path)
    parser.add_argument("new", type=Path)
    args = parser.parse_args(argv)
    diffs = compare(args.old, args.new)
    n_faces = len(_rows(args.new / MANIFEST, "faces"))
    n_crops = len(_crops(args.new))
    for d in diffs:
        print(d)
    print(f"{'DIFFERENT' if diffs else 'equal'}: {n_faces} face rows, {n_crops} crops")
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main())
