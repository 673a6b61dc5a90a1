"""One exit-code contract for every command (docs/guide/exit-codes.md): 2 with one clear line for bad input, 70
for a bug — never a traceback for the user's mistake, never 1 (``dflab scan``'s "fake") for a crash."""

from __future__ import annotations

from pathlib import Path

import pytest

from dflab.cli import COMMANDS, EXIT_CODES_DOC, main

REPO = Path(__file__).resolve().parents[1]
DEFAULT = str(REPO / "src/dflab/weights/default.safetensors")


def test_the_contract_is_documented_for_every_command_and_help_points_to_it(capsys):
    doc = (REPO / EXIT_CODES_DOC).read_text()
    for name in COMMANDS:
        assert f"`dflab {name}`" in doc, name
    with pytest.raises(SystemExit):
        main(["--help"])
    assert EXIT_CODES_DOC in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["scan", "--help"])
    assert EXIT_CODES_DOC in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv",
    [
        ["eval", DEFAULT, "--protocol", "no_such_protocol", "--data", "{tmp}/m"],
        ["eval", DEFAULT, "--data", "{tmp}/no_manifest", "--out", "{tmp}/out"],
        ["eval", "{tmp}/evil.pt", "--data", "{tmp}/m"],
        ["robustness", DEFAULT, "--data", "{tmp}/no_manifest"],
        ["compare", "{tmp}/no_run"],
        ["train", "no_such_recipe"],
        ["prepare", "--dataset", "ffpp", "--root", "{tmp}/nowhere", "--out", "{tmp}/p"],
        ["prepare", "--dataset", "media", "--root", "{tmp}/x.png", "--out", "{tmp}/x.png"],  # a file: was 70
        ["scan", "{tmp}/x.png", "--detector", "{tmp}/evil.pt"],
    ],
    ids=[
        "eval-protocol",
        "eval-manifest",
        "eval-pickle",
        "robustness",
        "compare",
        "train",
        "prepare",
        "prepare-out-file",
        "scan-pickle",
    ],
)
def test_user_mistakes_exit_2_with_one_clean_line(argv, tmp_path, capsys):
    (tmp_path / "evil.pt").write_bytes(b"\x80\x04K\x01.")
    (tmp_path / "x.png").write_bytes(b"not really")
    args = [a.format(tmp=tmp_path) for a in argv]
    code = main(args)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith(f"dflab {args[0]}:") and "Traceback" not in err
    if "evil.pt" in " ".join(args):
        assert "refused on purpose" in err and "card.json" not in err.split("(")[0]


@pytest.mark.parametrize(
    "argv",
    [
        ["scan", "{tmp}/x.png", "--threshold", "nan"],  # every file "real": NaN >= t is false
        ["scan", "{tmp}/x.png", "--threshold", "1.5"],
        ["scan", "{tmp}/x.png", "--max-frames", "0"],  # every video a "decode_error"
        ["scan", "{tmp}/x.png", "--every", "-3"],
        ["scan", "{tmp}/x.png", "--jobs", "0"],
        ["scan", "{tmp}/x.png", "--margin", "-1"],
        ["prepare", "--dataset", "media", "--root", "{tmp}/x.png", "--out", "{tmp}/p", "--stride", "0"],  # traceback
        ["prepare", "--dataset", "media", "--root", "{tmp}/x.png", "--out", "{tmp}/p", "--size", "0"],  # decode_error
        ["prepare", "--dataset", "media", "--root", "{tmp}/x.png", "--out", "{tmp}/p", "--frames", "-2"],
        ["serve", "--max-upload-mb", "0"],
    ],
)
def test_numeric_options_out_of_range_are_refused_at_start(argv, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("uvicorn.run", lambda *a, **k: pytest.fail("the server started"))
    monkeypatch.chdir(tmp_path)  # a server that does start writes serve_data/ here, not into the checkout
    args = [a.format(tmp=tmp_path) for a in argv]
    with pytest.raises(SystemExit) as info:
        main(args)
    err = capsys.readouterr().err
    assert info.value.code == 2 and f"argument {args[-2]}" in err and "Traceback" not in err, err
    assert not (tmp_path / "p").exists()  # nothing was recorded with the bad setting


def test_scan_into_a_report_folder_it_cannot_write_exits_2_before_scanning(tmp_path, capsys, monkeypatch):
    import dflab.scan.cli as scan_cli

    (tmp_path / "x.png").write_bytes(b"not really")
    (tmp_path / "taken").write_text("a file, not a folder")
    monkeypatch.setattr(scan_cli, "scan_file", lambda *a, **k: pytest.fail("scanned before the report folder"))
    code = main(["scan", str(tmp_path / "x.png"), "--out", str(tmp_path / "taken"), "--detector", DEFAULT])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("dflab scan: cannot write the report folder") and "Traceback" not in err


def test_an_unexpected_exception_is_70_not_1(monkeypatch, capsys):
    import dflab.listing

    def boom(args):
        raise RuntimeError("simulated bug")

    monkeypatch.setattr(dflab.listing, "run", boom)
    assert main(["list", "recipes"]) == 70
    err = capsys.readouterr().err
    assert "simulated bug" in err and "internal error" in err
