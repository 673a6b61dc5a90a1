"""Nothing trusted: every broken, disguised or invalid checkpoint is a CheckpointError, and every command that loads
one answers exit code 2 with a one-line message (issue 14, items 3–5). The corpus grows in
:mod:`dflab.models.checkpoint_corpus`."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from dflab.cli import main
from dflab.errors import CheckpointError
from dflab.models.base import build_detector
from dflab.models.checkpoint import load_detector, read_card, save_detector
from dflab.models.checkpoint_corpus import BAD, GOOD, write_checkpoint_corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("ckpts")
    save_detector(build_detector("meso_inception4_tiny"), root / "src", {"calibration": {"temperature": 1.5}})
    return write_checkpoint_corpus(root / "src", root / "corpus")


@pytest.fixture(scope="module")
def image(tmp_path_factory, astronaut):
    path = tmp_path_factory.mktemp("img") / "astronaut.png"
    cv2.imwrite(str(path), astronaut[:, :, ::-1])
    return path


@pytest.mark.parametrize("name", sorted(BAD))
def test_every_bad_checkpoint_is_a_checkpoint_error(corpus, name):
    with pytest.raises(CheckpointError) as info:
        load_detector(corpus[name])
    assert BAD[name].lower() in str(info.value).lower(), str(info.value)


@pytest.mark.parametrize("name", GOOD)
def test_good_variants_load(corpus, name):
    loaded = load_detector(corpus[name])
    out = loaded.predict([np.zeros((64, 64, 3), np.uint8)])
    assert np.isfinite(out).all()


def test_pickle_path_says_pickles_are_refused_not_that_a_card_is_missing(corpus):
    with pytest.raises(CheckpointError, match="refused on purpose") as info:
        read_card(corpus["pickle.pt"])
    assert "card.json" not in str(info.value).split("(")[0]


@pytest.mark.parametrize("name", sorted(BAD))
def test_scan_exits_2_with_a_clean_message(corpus, image, name, capsys):
    code = main(["scan", str(image), "--detector", str(corpus[name]), "--out", "-", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("dflab scan:") and "Traceback" not in err


@pytest.mark.parametrize("name", ["pickle.pt", "truncated", "temperature_zero", "nan_weights", "pair_from_two_saves"])
@pytest.mark.parametrize(
    "argv",
    [
        ["eval", "{ckpt}", "--data", "{tmp}/no_manifest"],
        ["robustness", "{ckpt}", "--data", "{tmp}/no_manifest"],
        ["serve", "--detector", "{ckpt}", "--data", "{tmp}/serve"],
        ["demo", "--detector", "{ckpt}", "--out", "{tmp}/demo"],
    ],
    ids=["eval", "robustness", "serve", "demo"],
)
def test_every_command_exits_2_on_a_bad_checkpoint(corpus, name, argv, tmp_path, capsys):
    args = [a.format(ckpt=corpus[name], tmp=tmp_path) for a in argv]
    code = main(args)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith(f"dflab {args[0]}:") and "Traceback" not in err
    assert not (tmp_path / "demo" / "report.html").exists()


def test_temperature_zero_no_longer_reads_as_real(corpus, image, capsys):
    """The reproduction of item 4: T = 0 made P(fake) NaN and the verdict 'real' with exit code 0."""
    card = json.loads((corpus["temperature_zero"] / "card.json").read_text())
    assert card["calibration"]["temperature"] == 0
    code = main(["scan", str(image), "--detector", str(corpus["temperature_zero"]), "--out", "-", "--no-progress"])
    assert code == 2 and "temperature must be > 0" in capsys.readouterr().err


def test_a_nan_score_is_an_error_record_never_a_verdict(image):
    """A detector that returns NaN at run time (finite weights, overflowing activations): status error, exit 4."""
    from dflab.scan.pipeline import scan_file, scorer_from_model

    torch.manual_seed(0)
    model = build_detector("meso_inception4_tiny")
    model.score = lambda outputs: torch.full((outputs["logits"].shape[0],), float("nan"))  # type: ignore[method-assign]
    rec = scan_file(image, scorer_from_model(model)).record
    assert rec["status"] == "error" and rec["verdict"] == "error"
    assert rec["error"]["cause"] == "ScoreError" and "non-finite" in rec["error"]["detail"]
