"""What users install is what is tested (issue 14, item 15): build the wheel, check it carries every data file of
the source tree (recipes, weights, web UI), install it into a fresh virtualenv that reuses this environment's
dependencies (nothing downloaded, torch not reinstalled) and run ``dflab list recipes`` and ``dflab demo`` there,
away from the source tree."""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.e2e


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600, **kw)
    assert res.returncode == 0, f"{cmd}\n{res.stdout[-2000:]}\n{res.stderr[-3000:]}"
    return res


def _clean_env() -> dict[str, str]:
    """This environment without PYTHONPATH: nothing may come from the source tree."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", NO_ALBUMENTATIONS_UPDATE="1", MPLBACKEND="Agg")
    return env


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel, built from a copy of the project (a build writes build/ and *.egg-info beside its sources)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "project"
    skip = shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc")
    shutil.copytree(REPO / "src", src / "src", ignore=skip)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    # --no-build-isolation: setuptools and wheel come from this environment (offline, seconds instead of a download)
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp), str(src)]
    _run(cmd, env=_clean_env())
    (whl,) = tmp.glob("dflab-*.whl")
    return whl


def _tracked_data_files() -> set[str]:
    """Non-Python files under src/dflab that git tracks (or, outside a checkout, that exist)."""
    src = REPO / "src"
    try:
        listed = subprocess.run(["git", "ls-files", "src/dflab"], cwd=REPO, capture_output=True, text=True, check=True)
        files = [REPO / f for f in listed.stdout.split()]
    except (OSError, subprocess.CalledProcessError):
        files = [p for p in (src / "dflab").rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    return {p.relative_to(src).as_posix() for p in files if p.suffix not in (".py", ".pyc")}


def test_wheel_carries_every_data_file(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    data = _tracked_data_files()
    assert {"dflab/configs/recipes/xception_tiny.yaml", "dflab/weights/default.safetensors"} <= data
    assert data - names == set()  # the old package-data left out all 54 recipes


def test_installed_wheel_lists_recipes_and_runs_the_demo(wheel, tmp_path):
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    py = venv / "bin" / "python"
    purelib = Path(_run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    env = _clean_env()
    pip = [sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "--no-index", "-q", str(wheel)]
    _run(pip, env=env)
    # then this environment's packages, after the venv's own (added after the install, so pip never sees the
    # development install of dflab there): the wheel's dflab wins, torch & co. are reused, nothing is downloaded.
    # Listed paths are plain sys.path entries, so the .pth files there (an editable dflab) are not processed.
    deps = [p for p in {*site.getsitepackages(), sysconfig.get_paths()["purelib"]} if Path(p).is_dir()]
    (purelib / "_dflab_test_deps.pth").write_text("\n".join(deps) + "\n")

    where = _run([str(py), "-c", "import dflab; print(dflab.__file__)"], cwd=tmp_path, env=env).stdout.strip()
    assert Path(where).is_relative_to(venv), where  # the installed wheel, not the checkout

    dflab = str(venv / "bin" / "dflab")
    recipes = _run([dflab, "list", "recipes"], cwd=tmp_path, env=env).stdout
    shipped = {p.stem for p in (REPO / "src/dflab/configs/recipes").glob("*.yaml")}
    assert shipped and all(name in recipes for name in shipped)

    demo = _run([dflab, "demo", "--out", str(tmp_path / "demo")], cwd=tmp_path, env=env)
    assert (tmp_path / "demo" / "report.html").is_file()
    assert "UNTRAINED" not in demo.stderr  # the shipped default weights were found inside the installed package
