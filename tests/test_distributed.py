"""Ray scale-out on a small local Ray instance (2 CPUs): tasks, retries of killed workers, and the three commands
(prepare, scan of a folder, eval's prediction step) giving the same results as without Ray."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
import torch

ray = pytest.importorskip("ray", reason="the distributed extra (ray) is not installed")

from dflab.distributed import init_ray, run_tasks  # noqa: E402


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray instance for the module; workers inherit this process's environment (PYTHONPATH)."""
    init_ray("local", num_cpus=2)
    yield
    ray.shutdown()


def test_results_come_back_to_the_caller_and_failures_are_reported(local_ray):
    def square(x: int) -> int:
        if x == 3:
            raise ValueError("bad input")
        return x * x

    got, failed = {}, {}
    run_tasks(
        square,
        ((i, (i,)) for i in range(6)),
        on_result=got.__setitem__,
        on_failure=lambda k, e: failed.__setitem__(k, e),
        max_in_flight=2,
    )
    assert got == {0: 0, 1: 1, 2: 4, 4: 16, 5: 25}
    assert list(failed) == [3] and "bad input" in str(failed[3])


def test_a_killed_worker_s_task_is_retried(local_ray, tmp_path):
    """The first attempt kills its own worker process (as SIGKILL or the OOM killer would); Ray reruns the task."""

    def fragile(marker: str) -> int:
        if not os.path.exists(marker):
            Path(marker).write_text("died once")
            os._exit(1)
        return os.getpid()

    got, failed = {}, {}
    marker = str(tmp_path / "attempt")
    run_tasks(fragile, [("v", (marker,))], on_result=got.__setitem__, on_failure=failed.__setitem__)
    assert not failed and "v" in got
    assert Path(marker).read_text() == "died once"


def test_a_task_that_always_dies_is_reported_not_lost(local_ray):
    def doomed() -> None:
        os._exit(1)

    failed = {}
    run_tasks(doomed, [("v", ())], on_result=lambda k, r: None, on_failure=failed.__setitem__, max_retries=1)
    assert "v" in failed


def _snapshot(out: Path) -> dict:
    from dflab.data.manifest import Manifest

    with Manifest(out, readonly=True) as m:
        faces = sorted((r.video_id, r.frame_index, r.track_id, tuple(r.box)) for r in m.faces())
        videos = sorted((v["video_id"], v["status"]) for v in m.videos())
    crops = {
        str(p.relative_to(out)): hashlib.sha1(p.read_bytes()).hexdigest()
        for p in (out / "crops").rglob("*.png")
        if p.is_file()
    }
    return {"faces": faces, "videos": videos, "crops": crops}


@pytest.fixture(scope="module")
def media(tmp_path_factory, astronaut) -> Path:
    from dflab.scan.corpus import write_corpus

    out = tmp_path_factory.mktemp("media")
    files = write_corpus(out, astronaut)
    for name in files:  # keep a few good and broken files: small and quick
        if name not in ("astronaut.png", "clip.mp4", "faceless.png", "zero_bytes.mp4"):
            files[name].unlink()
    return out


def test_prepare_on_ray_writes_the_same_manifest_and_resumes(local_ray, media, tmp_path):
    from dflab.data.prepare import prepare_media

    local = prepare_media([media], tmp_path / "local", frames=4, progress=False)
    on_ray = prepare_media([media], tmp_path / "ray", frames=4, progress=False, ray="local")
    assert on_ray["faces"] == local["faces"] > 0
    assert _snapshot(tmp_path / "ray") == _snapshot(tmp_path / "local")
    again = prepare_media([media], tmp_path / "ray", frames=4, progress=False, ray="local")
    assert again["processed"] == 0 and again["skipped_already_done"] == on_ray["videos"]


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory) -> Path:
    from dflab.models.base import build_detector
    from dflab.models.checkpoint import save_detector

    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("ckpt") / "tiny"
    save_detector(build_detector("lisiam_tiny"), out, {"name": "tiny-test"})
    return out


def test_scan_folder_on_ray_gives_the_local_records(local_ray, media, tiny_ckpt):
    from dflab.scan.cli import expand_paths, scan_paths
    from dflab.scan.pipeline import ScanOptions, load_scorer

    paths = expand_paths([media])
    scorers = [load_scorer(str(tiny_ckpt))]
    opts = ScanOptions(max_frames=3, overlays=1)
    local = scan_paths(paths, scorers, opts, progress=False)
    remote = scan_paths(paths, scorers, opts, progress=False, ray="local", detectors=[str(tiny_ckpt)])
    assert [r.record["path"] for r in remote] == [str(p) for p in paths]
    for a, b in zip(local, remote, strict=True):
        assert a.record["status"] == b.record["status"] and a.record["verdict"] == b.record["verdict"]
        if a.record.get("score") is not None:
            assert b.record["score"] == pytest.approx(a.record["score"], abs=1e-5)
        assert len(a.overlays) == len(b.overlays)


def test_eval_prediction_on_ray_equals_local(local_ray, media, tiny_ckpt, tmp_path):
    from dflab.data.prepare import prepare_media
    from dflab.eval.predict import load_rows, predict, predict_on_ray
    from dflab.models.checkpoint import load_detector

    prepare_media([media], tmp_path / "prep", frames=4, progress=False)
    rows = load_rows([tmp_path / "prep"])
    loaded = load_detector(tiny_ckpt)
    local = predict(loaded.model, rows, spec=loaded.spec, batch_size=3)
    remote = predict_on_ray(tiny_ckpt, rows, address="local", spec=loaded.spec, batch_size=3)
    assert [(r.video_id, r.frame_index, r.track_id) for r in remote.rows] == [
        (r.video_id, r.frame_index, r.track_id) for r in local.rows
    ]
    assert np.allclose(remote.scores, local.scores, atol=1e-6)
