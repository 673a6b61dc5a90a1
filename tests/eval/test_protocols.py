"""Protocols as data, and the refusal to select a checkpoint on test data."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from dflab.eval.protocols import FFPP_METHODS, PROTOCOLS, SelectionError, get_protocol
from dflab.eval.select import select_checkpoint, selection_rows
from tests.eval.evalkit import STANDARD, BrightnessDetector, make_manifest


def test_registered_protocols_cover_the_papers() -> None:
    assert {
        "within",
        "cross_dataset_ffpp",
        "cross_dataset_celebdf",
        "cross_manipulation_ffpp",
        "cross_quality_ffpp",
        "partial_face",
        "folder",
    } <= set(PROTOCOLS.names())
    cm = get_protocol("cross_manipulation_ffpp")
    assert [t.name for t in cm.tests] == list(FFPP_METHODS)
    assert all(t.where["method"] == ["real", t.name] and t.where["split"] == "test" for t in cm.tests)
    assert [t.name for t in get_protocol("cross_quality_ffpp").tests] == ["c0", "c23", "c40"]
    names = [t.name for t in get_protocol("cross_dataset_ffpp").tests]
    assert {"Celeb-DF", "DFDC", "DFD", "UADFV", "DT-LQ", "DT-HQ", "WildDeepfake"} <= set(names)
    # every protocol selects on val and never tests on it
    for name in PROTOCOLS.names():
        p = get_protocol(name)
        assert p.select.get("split") == "val"
        assert "val" not in p.test_splits()


def test_unknown_protocol_names_the_known_ones() -> None:
    with pytest.raises(KeyError, match="within"):
        get_protocol("nope")


def _loader(_path: str) -> SimpleNamespace:
    model = BrightnessDetector()
    return SimpleNamespace(model=model, spec=model.input_spec)


def test_protocol_refuses_to_select_on_test_split(synth_manifest: Path) -> None:
    p = get_protocol("within")
    with pytest.raises(SelectionError, match="refuses to select a checkpoint on split 'test'"):
        p.check_selection("test")
    with pytest.raises(SelectionError, match="test data"):
        select_checkpoint(["a", "b"], p, [synth_manifest], split="test", loader=_loader)
    # a split that is not the protocol's validation split is refused too
    with pytest.raises(SelectionError, match="selects on split 'val'"):
        select_checkpoint(["a"], p, [synth_manifest], split="train", loader=_loader)


def test_selection_refused_when_val_rows_share_a_video_with_test(synth_manifest: Path) -> None:
    p = get_protocol("within")
    # overriding the test filter to read the val split makes the selection data test data: refused
    with pytest.raises(SelectionError, match="also test data"):
        selection_rows(p, [synth_manifest], "val", test_where={"test": {"split": "val"}})


def test_selection_on_val_picks_the_better_checkpoint(synth_manifest: Path) -> None:
    def loader(path: str) -> SimpleNamespace:
        m = BrightnessDetector()
        if path == "inverted":
            m.gain = -10.0  # ranks reals above fakes: AUC 0 on val
        return SimpleNamespace(model=m, spec=m.input_spec)

    sel = select_checkpoint(["inverted", "good"], get_protocol("within"), [synth_manifest], loader=loader)
    assert sel["best"] == "good"
    vals = {c["checkpoint"]: c["value"] for c in sel["candidates"]}
    assert vals == {"inverted": 0.0, "good": 1.0}
    assert sel["split"] == "val"


def test_selection_needs_val_rows(tmp_path: Path) -> None:
    m = make_manifest(tmp_path / "p", [v for v in STANDARD if v["split"] != "val"])
    with pytest.raises(SelectionError, match="no 'val' rows"):
        selection_rows(get_protocol("within"), [m], "val")
