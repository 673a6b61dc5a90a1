"""Jobs of the web service: an SQLite store (jobs and their result images survive a restart) and a bounded pool of
worker threads that run :func:`dflab.scan.pipeline.scan_file` on them.

Admission is bounded by the store, not by memory: a job is accepted only while fewer than ``workers + max_queue``
jobs are queued or running (the API answers 503 + Retry-After otherwise), and the in-memory queue only ever holds
job ids. Uploads live under generated names (``<job id>.upload``) in one folder and are deleted once their job is
final; the results (JSON and PNGs) live in the database and are read back by job id and artifact name only.

Nothing piles up: on start, uploads that belong to no queued or running job (a kill mid-upload) are deleted, and
finished jobs beyond the :class:`Retention` limits (age, count, total bytes) are deleted oldest first, on start and
after every job; the file shrinks with them (full auto-vacuum). ``jobs.sqlite`` (and its WAL) are created
0600: results describe the analysts' files. Stored error details never name server paths (:func:`scrub`).
"""

from __future__ import annotations

import json
import os
import queue
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dflab.scan.pipeline import ScanOptions, ScanResult, Scorer, scan_file
from dflab.scan.report import picture_type

FINAL = ("done", "error")
ACTIVE = ("queued", "running")
UPLOAD_SUFFIX = ".upload"


@dataclass
class Retention:
    """How many finished jobs the store keeps; the oldest go first once any limit is passed.

    Attributes:
        max_age_days: finished jobs older than this are deleted (``None`` = no age limit).
        max_jobs: at most this many finished jobs.
        max_bytes: at most this many bytes of results and artifacts over all finished jobs.
    """

    max_age_days: float | None = 7.0
    max_jobs: int | None = 500
    max_bytes: int | None = 256 * 2**20


def scrub(text: str, *folders: Path) -> str:
    """``text`` with every mention of ``folders`` removed: error details reach clients, server paths must not."""
    for folder in folders:
        for form in {str(folder), str(Path(folder).resolve())}:
            text = text.replace(form + os.sep, "").replace(form, "")
    return text


def _private_file(path: Path) -> None:
    """Create ``path`` (if absent) readable by this user only; an existing file is narrowed to 0600."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    os.close(fd)
    os.chmod(path, 0o600)


class JobStore:
    """Jobs table + artifacts table in one SQLite file; safe to share between threads (one lock)."""

    def __init__(self, path: str | Path, retention: Retention | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.retention = retention or Retention()
        self._lock = threading.Lock()
        _private_file(self.path)  # SQLite gives the -wal and -shm files the main file's permissions
        for suffix in ("-wal", "-shm"):
            side = self.path.with_name(self.path.name + suffix)
            if side.exists():
                os.chmod(side, 0o600)
        self.db = sqlite3.connect(str(self.path), check_same_thread=False, timeout=30)
        self.db.row_factory = sqlite3.Row
        with self._lock:
            if self.db.execute("PRAGMA auto_vacuum").fetchone()[0] != 1:
                # full auto-vacuum gives the pages of pruned jobs back to the file system at each commit (Python's
                # sqlite3 steps ``PRAGMA incremental_vacuum`` only once: one page per call); switching an existing
                # database needs one VACUUM (outside a transaction)
                self.db.execute("PRAGMA auto_vacuum=FULL")
                self.db.execute("VACUUM")
        with self._lock, self.db:
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute(
                "CREATE TABLE IF NOT EXISTS jobs (id TEXT PRIMARY KEY, status TEXT NOT NULL, created REAL,"
                " updated REAL, progress REAL, message TEXT, upload TEXT, size INTEGER, kind TEXT, result TEXT,"
                " error TEXT)"
            )
            self.db.execute(
                "CREATE TABLE IF NOT EXISTS artifacts (job_id TEXT, name TEXT, mime TEXT, data BLOB,"
                " PRIMARY KEY(job_id, name))"
            )

    def create(self, upload: str, size: int, kind: str, job_id: str | None = None) -> str:
        job_id = job_id or uuid.uuid4().hex
        now = time.time()
        with self._lock, self.db:
            self.db.execute(
                "INSERT INTO jobs (id, status, created, updated, progress, message, upload, size, kind)"
                " VALUES (?, 'queued', ?, ?, 0, 'queued', ?, ?, ?)",
                (job_id, now, now, upload, size, kind),
            )
        return job_id

    def update(self, job_id: str, **fields: Any) -> None:
        fields["updated"] = time.time()
        for key in ("result", "error"):
            if key in fields and not isinstance(fields[key], str | None):
                fields[key] = json.dumps(fields[key])
        cols = ", ".join(f"{k} = ?" for k in fields)  # keys are ours, never from a request
        with self._lock, self.db:
            self.db.execute(f"UPDATE jobs SET {cols} WHERE id = ?", (*fields.values(), job_id))

    def finish(self, job_id: str, status: str, result: dict[str, Any] | None, artifacts: dict[str, bytes]) -> None:
        """Store the final state and the artifacts in one transaction."""
        now = time.time()
        error = (result or {}).get("error") if status == "error" else None
        with self._lock, self.db:
            for name, data in artifacts.items():
                self.db.execute(
                    "INSERT OR REPLACE INTO artifacts VALUES (?, ?, ?, ?)",
                    (job_id, name, picture_type(data), sqlite3.Binary(data)),
                )
            self.db.execute(
                "UPDATE jobs SET status = ?, progress = 1, message = ?, result = ?, error = ?, updated = ?"
                " WHERE id = ?",
                (status, status, json.dumps(result), json.dumps(error) if error else None, now, job_id),
            )

    def get(self, job_id: str) -> dict[str, Any] | None:
        with self._lock:
            row = self.db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
            names = [
                r[0] for r in self.db.execute("SELECT name FROM artifacts WHERE job_id = ? ORDER BY name", (job_id,))
            ]
        if row is None:
            return None
        job = dict(row)
        for key in ("result", "error"):
            job[key] = json.loads(job[key]) if job[key] else None
        job["artifacts"] = names
        return job

    def artifact(self, job_id: str, name: str) -> bytes | None:
        with self._lock:
            row = self.db.execute("SELECT data FROM artifacts WHERE job_id = ? AND name = ?", (job_id, name)).fetchone()
        return None if row is None else bytes(row[0])

    def count(self, statuses: Sequence[str] = ACTIVE) -> int:
        marks = ", ".join("?" for _ in statuses)
        with self._lock:
            return int(
                self.db.execute(f"SELECT COUNT(*) FROM jobs WHERE status IN ({marks})", tuple(statuses)).fetchone()[0]
            )

    def active_uploads(self) -> set[str]:
        """Upload names of queued and running jobs (the uploads still needed)."""
        with self._lock:
            rows = self.db.execute("SELECT upload FROM jobs WHERE status IN ('queued', 'running')").fetchall()
        return {r[0] for r in rows if r[0]}

    def prune(self, now: float | None = None) -> int:
        """Delete finished jobs (and their artifacts) beyond :attr:`retention`, oldest first; returns how many."""
        r = self.retention
        now = time.time() if now is None else now
        with self._lock:
            rows = self.db.execute(
                "SELECT j.id, j.updated, COALESCE(LENGTH(j.result), 0) + COALESCE(LENGTH(j.error), 0)"
                " + COALESCE((SELECT SUM(LENGTH(a.data)) FROM artifacts a WHERE a.job_id = j.id), 0)"
                " FROM jobs j WHERE j.status IN ('done', 'error') ORDER BY j.updated DESC, j.id"
            ).fetchall()
            doomed, total = [], 0
            for i, (job_id, updated, size) in enumerate(rows):  # newest first: keep while within every limit
                total += int(size)
                too_old = r.max_age_days is not None and now - float(updated or 0) > r.max_age_days * 86400
                too_many = r.max_jobs is not None and i >= r.max_jobs
                too_big = r.max_bytes is not None and total > r.max_bytes
                if too_old or too_many or too_big:
                    doomed.append(job_id)
            if doomed:
                with self.db:
                    marks = ", ".join("?" for _ in doomed)
                    self.db.execute(f"DELETE FROM artifacts WHERE job_id IN ({marks})", doomed)
                    self.db.execute(f"DELETE FROM jobs WHERE id IN ({marks})", doomed)
                self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()  # the shrunk file reaches the disk
        return len(doomed)

    def recover(self) -> list[str]:
        """After a restart: jobs left ``running`` go back to ``queued``; returns every queued id, oldest first."""
        with self._lock, self.db:
            self.db.execute(
                "UPDATE jobs SET status = 'queued', message = 'requeued after restart' WHERE status = 'running'"
            )
            return [r[0] for r in self.db.execute("SELECT id FROM jobs WHERE status = 'queued' ORDER BY created")]

    def close(self) -> None:
        with self._lock:
            self.db.close()


@dataclass
class PoolConfig:
    """Limits of the worker pool (see :class:`dflab.serve.app.ServeConfig` for the HTTP side)."""

    workers: int = 1
    max_queue: int = 8
    job_timeout_s: float = 300.0
    scan: ScanOptions | None = None


def result_artifacts(res: ScanResult, media_path: Path | None = None, scorer: Scorer | None = None) -> dict[str, bytes]:
    """PNG artifacts of a scan, by name: timeline and overlays, and with the media file at hand the track
    thumbnails, key frames and heatmap layers (:func:`dflab.scan.views.render_views`)."""
    from dflab.errors import DflabError
    from dflab.scan.views import render_views

    try:
        return render_views(res.record, media_path, scorer, res.overlays, frames=res.frames, heats=res.heats)
    except (DflabError, RuntimeError, ValueError, OSError):  # pictures are extras: the verdict must still be stored
        return render_views(res.record, None, None, res.overlays)


class WorkerPool:
    """``workers`` threads taking job ids from a queue; each job is scanned under a deadline."""

    def __init__(
        self,
        store: JobStore,
        uploads: Path,
        scorers: Sequence[Scorer],
        cfg: PoolConfig,
        scan_fn: Callable[..., ScanResult] = scan_file,
    ) -> None:
        self.store, self.uploads, self.scorers, self.cfg = store, uploads, list(scorers), cfg
        self.scan_fn = scan_fn
        self.queue: queue.Queue[str | None] = queue.Queue()
        self.threads: list[threading.Thread] = []
        self._admit = threading.Lock()

    @property
    def capacity(self) -> int:
        return self.cfg.workers + self.cfg.max_queue

    def start(self) -> None:
        if any(not getattr(s, "array_io", False) for s in self.scorers):  # torch detectors share the cores
            import torch

            torch.set_num_threads(max(1, torch.get_num_threads() // max(1, self.cfg.workers)))
        for job_id in self.store.recover():
            self.queue.put(job_id)
        self.clean_orphans()
        self.store.prune()
        for i in range(self.cfg.workers):
            t = threading.Thread(target=self._loop, name=f"dflab-worker-{i}", daemon=True)
            t.start()
            self.threads.append(t)

    def stop(self, timeout: float = 10.0) -> None:
        for _ in self.threads:
            self.queue.put(None)
        for t in self.threads:
            t.join(timeout)
        self.threads.clear()

    def clean_orphans(self) -> list[str]:
        """Delete uploads no queued or running job needs (a kill mid-upload, before its job existed); returns them."""
        keep = self.store.active_uploads()
        gone = []
        for f in self.uploads.iterdir():
            if f.is_file() and f.name.endswith(UPLOAD_SUFFIX) and f.name not in keep:
                f.unlink(missing_ok=True)
                gone.append(f.name)
        return gone

    def try_admit(self, upload: str, size: int, kind: str, job_id: str) -> bool:
        """Create and enqueue a job unless the pool is full (then the caller answers 503)."""
        with self._admit:
            if self.store.count() >= self.capacity:
                return False
            self.store.create(upload, size, kind, job_id=job_id)
        self.queue.put(job_id)
        return True

    def _loop(self) -> None:
        while True:
            job_id = self.queue.get()
            if job_id is None:
                return
            self.run_job(job_id)

    def run_job(self, job_id: str) -> None:
        job = self.store.get(job_id)
        if job is None or job["status"] != "queued":
            return
        path = self.uploads / job["upload"]
        self.store.update(job_id, status="running", progress=0.0, message="starting")
        last = [0.0]

        def progress(frac: float, msg: str) -> None:
            now = time.monotonic()
            if now - last[0] > 0.25 or frac >= 1.0:  # keep the database writes few
                last[0] = now
                self.store.update(job_id, progress=round(frac, 3), message=msg)

        deadline = time.monotonic() + self.cfg.job_timeout_s
        try:
            res = self.scan_fn(path, self.scorers, self.cfg.scan or ScanOptions(), progress=progress, deadline=deadline)
        except (RuntimeError, OSError, ValueError, MemoryError) as exc:  # a worker must outlive any one job
            res = ScanResult(
                {"status": "error", "verdict": "error", "error": {"cause": "internal", "detail": str(exc)}}
            )
        rec = dict(res.record)
        rec["path"] = job["upload"]  # the generated name, never the client's
        if isinstance(rec.get("error"), dict):  # decoder messages quote the file they failed on
            rec["error"] = {k: scrub(v, self.uploads) if isinstance(v, str) else v for k, v in rec["error"].items()}
        status = "error" if rec["status"] == "error" else "done"
        scorer = self.scorers[0] if self.scorers else None
        arts = result_artifacts(res, path, scorer) if status == "done" else {}
        self.store.finish(job_id, status, rec, arts)
        path.unlink(missing_ok=True)
        self.store.prune()
