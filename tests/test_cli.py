"""The ``dflab`` command: help, listing, and ``prepare`` end to end on the astronaut."""

from __future__ import annotations

import subprocess
import sys

import cv2
import pytest

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


def test_prepare_runs_with_one_openblas_thread_unless_the_user_set_it():
    """``dflab prepare`` multiplies only small arrays: OpenBLAS's pool (one thread per core) only spun after numpy's
    import. The variable is set before numpy loads; a value the user chose is kept; other commands are untouched."""
    import os

    code = (
        "import os, sys\n"
        "from dflab.cli import main\n"
        "try:\n"
        "    main([sys.argv[1], '--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "import numpy\n"
        "print(os.environ.get('OPENBLAS_NUM_THREADS'))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}

    def run(command: str, **extra: str) -> str:
        res = subprocess.run(
            [sys.executable, "-c", code, command], env={**env, **extra}, capture_output=True, text=True, check=True
        )
        return res.stdout.split()[-1]

    assert run("prepare") == "1"
    assert run("prepare", OPENBLAS_NUM_THREADS="2") == "2"
    assert run("list") == "None"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_prepare_keeps_freed_frame_buffers_instead_of_faulting_them_in_again():
    """Every sampled frame allocates and frees the same few large buffers; glibc's default thresholds gave them back
    to the kernel on each free, and each next frame faulted them in again as zeroed pages. ``dflab prepare`` fixes the
    thresholds (inherited by the processes it forks); other commands keep glibc's defaults."""
    code = (
        "import resource, sys\n"
        "from dflab.cli import main\n"
        "try:\n"
        "    main([sys.argv[1], '--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "def frame():\n"
        "    bufs = [bytearray(4 << 20) for _ in range(3)]  # a frame and two copies, zero-filled: every page touched\n"
        "    del bufs\n"
        "frame(); frame()\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
        "for _ in range(5):\n"
        "    frame()\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)\n"
    )

    def faults(command: str) -> int:
        res = subprocess.run([sys.executable, "-c", code, command], capture_output=True, text=True, check=True)
        return int(res.stdout.split()[-1])

    pages = 5 * 3 * (4 << 20) // 4096
    assert faults("list") > pages // 2  # glibc's defaults: most pages faulted in again on every frame
    assert faults("prepare") < pages // 20
