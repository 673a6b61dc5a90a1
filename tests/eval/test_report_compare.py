"""JSON strictness, plots as data URIs, and the comparison table."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from dflab.eval import compare
from dflab.eval.report import fig_uri, hist_figure, img_uri, metrics_table, roc_figure, write_json


def test_write_json_is_strict(tmp_path: Path) -> None:
    p = write_json(tmp_path / "r.json", {"a": float("nan"), "b": np.float32(0.5), "c": np.arange(3), "d": (1, 2)})
    assert json.loads(p.read_text()) == {"a": None, "b": 0.5, "c": [0, 1, 2], "d": [1, 2]}


def test_plots_and_images_are_data_uris() -> None:
    fig = roc_figure({"x": (np.array([0, 0, 1]), np.array([0, 1, 1]), 1.0)}, "roc")
    assert fig_uri(fig).startswith("data:image/png;base64,")
    assert fig_uri(hist_figure({"real": np.array([0.1, 0.2])}, "h")).startswith("data:image/png;base64,")
    assert img_uri(np.zeros((600, 300, 3), np.uint8)).startswith("data:image/jpeg;base64,")


def test_metrics_table_shows_na_for_undefined() -> None:
    m = {
        "auc": math.nan,
        "eer": None,
        "ap": 0.5,
        "acc": 1.0,
        "precision": 1.0,
        "recall": 1.0,
        "f1": 1.0,
        "n": 2,
        "n_fake": 0,
        "n_real": 2,
    }
    html = metrics_table({"t": {"status": "ok", "frame": m, "video": m}, "u": {"status": "no data", "reason": "x"}})
    assert "n/a" in html and "no data" in html


def _run(tmp_path: Path, name: str, detector: str, aucs: dict[str, float | None]) -> Path:
    tests = {
        k: ({"status": "ok", "video": {"auc": v}, "frame": {"auc": v}} if v is not None else {"status": "no data"})
        for k, v in aucs.items()
    }
    res = {"kind": "eval", "protocol": {"name": "p"}, "checkpoint": {"card": {"detector": detector}}, "tests": tests}
    return write_json(tmp_path / name / "results.json", res).parent


def test_compare_table_like_the_papers(tmp_path: Path, capsys) -> None:
    a = _run(tmp_path, "a", "big_arts", {"UADFV": 0.9, "FF++": 0.8})
    b = _run(tmp_path, "b", "lisiam", {"UADFV": 0.7, "FF++": None, "DFD": 0.6, "WildDeepfake": None})
    header, rows = compare.table([compare.load_run(a), compare.load_run(b)])
    assert header == ["run", "protocol", "UADFV", "FF++", "DFD", "Avg"]
    assert rows[0][0] == "big_arts" and abs(rows[0][-1] - 0.85) < 1e-12
    # a missing cell does not enter the average; a test set with data in no run gets no column
    assert rows[1][3] is None and abs(rows[1][-1] - 0.65) < 1e-12
    md = compare.to_markdown(header, rows)
    assert "| big_arts | p | 0.9000 | 0.8000 | – | 0.8500 |" in md
    import argparse

    parser = argparse.ArgumentParser()
    compare.add_arguments(parser)
    assert compare.run(parser.parse_args([str(a), str(b), "--format", "csv"])) == 0
    assert "UADFV" in capsys.readouterr().out


def test_compare_robustness_columns_are_not_averaged(tmp_path: Path) -> None:
    run = json.loads((_run(tmp_path, "a", "x", {"t": 0.5}) / "results.json").read_text())
    run["_path"] = str(tmp_path / "a" / "results.json")
    lv = {"auc": 1.0}
    run["robustness"] = {"sweeps": {"jpeg": {"levels": [{"level": 90, "video": lv, "frame": lv}]}}}
    header, rows = compare.table([run], robustness=True)
    assert header == ["run", "protocol", "t", "Avg", "jpeg@90"]
    assert rows[0][3] == 0.5 and rows[0][4] == 1.0
    assert compare.table([run])[0] == ["run", "protocol", "t", "Avg"]
