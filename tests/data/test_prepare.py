"""``dflab prepare``: crops + manifest, fakes linked to their originals' same-box crops, errors recorded, resume."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from dflab.data.manifest import Manifest
from dflab.data.prepare import prepare_dataset, prepare_media
from dflab.errors import ConfigError
from dflab.faces import crop_box
from dflab.media import iter_frames, write_video


def _snapshot(out: Path) -> dict:
    """Everything a run leaves: face rows, video rows, events, and the bytes of every crop."""
    with Manifest(out, readonly=True) as m:
        faces = [r.__dict__ for r in m.faces()]
        videos = m.videos()
        events = m.events()
    crops = {
        str(p.relative_to(out)): hashlib.sha1(p.read_bytes()).hexdigest()
        for p in sorted((out / "crops").rglob("*.png"))
    }
    return {"faces": faces, "videos": videos, "events": events, "crops": crops}


@pytest.fixture
def ffpp_tree(tmp_path, face_frames):
    """FF++ layout: original 000, fake Deepfakes/000_001 (mouth region altered) with its mask video."""
    root = tmp_path / "ff"
    orig = write_video(root / "original_sequences/youtube/c23/videos/000.mp4", face_frames, fps=25)
    fakes, masks = [], []
    for f in face_frames:
        g = f.copy()
        g[85:100, 70:105] = 255 - g[85:100, 70:105]
        m = np.zeros_like(f)
        m[85:100, 70:105] = 255
        fakes.append(g)
        masks.append(m)
    write_video(root / "manipulated_sequences/Deepfakes/c23/videos/000_001.mp4", fakes, fps=25)
    write_video(root / "manipulated_sequences/Deepfakes/masks/videos/000_001.mp4", masks, fps=25)
    (root / "splits").mkdir()
    (root / "splits/train.json").write_text(json.dumps([["000", "001"]]))
    return root, orig


def test_ffpp_fake_linked_to_original_crop_with_same_box(tmp_path, ffpp_tree):
    root, orig = ffpp_tree
    out = tmp_path / "out"
    summary = prepare_dataset("ffpp", root, out, frames=3, size=64, progress=False)
    assert summary["videos_done"] == 2 and summary["errors"] == {}
    with Manifest(out, readonly=True) as m:
        fakes = m.faces(method="Deepfakes")
        reals = m.faces(label=0)
    assert len(fakes) == 3 and len(reals) == 3
    assert [f.frame_index for f in fakes] == [0, 2, 5]
    orig_frames = dict(iter_frames(orig, indices=[0, 2, 5]))
    for f in fakes:
        assert (f.split, f.compression, f.original_id, f.identity) == ("train", "c23", "000", "000")
        oc = cv2.imread(str(out / f.original_crop))[..., ::-1]
        np.testing.assert_array_equal(oc, crop_box(orig_frames[f.frame_index], tuple(f.box), 64).image)
        mask = cv2.imread(str(out / f.mask_crop), cv2.IMREAD_UNCHANGED)
        assert mask.ndim == 2 and mask.max() > 200 and mask.min() < 50
        fake_crop = cv2.imread(str(out / f.crop_path))[..., ::-1].astype(int)
        diff = np.abs(fake_crop - oc.astype(int)).mean(axis=2)
        assert diff[mask > 128].mean() > 5 * diff[mask < 10].mean()  # the altered region is where the mask says
        assert np.asarray(f.landmarks).shape == (68, 2) and f.crop_size == 64


def test_errors_and_faceless_frames_are_recorded(tmp_path, face_frames, astronaut):
    root = tmp_path / "d"
    write_video(root / "real/good.mp4", face_frames[:3], fps=25)
    write_video(root / "real/empty.mp4", [np.full((64, 64, 3), 80, np.uint8)] * 3, fps=25)
    (root / "fake").mkdir(parents=True)
    (root / "fake/zero.mp4").write_bytes(b"")
    (root / "fake/text.mp4").write_text("nope\n" * 40)
    summary = prepare_dataset("folder", root, tmp_path / "out", frames=3, size=64, progress=False)
    assert summary["errors"] == {"zero_bytes": 1, "not_media": 1}
    assert summary["frames_without_face"] == 3 and summary["faces"] == 3
    with Manifest(tmp_path / "out", readonly=True) as m:
        empty = m.videos(video_id="real/empty")[0]
        assert (empty["status"], empty["n_frames"], empty["n_faces"], empty["n_missed"]) == ("done", 3, 0, 3)
    write_video(root / "fake/zero.mp4", face_frames[:3], fps=25)  # the file is fixed: only a retry redoes it
    assert prepare_dataset("folder", root, tmp_path / "out", frames=3, size=64, progress=False)["processed"] == 0
    summary = prepare_dataset("folder", root, tmp_path / "out", frames=3, size=64, progress=False, retry_errors=True)
    assert summary["processed"] == 2 and summary["errors"] == {"not_media": 1} and summary["faces"] == 6
    with pytest.raises(ConfigError):  # a resumed run must keep the settings
        prepare_dataset("folder", root, tmp_path / "out", frames=4, size=64, progress=False)


def test_prepare_media_on_the_astronaut(tmp_path, astronaut):
    cv2.imwrite(str(tmp_path / "astronaut.png"), astronaut[..., ::-1])
    summary = prepare_media([tmp_path / "astronaut.png"], tmp_path / "out", size=128, progress=False)
    assert summary["faces"] == 1
    with Manifest(tmp_path / "out", readonly=True) as m:
        (row,) = m.faces()
    assert (
        row.label == -1
        and row.frame_width == 512
        and cv2.imread(str(tmp_path / "out" / row.crop_path)).shape == (128, 128, 3)
    )


def test_prepare_media_records_symlink_loops_and_unreadable_folders(tmp_path, astronaut, deny_read):
    # a looping link given by name crashed the run (Path.resolve raises RuntimeError in 3.11); inside a folder it
    # and an unreadable sub-folder were dropped without a record
    cv2.imwrite(str(tmp_path / "astronaut.png"), astronaut[..., ::-1])
    folder = tmp_path / "case"
    (folder / "locked").mkdir(parents=True)
    os.symlink("b.mp4", folder / "a.mp4")
    os.symlink("a.mp4", folder / "b.mp4")
    deny_read(folder / "locked")
    items = [tmp_path / "astronaut.png", folder, folder / "a.mp4"]
    summary = prepare_media(items, tmp_path / "out", size=64, progress=False, workers=1)
    assert summary["faces"] == 1 and summary["errors"] == {"missing": 2, "unreadable": 1}
    with Manifest(tmp_path / "out", readonly=True) as m:
        causes = {v["video_id"]: (v["status"], v["error_cause"], v["error_detail"]) for v in m.videos()}
    assert causes["case/a.mp4"] == ("error", "missing", "symbolic link loop")
    assert causes["case/locked"][:2] == ("error", "unreadable")


def test_a_video_broken_mid_way_keeps_the_faces_before_the_break(tmp_path, astronaut):
    # before, the whole video was an error (decode_error, or truncated) and its good frames were thrown away
    from dflab.scan.corpus import _broken_midstream

    path = tmp_path / "in" / "broken.mp4"
    path.parent.mkdir()
    face = cv2.resize(astronaut[:320, 60:380], (128, 128), interpolation=cv2.INTER_AREA)
    _broken_midstream(path, [np.roll(face, i, axis=1) for i in range(24)])
    summary = prepare_media([path], tmp_path / "out", frames=24, size=64, progress=False, workers=1)
    assert summary["errors"] == {} and summary["videos_cut_short"] == 1 and summary["faces"] > 0
    with Manifest(tmp_path / "out", readonly=True) as m:
        (video,) = m.videos()
        (event,) = m.events(kind="truncated")
        faces = m.faces()
    assert video["status"] == "done" and event["frame_index"] == -1 and "last frame kept" in event["detail"]
    assert max(f.frame_index for f in faces) < 24 and len(faces) == summary["faces"]


def _cli(root: Path, out: Path, workers: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "dflab.cli",
        "prepare",
        "--dataset",
        "folder",
        "--root",
        str(root),
        "--out",
        str(out),
        "--frames",
        "3",
        "--size",
        "64",
        "--workers",
        str(workers),
        "--no-progress",
    ]


def _done_count(out: Path) -> int:
    try:
        con = sqlite3.connect(out / "manifest.sqlite", timeout=1)
        try:
            return con.execute("SELECT COUNT(*) FROM videos").fetchone()[0]
        finally:
            con.close()
    except sqlite3.OperationalError:
        return 0


def _processes_writing(out: Path) -> list[int]:
    """Processes whose command line names ``out`` (the run and, forked from it, its workers)."""
    pids = []
    for d in Path("/proc").glob("[0-9]*"):
        try:
            if str(out).encode() in (d / "cmdline").read_bytes():
                pids.append(int(d.name))
        except OSError:
            continue
    return pids


def _folder_of_videos(root: Path, face_frames: list[np.ndarray], n: int) -> None:
    for i in range(n):
        frames = [np.roll(f, 4 * i, axis=1) for f in face_frames]
        write_video(root / ("real" if i % 2 else "fake") / f"v{i}.mp4", frames, fps=25)


def test_worker_pool_writes_the_same_manifest_and_crops_as_one_process(tmp_path, face_frames):
    """Two worker processes (the default on a 2-core machine) give exactly the serial run's rows, events and crop
    bytes, although videos finish in another order."""
    root = tmp_path / "d"
    _folder_of_videos(root, face_frames, 4)
    runs = {}
    for workers in (1, 2):
        out = tmp_path / f"w{workers}"
        summary = prepare_dataset("folder", root, out, frames=3, size=64, workers=workers, progress=False)
        assert summary["faces"] == 12
        runs[workers] = _snapshot(out)
    assert runs[2] == runs[1]


def test_worker_pool_after_opencv_ran_threads_in_this_process(tmp_path, face_frames):
    """Regression: workers forked from a process whose OpenCV thread pool was running hung for ever (a child that
    reconfigured the pool waited on threads it had not inherited). Run in a subprocess, so a hang is a timeout."""
    root = tmp_path / "d"
    _folder_of_videos(root, face_frames, 3)
    code = (
        "import sys, cv2, numpy as np\n"
        "from dflab.data.prepare import prepare_dataset\n"
        "cv2.setNumThreads(2)\n"
        "img = np.random.default_rng(0).integers(0, 255, (1080, 1920, 3), dtype=np.uint8)\n"
        "for _ in range(20):\n"
        "    cv2.GaussianBlur(cv2.resize(img, (1500, 800)), (9, 9), 0)  # parallel_for: the pool's threads start\n"
        "s = prepare_dataset('folder', sys.argv[1], sys.argv[2], frames=2, size=64, workers=2, progress=False)\n"
        "assert s['faces'] == 6, s\n"
        "assert cv2.getNumThreads() == 2\n"
    )
    subprocess.run([sys.executable, "-c", code, str(root), str(tmp_path / "out")], check=True, timeout=120)


def test_the_landmark_server_is_stopped_before_the_workers_are_shut_down(tmp_path, face_frames, monkeypatch):
    """Once the last video is in, the server is told to end before the pool waits for its workers, so that both tear
    down at once (each took 10–20 ms at the end of every run, one after the other)."""
    from concurrent.futures import ProcessPoolExecutor

    from dflab.data.landmark_server import LandmarkServer

    root = tmp_path / "d"
    _folder_of_videos(root, face_frames, 2)
    calls = []
    stop, shutdown = LandmarkServer.stop, ProcessPoolExecutor.shutdown
    monkeypatch.setattr(LandmarkServer, "stop", lambda self: calls.append("stop") or stop(self))
    monkeypatch.setattr(
        ProcessPoolExecutor, "shutdown", lambda self, *a, **k: calls.append("shutdown") or shutdown(self, *a, **k)
    )
    summary = prepare_dataset("folder", root, tmp_path / "out", frames=2, size=64, workers=2, progress=False)
    assert summary["faces"] == 4 and summary["errors"] == {}
    assert calls[:2] == ["stop", "shutdown"]


def test_workers_detect_before_the_68_point_model_is_loaded(tmp_path, face_frames, monkeypatch):
    """The landmark server loads dlib's model while the workers already decode and detect (they send it their boxes):
    its load here waits for a worker's first detection, which never came when workers were forked after the load."""
    import dlib

    from dflab.data import prepare
    from dflab.faces import FaceDetector

    root = tmp_path / "d"
    _folder_of_videos(root, face_frames, 3)
    marker, saw = tmp_path / "a-worker-detected", tmp_path / "the-load-saw-it"
    detect, load = FaceDetector.detect, dlib.shape_predictor

    def detect_and_mark(self, *args, **kwargs):
        marker.touch()
        return detect(self, *args, **kwargs)

    def load_after_a_detection(path):  # runs in the server process (forked, so patched too)
        deadline = time.monotonic() + 60  # a guard against a hang, not a timing
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        if marker.exists():
            saw.touch()
        return load(path)

    monkeypatch.setattr(FaceDetector, "detect", detect_and_mark)
    monkeypatch.setattr(dlib, "shape_predictor", load_after_a_detection)
    monkeypatch.setattr(prepare, "_DETECTOR", None)
    summary = prepare_dataset("folder", root, tmp_path / "out", frames=3, size=64, workers=2, progress=False)
    assert summary["faces"] == 9 and summary["errors"] == {}
    assert saw.exists()
    with Manifest(tmp_path / "out", readonly=True) as m:
        assert all(len(r.landmarks) == 68 for r in m.faces())


@pytest.mark.parametrize("workers", [1, 2])
def test_the_command_starts_its_landmark_server_before_numpy_and_writes_the_inline_runs_output(
    tmp_path, face_frames, workers
):
    """``dflab prepare`` forks the landmark server before importing numpy & co (the model loads on the core the
    imports leave idle), and does not import Pillow for videos; its served points give exactly the rows and crops of
    an inline (API, one process) run."""
    root = tmp_path / "d"
    _folder_of_videos(root, face_frames, 3)
    prepare_dataset("folder", root, tmp_path / "inline", frames=3, size=64, workers=1, progress=False)
    code = (
        "import sys\n"
        "from dflab.data import landmark_server\n"
        "calls = []\n"
        "preload = landmark_server.preload\n"
        "landmark_server.preload = lambda: calls.append('numpy' in sys.modules) or preload()\n"
        "from dflab.cli import main\n"
        "assert main(sys.argv[1:]) == 0\n"
        "assert calls == [False], calls\n"
        "assert 'PIL' not in sys.modules  # videos only: Pillow is imported where an image is read\n"
    )
    cli = _cli(root, tmp_path / "served", workers)
    subprocess.run([sys.executable, "-c", code, *cli[3:]], check=True, capture_output=True, timeout=300)
    assert _snapshot(tmp_path / "served") == _snapshot(tmp_path / "inline")


def test_more_workers_than_one_landmark_server_serves_share_the_model_loaded_before_the_fork(
    tmp_path, face_frames, monkeypatch
):
    """Above MAX_LANDMARK_CLIENTS workers the model is loaded first and the workers fit their own points: the same
    manifest and crops as the served workers and the serial run."""
    from dflab.data import prepare

    root = tmp_path / "d"
    _folder_of_videos(root, face_frames, 3)
    served = prepare_dataset("folder", root, tmp_path / "served", frames=2, size=64, workers=2, progress=False)
    monkeypatch.setattr(prepare, "MAX_LANDMARK_CLIENTS", 1)
    own = prepare_dataset("folder", root, tmp_path / "own", frames=2, size=64, workers=2, progress=False)
    assert served["faces"] == own["faces"] == 6
    assert _snapshot(tmp_path / "own") == _snapshot(tmp_path / "served")


def test_videos_are_probed_for_their_order_only_when_some_must_wait_for_a_worker(tmp_path, face_frames, monkeypatch):
    from dflab.data import prepare

    probed: list[str] = []
    largest_first = prepare._largest_first
    monkeypatch.setattr(prepare, "_largest_first", lambda job: probed.append(job[0].path) or largest_first(job))
    root = tmp_path / "d"
    _folder_of_videos(root, face_frames, 3)
    prepare_dataset("folder", root, tmp_path / "three", frames=1, size=64, workers=3, progress=False)
    assert probed == []
    prepare_dataset("folder", root, tmp_path / "two", frames=1, size=64, workers=2, progress=False)
    assert len(probed) == 3


def test_decode_threads_per_worker_share_the_cores(monkeypatch):
    from dflab.data import prepare

    for cores, workers, threads in [(2, 2, 1), (1, 1, 1), (8, 2, 4), (32, 32, 1), (3, 2, 1)]:
        monkeypatch.setattr(os, "sched_getaffinity", lambda _pid, c=cores: set(range(c)), raising=False)
        assert prepare.decode_threads_per_worker(workers) == threads


def test_crops_are_lossless_png_written_by_dflab_media_png(tmp_path, astronaut):
    """Crops go through :func:`dflab.media.png.write_png` (Up filter on every row, 4× faster than OpenCV's libpng
    encoder for 10 % more bytes), and the pixels are exactly the crop's, RGB and grey."""
    import zlib

    from dflab.data.prepare import _write_png

    crop = np.ascontiguousarray(astronaut[100:228, 150:278])
    for image in (crop, cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)):
        path = tmp_path / f"c{image.ndim}.png"
        _write_png(path, image)
        data = path.read_bytes()
        idat_at = data.index(b"IDAT")
        (length,) = np.frombuffer(data[idat_at - 4 : idat_at], ">u4")
        raw = zlib.decompress(data[idat_at + 4 : idat_at + 4 + int(length)])
        row = 1 + image[0].size
        assert len(raw) == 128 * row and {raw[i * row] for i in range(128)} == {2}
        back = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(back if image.ndim == 2 else cv2.cvtColor(back, cv2.COLOR_BGR2RGB), image)


def test_auto_workers_is_one_per_core_and_one_more_at_most_one_per_video(monkeypatch):
    from dflab.data import prepare

    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0, 1}, raising=False)
    assert [prepare.auto_workers(n) for n in (0, 1, 2, 3, 4, 50)] == [1, 1, 2, 3, 3, 3]
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0}, raising=False)
    assert [prepare.auto_workers(n) for n in (1, 3)] == [1, 1]


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_kill_and_resume_equals_uninterrupted_run(tmp_path, face_frames, workers):
    """Killed (SIGKILL to the manifest writer, its workers orphaned) and resumed, with or without the pool."""
    root = tmp_path / "d"
    n = 8
    _folder_of_videos(root, face_frames, n)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    ref, killed = tmp_path / "ref", tmp_path / "killed"
    subprocess.run(_cli(root, ref, 1), check=True, env=env, capture_output=True, timeout=600)

    proc = subprocess.Popen(_cli(root, killed, workers), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while _done_count(killed) < 2 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 10
    while _processes_writing(killed) and time.time() < deadline:
        time.sleep(0.05)
    assert not _processes_writing(killed), "a worker outlived the killed manifest writer"
    partial = _done_count(killed)
    assert 2 <= partial < n, f"the kill came at {partial}/{n} videos"

    out = subprocess.run(_cli(root, killed, workers), check=True, env=env, capture_output=True, text=True, timeout=600)
    assert f"already done {partial}" in out.stdout
    assert _snapshot(killed) == _snapshot(ref)


@pytest.mark.slow
def test_shared_ffpp_and_dfdc(tmp_path, shared_data):
    s = prepare_dataset("ffpp", shared_data / "ffpp", tmp_path / "ff", frames=2, size=128, progress=False)
    assert s["videos_done"] == 4 and s["faces"] >= 8
    with Manifest(tmp_path / "ff", readonly=True) as m:
        fakes = m.faces(label=1)
        assert {f.original_id for f in fakes} == {"004", "519"}
        assert all(f.original_crop and (tmp_path / "ff" / f.original_crop).exists() for f in fakes)
    s = prepare_dataset("dfdc", shared_data / "dfdc", tmp_path / "dfdc", frames=2, size=128, progress=False)
    assert s["videos_done"] == 1 and s["errors"] == {"missing": 5} and s["faces"] >= 2
