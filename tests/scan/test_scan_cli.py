"""``dflab scan`` and ``dflab demo`` end to end through the CLI, with a tiny checkpoint saved as safetensors + card."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest
import torch

from dflab.cli import main
from dflab.scan.corpus import EXPECTED, outcome


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    from dflab.models.base import build_detector
    from dflab.models.checkpoint import save_detector

    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("ckpt") / "tiny"
    save_detector(build_detector("lisiam_tiny"), out, {"name": "tiny-test", "calibration": {"temperature": 1.5}})
    return out


def test_scan_folder_writes_json_csv_html_and_exit_code(ckpt, media_dir, tmp_path, capsys):
    out = tmp_path / "rep"
    code = main(["scan", str(media_dir), "--detector", str(ckpt), "--out", str(out), "--max-frames", "3",
                 "--jobs", "2", "--no-progress", "--overlay-video"])  # fmt: skip
    records = json.loads((out / "scan.json").read_text())["files"]
    names = sorted(p.name for p in media_dir.iterdir())
    assert sorted(r["path"].rsplit("/", 1)[-1] for r in records) == names  # every media file, in order
    for r in records:
        name = r["path"].rsplit("/", 1)[-1]
        if name in EXPECTED:
            assert outcome(r) in EXPECTED[name], r
    assert code & 4  # some files could not be scanned
    assert bool(code & 1) == any(r["verdict"] == "fake" for r in records)
    rows = list(csv.DictReader((out / "scan.csv").open()))
    assert len(rows) == len(records) and {"verdict", "score", "ci_low", "ci_high"} <= set(rows[0])
    page = (out / "report.html").read_text()
    assert page.count("<section>") == len(records) and "data:image/png;base64," in page
    clip = next(r for r in records if r["path"].endswith("clip.mp4"))
    assert clip["status"] == "ok" and (out / clip["overlay_video"]).stat().st_size > 0
    printed = capsys.readouterr().out
    assert "zero_bytes.mp4: ERROR zero_bytes" in printed


def test_scan_folder_records_links_and_folders_it_cannot_read(ckpt, media_dir, tmp_path, deny_read, capsys):
    # Path.rglob dropped these without a word: the report must list each with its cause, and scan the rest
    root = tmp_path / "case 1 é"
    (root / "locked").mkdir(parents=True)
    (root / "photo ü.png").write_bytes((media_dir / "astronaut.png").read_bytes())
    (root / "locked" / "inside.png").write_bytes((media_dir / "astronaut.png").read_bytes())
    os.symlink("b.mp4", root / "a.mp4")
    os.symlink("a.mp4", root / "b.mp4")
    os.symlink("gone.jpg", root / "dangling.jpg")
    deny_read(root / "locked")
    code = main(["scan", str(root), "--detector", str(ckpt), "--out", "-", "--no-progress"])
    records = {r["path"].rsplit("/", 1)[-1]: r for r in json.loads(capsys.readouterr().out)["files"]}
    assert set(records) == {"a.mp4", "b.mp4", "dangling.jpg", "locked", "photo ü.png"}
    assert [outcome(records[n]) for n in ("a.mp4", "b.mp4", "dangling.jpg")] == ["missing"] * 3
    assert records["a.mp4"]["error"]["detail"] == "symbolic link loop"
    assert outcome(records["locked"]) == "unreadable"
    assert records["photo ü.png"]["status"] == "ok"
    assert code & 4


class _Killed(BaseException):
    """Stands for SIGKILL: nothing after it runs (not even the report)."""


def _counting_scan(monkeypatch, kill_at: int | None = None) -> list[str]:
    import dflab.scan.cli as scan_cli
    from dflab.scan.pipeline import scan_file as real

    seen: list[str] = []

    def scan(path, *args, **kwargs):
        if kill_at is not None and len(seen) == kill_at:
            raise _Killed
        seen.append(Path(path).name)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(scan_cli, "scan_file", scan)
    return seen


def test_a_killed_scan_resumes_without_scanning_a_file_twice(ckpt, media_dir, tmp_path, monkeypatch, capsys):
    # before, a killed scan wrote nothing: the rerun scanned every file again
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("astronaut.png", "clip.mp4", "faceless.png", "zero_bytes.mp4", "rgba.png"):
        (folder / name).write_bytes((media_dir / name).read_bytes())
    out = tmp_path / "rep"
    argv = ["scan", str(folder), "--detector", str(ckpt), "--out", str(out), "--max-frames", "3", "--no-progress"]
    first = _counting_scan(monkeypatch, kill_at=3)
    with pytest.raises(_Killed):
        main(argv)
    assert first == ["astronaut.png", "clip.mp4", "faceless.png"] and not (out / "scan.json").exists()
    (folder / "faceless.png").touch()  # changed since: scanned again
    os.utime(folder / "faceless.png", ns=(1, 1))
    again = _counting_scan(monkeypatch)
    main(argv)
    assert again == ["faceless.png", "rgba.png", "zero_bytes.mp4"]  # never astronaut.png or clip.mp4 again
    assert "resuming, 2 of 5 files already scanned" in capsys.readouterr().err
    records = json.loads((out / "scan.json").read_text())["files"]
    assert [Path(r["path"]).name for r in records] == sorted(p.name for p in folder.iterdir())  # each file once
    assert records[1]["status"] == "ok" and len(records[1]["frames"]) > 0
    assert not (out / ".scan_journal.jsonl").exists()  # the report is the record now
    assert len(list(csv.DictReader((out / "scan.csv").open()))) == 5


def test_a_journal_of_other_settings_or_a_torn_line_is_not_trusted(ckpt, media_dir, tmp_path, monkeypatch, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("astronaut.png", "faceless.png", "rgba.png"):
        (folder / name).write_bytes((media_dir / name).read_bytes())
    out = tmp_path / "rep"
    argv = ["scan", str(folder), "--detector", str(ckpt), "--out", str(out), "--no-progress", "--format", "json"]
    _counting_scan(monkeypatch, kill_at=2)
    with pytest.raises(_Killed):
        main([*argv, "--max-frames", "3"])
    journal = out / ".scan_journal.jsonl"
    with journal.open("a") as fh:
        fh.write('{"key": ["torn')  # the line being written at the kill
    again = _counting_scan(monkeypatch)
    main([*argv, "--max-frames", "3"])
    assert again == ["rgba.png"]
    _counting_scan(monkeypatch, kill_at=1)
    with pytest.raises(_Killed):
        main([*argv, "--max-frames", "3"])
    again = _counting_scan(monkeypatch)
    main([*argv, "--max-frames", "5"])  # other options: every file again
    assert again == ["astronaut.png", "faceless.png", "rgba.png"]
    assert "other settings" in capsys.readouterr().err


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_scan_cli_on_each_broken_file(ckpt, media_dir, name, capsys):
    code = main(["scan", str(media_dir / name), "--detector", str(ckpt), "--out", "-", "--no-progress"])
    rec = json.loads(capsys.readouterr().out)["files"][0]
    assert outcome(rec) in EXPECTED[name]
    assert code == (4 if rec["status"] == "error" else (1 if rec["verdict"] == "fake" else 0))


def test_ensemble_and_calibration_are_recorded(ckpt, media_dir, capsys):
    main(["scan", str(media_dir / "astronaut.png"), "--detector", str(ckpt), "--detector", str(ckpt),
          "--out", "-", "--no-progress"])  # fmt: skip
    doc = json.loads(capsys.readouterr().out)
    assert doc["files"][0]["detectors"] == ["tiny-test", "tiny-test"]
    assert doc["meta"]["cards"][0]["calibration"]["temperature"] == 1.5


def test_unusable_detector_is_exit_2(tmp_path, media_dir, capsys):
    assert main(["scan", str(media_dir / "astronaut.png"), "--detector", str(tmp_path / "none.safetensors")]) == 2
    assert "no such checkpoint" in capsys.readouterr().err


def test_demo_writes_report_with_real_and_forgery(ckpt, tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path / "demo"), "--detector", str(ckpt)]) == 0
    printed = capsys.readouterr().out
    for name in ("astronaut.png:", "astronaut_forgery.png:", "astronaut_selfblend.png:"):
        assert name in printed
    records = json.loads((tmp_path / "demo" / "scan.json").read_text())["files"]
    assert [r["status"] for r in records] == ["ok", "ok", "ok"]
    assert (tmp_path / "demo" / "report.html").exists()


def test_self_blend_changes_only_the_face(astronaut):
    import numpy as np

    from dflab.scan.demo import self_blend

    lm = np.array([[180 + 60 * np.cos(t), 120 + 70 * np.sin(t)] for t in np.linspace(0, 6.28, 68)], np.float32)
    fake, mask = self_blend(astronaut, lm, np.random.default_rng(0))
    changed = np.abs(fake.astype(int) - astronaut.astype(int)).sum(axis=2) > 0
    assert changed.any() and not (changed & (mask == 0)).any(), "only the blended face may change"
    assert 0 < mask.max() <= 1.0 and mask[:, 300:].max() == 0 and mask[260:].max() == 0  # inside the 1.3x box


def test_face_swap_puts_the_donors_face_inside_the_mask_only(astronaut):
    import numpy as np

    from dflab.faces import FaceDetector
    from dflab.scan.demo import donor_photo, face_swap

    det = FaceDetector(backend="dlib")
    lm = np.asarray(det.detect(astronaut)[0].landmarks, np.float32)
    donor = donor_photo()
    dlm = np.asarray(max(det.detect(donor), key=lambda f: f.box[2] - f.box[0]).landmarks, np.float32)
    fake, mask = face_swap(astronaut, lm, donor, dlm, np.random.default_rng(0))
    changed = np.abs(fake.astype(int) - astronaut.astype(int)).sum(axis=2) > 0
    assert not (changed & (mask == 0)).any(), "only the blended face may change"
    inner = mask > 0.99  # a swap, not a tint: the face's own pixels are replaced by another face's
    assert inner.sum() > 2000 and np.abs(fake[inner].astype(int) - astronaut[inner]).mean() > 15
    assert fake.shape == astronaut.shape and fake.dtype == np.uint8


def test_a_pickled_checkpoint_is_never_unpickled(tmp_path, media_dir, capsys):
    """A torch/pickle file whose unpickling would run code is refused without being executed."""
    import pickle

    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    evil = tmp_path / "model.pt"
    evil.write_bytes(pickle.dumps(Payload()))
    (tmp_path / "model.safetensors").write_bytes(pickle.dumps(Payload()))
    for det in (evil, tmp_path / "model.safetensors", tmp_path):
        code = main(["scan", str(media_dir / "astronaut.png"), "--detector", str(det), "--out", "-", "--no-progress"])
        assert code == 2, det
    assert not marker.exists()


def test_scan_imports_only_what_it_uses(media_dir, tmp_path):
    """``dflab scan`` of a still: no Ray, no web server, no pytorch-grad-cam/scikit-learn (Grad-CAM is ours), no
    matplotlib (plots are for video timelines), no SciPy optimiser (one face needs no matching)."""
    import subprocess
    import sys

    code = (
        "import sys\nfrom dflab.cli import main\n"
        f"main(['scan', {str(media_dir / 'astronaut.png')!r}, '--out', {str(tmp_path / 'o')!r}, '--no-progress'])\n"
        "heavy = ['ray', 'fastapi', 'uvicorn', 'pytorch_grad_cam', 'sklearn', 'matplotlib', 'scipy.optimize',"
        " 'albumentations', 'tensorboard']\n"
        "print('LOADED', [m for m in heavy if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "LOADED []" in out, out


def test_scan_folder_reads_an_iphone_heic_photo(ckpt, tmp_path, astronaut):
    # .heic was not a scanned suffix (a folder of iPhone photos gave an empty report) nor a readable image
    pillow_heif = pytest.importorskip("pillow_heif")
    from PIL import Image

    folder = tmp_path / "phone"
    folder.mkdir()
    pillow_heif.from_pillow(Image.fromarray(astronaut)).save(folder / "IMG_0001.HEIC", quality=95)
    out = tmp_path / "rep"
    main(["scan", str(folder), "--detector", str(ckpt), "--out", str(out), "--no-progress"])
    (record,) = json.loads((out / "scan.json").read_text())["files"]
    assert record["path"].endswith("IMG_0001.HEIC") and record["status"] == "ok", record
    assert record["n_faces"] >= 1 and record["verdict"] in ("real", "fake", "uncertain")
