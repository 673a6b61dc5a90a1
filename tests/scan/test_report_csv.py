"""CSV reports never let a cell start a spreadsheet formula (issue 14, item 12)."""

from __future__ import annotations

import csv

import pytest

from dflab.scan.report import write_csv


@pytest.mark.parametrize("name", ['=HYPERLINK("http://x","y").jpg', "+1.png", "-2+3.mp4", "@SUM(A1).png", "\tx.png"])
def test_formula_like_cells_are_escaped(tmp_path, name):
    records = [
        {"path": name, "status": "error", "verdict": "error", "score": None, "ci": None,
         "error": {"cause": "not_media", "detail": "=cmd|' /C calc'!A0"}},
        {"path": "ok.png", "status": "ok", "verdict": "real", "score": 0.25, "ci": [0.2, 0.3], "n_faces": 1},
    ]  # fmt: skip
    out = write_csv(records, tmp_path / "scan.csv")
    rows = list(csv.DictReader(out.open(newline="")))
    assert rows[0]["path"] == "'" + name
    assert rows[0]["error"] == "not_media: =cmd|' /C calc'!A0"  # starts with the cause: harmless
    assert rows[1]["path"] == "ok.png" and rows[1]["score"] == "0.2500"
    for row in rows:
        for value in row.values():
            assert not value.startswith(("=", "+", "-", "@", "\t", "\r"))
