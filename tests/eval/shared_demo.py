"""The shared-data demo of issue 7 (used by ``test_shared_data.py`` and to make docs/report_screenshot.png).

../shared/data/ffpp holds two FF++ pairs: 519 + Deepfakes/519_515 (official *train* split) and 004 +
NeuralTextures/004_982 (official *val* split); the official test split has no video here. To get a test set at all,
:func:`demo_splits` copies the prepared manifest and re-splits it:

* 519 and Deepfakes/519_515: first half of the sampled frames ``train``, next quarter ``val``, last quarter ``test``
  (a *temporal* hold-out of the same videos: same identity, same scene — far weaker than FF++'s video-disjoint
  test split, and said so in every report made from it);
* 004 and NeuralTextures/004_982: all ``test`` (an unseen manipulation on an unseen identity).
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

TEMPORAL = ("519", "Deepfakes/519_515")


def demo_splits(prepared: Path, out: Path) -> Path:
    """Copy ``prepared`` (a prepare output folder) to ``out`` with the demo splits; returns the new manifest."""
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(prepared, out)
    db = sqlite3.connect(out / "manifest.sqlite")
    with db:
        db.execute("PRAGMA journal_mode=DELETE")
        for vid in TEMPORAL:
            frames = [r[0] for r in db.execute("SELECT frame_index FROM faces WHERE video_id=? ORDER BY 1", (vid,))]
            n = len(frames)
            for i, f in enumerate(frames):
                split = "train" if i < n // 2 else ("val" if i < 3 * n // 4 else "test")
                db.execute("UPDATE faces SET split=? WHERE video_id=? AND frame_index=?", (split, vid, f))
        db.execute("UPDATE faces SET split='test' WHERE video_id IN ('004', 'NeuralTextures/004_982')")
        db.execute("UPDATE videos SET split='test' WHERE video_id IN ('004', 'NeuralTextures/004_982')")
    db.close()
    return out / "manifest.sqlite"
