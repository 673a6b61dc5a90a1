"""``dflab eval`` / ``dflab robustness`` / ``dflab compare`` on a saved tiny checkpoint and a synthetic manifest."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dflab.cli import main
from dflab.models.base import InputSpec, build_detector


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> list[Path]:
    from dflab.models.checkpoint import save_detector

    root = tmp_path_factory.mktemp("ck")
    out = []
    for i in range(2):
        model = build_detector("resnet18_tiny")
        model.input_spec = InputSpec(size=32)
        out.append(save_detector(model, root / f"ck{i}", {"training": {"streams": {"default": {"methods": ["real"]}}}}))
    return [p.parent for p in out]


def test_eval_cli_writes_json_and_html(tmp_path: Path, synth_manifest: Path, checkpoints: list[Path]) -> None:
    out = tmp_path / "run"
    rc = main(
        [
            "eval",
            str(checkpoints[0]),
            "--protocol",
            "within",
            "--data",
            str(synth_manifest),
            "--out",
            str(out),
            "--bootstrap",
            "20",
            "--gallery",
            "1",
            "--no-tsne",
            "--robustness",
            "jpeg",
        ]
    )
    assert rc == 0
    res = json.loads((out / "results.json").read_text())
    assert res["tests"]["test"]["status"] == "ok" and res["tests"]["test"]["video"]["n"] == 4
    assert res["checkpoint"]["card"]["detector"] == "resnet18"
    assert [lv["level"] for lv in res["robustness"]["sweeps"]["jpeg"]["levels"]] == [100, 90, 80, 70, 60]
    assert (out / "report.html").stat().st_size > 10_000
    # compare reads it back
    assert main(["compare", str(out), str(out)]) == 0


def test_eval_cli_refuses_selection_on_test(tmp_path: Path, synth_manifest: Path, checkpoints: list[Path]) -> None:
    args = ["eval", *map(str, checkpoints), "--data", str(synth_manifest), "--out", str(tmp_path / "o")]
    assert main([*args, "--select", "--select-split", "test"]) == 3
    assert main(args) == 2  # several checkpoints without --select
    assert not (tmp_path / "o" / "results.json").exists()
    assert main([*args, "--select", "--bootstrap", "0", "--gallery", "0", "--no-tsne", "--no-average"]) == 0
    res = json.loads((tmp_path / "o" / "results.json").read_text())
    assert res["selection"]["split"] == "val" and len(res["selection"]["candidates"]) == 2


def test_robustness_cli(tmp_path: Path, synth_manifest: Path, checkpoints: list[Path]) -> None:
    out = tmp_path / "rob"
    rc = main(
        ["robustness", str(checkpoints[0]), "--data", str(synth_manifest), "--sweeps", "blur,h264", "--out", str(out)]
    )
    assert rc == 0
    res = json.loads((out / "results.json").read_text())
    assert set(res["robustness"]["sweeps"]) == {"blur", "h264"}
    assert "data:image/png;base64," in (out / "report.html").read_text()
