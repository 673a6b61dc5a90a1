"""Job store and worker pool: persistence across restarts, bounded admission, per-job timeout, worker survival."""

from __future__ import annotations

import threading
import time

import pytest

from dflab.scan.pipeline import ScanResult
from dflab.serve.jobs import JobStore, PoolConfig, WorkerPool


def _ok(path, scorers, opts, *, progress=None, deadline=None) -> ScanResult:
    progress(0.5, "half way")
    return ScanResult({"path": str(path), "status": "ok", "verdict": "real", "score": 0.1, "ci": [0.05, 0.2]})


def _wait(store: JobStore, job_id: str, timeout: float = 10.0) -> dict:
    end = time.time() + timeout
    while time.time() < end:
        job = store.get(job_id)
        if job["status"] in ("done", "error"):
            return job
        time.sleep(0.02)
    raise AssertionError(f"job {job_id} not final after {timeout} s: {store.get(job_id)}")


def test_store_roundtrip_and_recover(tmp_path):
    store = JobStore(tmp_path / "jobs.sqlite")
    a = store.create("a.upload", 10, "image")
    b = store.create("b.upload", 20, "video")
    store.update(a, status="running", progress=0.3)
    store.finish(b, "done", {"score": 0.7}, {"timeline": b"\x89PNG..."})
    store.close()

    again = JobStore(tmp_path / "jobs.sqlite")  # a restart
    assert again.get(b)["result"] == {"score": 0.7}
    assert again.get(b)["artifacts"] == ["timeline"]
    assert again.artifact(b, "timeline") == b"\x89PNG..."
    assert again.recover() == [a]  # the interrupted job is queued again
    assert again.get(a)["status"] == "queued"
    assert again.count() == 1
    assert again.get("0" * 32) is None


def test_pool_runs_jobs_and_deletes_uploads(tmp_path):
    store = JobStore(tmp_path / "jobs.sqlite")
    (tmp_path / "x.upload").write_bytes(b"data")
    pool = WorkerPool(store, tmp_path, [], PoolConfig(workers=1, max_queue=2), scan_fn=_ok)
    pool.start()
    try:
        assert pool.try_admit("x.upload", 4, "image", "a" * 32)
        job = _wait(store, "a" * 32)
    finally:
        pool.stop()
    assert job["status"] == "done"
    assert job["result"]["verdict"] == "real"
    assert job["result"]["path"] == "x.upload"  # generated name only
    assert not (tmp_path / "x.upload").exists()


def test_pool_admission_is_bounded(tmp_path):
    store = JobStore(tmp_path / "jobs.sqlite")
    gate = threading.Event()

    def blocked(path, scorers, opts, *, progress=None, deadline=None):
        gate.wait(10)
        return _ok(path, scorers, opts, progress=progress)

    pool = WorkerPool(store, tmp_path, [], PoolConfig(workers=1, max_queue=2), scan_fn=blocked)
    pool.start()
    try:
        admitted = [pool.try_admit(f"{i}.upload", 1, "image", f"{i:032x}") for i in range(5)]
        assert admitted == [True, True, True, False, False]  # 1 running + 2 waiting, then refused
        gate.set()
        for i in range(3):
            _wait(store, f"{i:032x}")
        assert pool.try_admit("9.upload", 1, "image", "9" * 32)  # room again
        _wait(store, "9" * 32)
    finally:
        gate.set()
        pool.stop()


def test_worker_survives_a_crashing_job_and_timeout_is_passed(tmp_path):
    store = JobStore(tmp_path / "jobs.sqlite")
    seen = {}

    def crash(path, scorers, opts, *, progress=None, deadline=None):
        seen["deadline"] = deadline - time.monotonic()
        raise RuntimeError("boom")

    pool = WorkerPool(store, tmp_path, [], PoolConfig(workers=1, job_timeout_s=7.0), scan_fn=crash)
    pool.start()
    try:
        pool.try_admit("c.upload", 1, "image", "c" * 32)
        job = _wait(store, "c" * 32)
        assert job["status"] == "error"
        assert job["error"]["cause"] == "internal"
        assert 0 < seen["deadline"] <= 7.0
        pool.scan_fn = _ok
        pool.try_admit("d.upload", 1, "image", "d" * 32)
        assert _wait(store, "d" * 32)["status"] == "done"
        assert all(t.is_alive() for t in pool.threads)
    finally:
        pool.stop()


@pytest.mark.parametrize("job_id", ["../../etc/passwd", "x" * 32, "0" * 31])
def test_store_never_sees_bad_ids(tmp_path, job_id):
    store = JobStore(tmp_path / "jobs.sqlite")
    assert store.get(job_id) is None
