"""The ``dflab`` command: help, listing, and ``prepare`` end to end on the astronaut."""

from __future__ import annotations

import subprocess
import sys

import cv2

from dflab.cli import COMMANDS, main
from dflab.data.manifest import Manifest


def test_help_lists_every_subcommand(capsys):
    code = None
    try:
        main(["--help"])
    except SystemExit as exc:
        code = exc.code
    assert code == 0
    out = capsys.readouterr().out
    assert all(name in out for name in COMMANDS)


def test_list_datasets(capsys):
    assert main(["list", "datasets"]) == 0
    names = capsys.readouterr().out.split()
    assert {"ffpp", "celebdf", "dfdc", "dfdc_preview", "dfd", "uadfv", "dftimit", "wilddeepfake", "folder"} <= set(
        names
    )


def test_prepare_cli_on_the_astronaut(tmp_path, astronaut):
    img = tmp_path / "astronaut.jpg"
    cv2.imwrite(str(img), astronaut[..., ::-1])
    out = tmp_path / "out"
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "dflab.cli",
            "prepare",
            "--dataset",
            "media",
            "--root",
            str(img),
            "--out",
            str(out),
            "--size",
            "96",
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr
    assert "faces 1 " in res.stdout
    with Manifest(out, readonly=True) as m:
        assert len(m.faces()) == 1


def test_prepare_cli_rejects_bad_arguments(tmp_path):
    assert (
        main(["prepare", "--dataset", "ffpp", "--root", str(tmp_path), "--out", str(tmp_path / "o"), "--no-progress"])
        == 2
    )  # not an FF++ tree: a clear message, exit code 2
