"""``dflab serve``: a web UI and a JSON API over the scanner (FastAPI).

API (all JSON):

* ``POST /api/jobs`` (multipart field ``file``) → 202 ``{"id", "status", "poll"}``; 413 over the size or duration
  limit, 415 when the content is not an image or video (sniffed from the bytes, never the extension), 503 with
  ``Retry-After`` when the pool and its queue are full.
* ``GET /api/jobs/{id}`` → ``{"id", "status": queued|running|done|error, "progress", "message", "result",
  "error", "artifacts"}``; ``GET /api/jobs/{id}/artifacts/{name}`` → PNG (timeline, key views) or JPEG (overlays).
* ``GET /api/health`` → queue and worker state, process memory.

Safety: :class:`dflab.serve.security.Gate` refuses before the body is read — an unknown ``Host`` (DNS
rebinding), a missing token (binds beyond loopback), a cross-origin POST, a full queue (503) — and cuts a body at
the first chunk past ``max_upload_bytes`` (413); it adds CSP and ``nosniff`` headers to every response. Error
bodies never show server paths. Uploads are written under generated names only (mode 0600; a kill mid-upload
leaves an orphan that the next start deletes); request values reach the file system nowhere (job ids and
artifact names are validated and looked up in the database); the static UI is served from memory; the detector is
loaded once from safetensors + JSON (nothing unpickled) and never from a request.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import FastAPI, File, HTTPException, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from dflab.errors import MediaError
from dflab.media.image import fit_scale
from dflab.scan.pipeline import ScanOptions, Scorer, scan_file
from dflab.scan.report import picture_type
from dflab.serve.jobs import JobStore, PoolConfig, Retention, WorkerPool, scrub
from dflab.serve.security import LOOPBACK_HOSTS, Gate, Refusal

_ID = re.compile(r"^[0-9a-f]{32}$")
_ARTIFACT = re.compile(r"^[a-z0-9_]{1,64}$")
_STATIC = {"index.html": "text/html", "app.js": "text/javascript", "style.css": "text/css"}


@dataclass
class ServeConfig:
    """Limits and places of the service.

    Attributes:
        data_dir: holds ``jobs.sqlite`` and ``uploads/`` (created).
        detector: checkpoint path, or ``None`` for the shipped default.
        workers: scanning threads.
        max_queue: jobs that may wait beyond the running ones before 503.
        max_upload_bytes: largest request body.
        max_duration_s: longest video accepted.
        job_timeout_s: per-job time limit.
        retry_after_s: the ``Retry-After`` of a 503.
        max_frames: frames sampled per video.
        allowed_hosts: ``Host`` names answered (DNS-rebinding defence; ``*`` = any).
        token: shared secret required on every request (``None``: none; the CLI sets one beyond loopback).
        retention: how many finished jobs (age, count, bytes) ``jobs.sqlite`` keeps.
    """

    data_dir: Path = Path("serve_data")
    detector: str | None = None
    workers: int = 1
    max_queue: int = 8
    max_upload_bytes: int = 100 * 2**20
    max_duration_s: float = 120.0
    job_timeout_s: float = 300.0
    retry_after_s: int = 5
    max_frames: int = 24
    allowed_hosts: tuple[str, ...] = LOOPBACK_HOSTS
    token: str | None = None
    retention: Retention = field(default_factory=Retention)
    extra: dict[str, Any] = field(default_factory=dict)


def _rss_mb() -> float:
    import psutil

    return round(psutil.Process(os.getpid()).memory_info().rss / 2**20, 1)


def create_app(
    cfg: ServeConfig | None = None, scorers: list[Scorer] | None = None, scan_fn: Callable[..., Any] | None = None
):
    """Build the FastAPI app (wrapped in :class:`~dflab.serve.security.Gate`).

    Args:
        cfg: limits and places.
        scorers: in-memory detectors instead of loading ``cfg.detector`` (tests, benchmarks).
        scan_fn: replaces :func:`~dflab.scan.pipeline.scan_file` (tests of the queue only).
    """
    from dflab import media
    from dflab.scan.pipeline import load_scorer

    cfg = cfg or ServeConfig()
    data_dir = Path(cfg.data_dir)
    uploads = data_dir / "uploads"
    uploads.mkdir(parents=True, exist_ok=True)
    os.chmod(uploads, 0o700)  # uploads are the analysts' evidence: this user only (data_dir may be shared)
    static = {name: (resources.files("dflab.serve") / "static" / name).read_bytes() for name in _STATIC}
    scorers = scorers or [load_scorer(cfg.detector)]
    store = JobStore(data_dir / "jobs.sqlite", retention=cfg.retention)
    scan_opts = ScanOptions(max_frames=cfg.max_frames, max_duration_s=cfg.max_duration_s)
    pool_cfg = PoolConfig(cfg.workers, cfg.max_queue, cfg.job_timeout_s, scan_opts)
    pool = WorkerPool(store, uploads, scorers, pool_cfg, scan_fn=scan_fn or scan_file)

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        pool.start()
        yield
        pool.stop()
        store.close()

    app = FastAPI(title="dflab", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.store, app.state.pool, app.state.cfg = store, pool, cfg

    def _error(status: int, cause: str, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
        return JSONResponse({"error": {"cause": cause, "detail": detail}}, status_code=status, headers=headers)

    # FastAPI's own refusals (unknown route, wrong method, a request without the ``file`` field) answer in the same
    # ``{"error": {"cause", "detail"}}`` shape as ours: a client reads one shape, never ``{"detail": [...]}``
    @app.exception_handler(StarletteHTTPException)
    async def http_refusal(_request: Any, exc: StarletteHTTPException) -> JSONResponse:
        cause = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "bad_request")
        return _error(exc.status_code, cause, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request: Any, exc: RequestValidationError) -> JSONResponse:
        missing_file = any(tuple(e.get("loc", ()))[-1:] == ("file",) for e in exc.errors())
        if missing_file:
            return _error(422, "bad_request", "no file: send the media as the multipart/form-data field 'file'")
        where = "; ".join(f"{'.'.join(map(str, e.get('loc', ())))}: {e.get('msg', '')}" for e in exc.errors())
        return _error(422, "bad_request", where[:300])

    @app.get("/")
    def index() -> Response:
        return Response(static["index.html"], media_type="text/html")

    @app.get("/static/{name}")
    def static_file(name: str) -> Response:
        if name not in _STATIC:  # a fixed in-memory table: no path is ever built from ``name``
            raise HTTPException(404)
        return Response(static[name], media_type=_STATIC[name])

    @app.get("/api/health")
    def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "queued": store.count(("queued",)),
            "running": store.count(("running",)),
            "workers": cfg.workers,
            "capacity": pool.capacity,
            "alive_workers": sum(t.is_alive() for t in pool.threads),
            "rss_mb": _rss_mb(),
            "detector": [s.name for s in scorers],
        }

    @app.post("/api/jobs", status_code=202)
    def submit(file: UploadFile = File(...)) -> Any:
        # a sync endpoint: FastAPI runs it in a thread, so copying and sniffing never block the event loop
        if pool.store.count() >= pool.capacity:
            return _error(503, "busy", "queue full, retry later", {"Retry-After": str(cfg.retry_after_s)})
        job_id = uuid.uuid4().hex
        name = f"{job_id}.upload"  # generated; the client's filename is never used
        dest = uploads / name
        with os.fdopen(os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as fh:
            shutil.copyfileobj(file.file, fh, length=2**20)
        size = dest.stat().st_size
        try:
            if size == 0:
                raise MediaError(name, "zero_bytes")
            info = media.probe(dest)
            if not fit_scale(info.width, info.height, scan_opts.max_pixels, info.jpeg):
                raise MediaError(name, "too_large", f"{info.width}x{info.height} pixels")
            if info.kind == "video" and info.duration > cfg.max_duration_s:
                raise MediaError(name, "too_large", f"{info.duration:.1f} s > limit {cfg.max_duration_s:.0f} s")
        except MediaError as exc:
            dest.unlink(missing_ok=True)
            status = {"too_large": 413, "not_media": 415, "unsupported_codec": 415}.get(exc.cause, 422)
            return _error(status, exc.cause, scrub(exc.detail or exc.cause, uploads))
        if not pool.try_admit(name, size, info.kind, job_id):
            dest.unlink(missing_ok=True)
            return _error(503, "busy", "queue full, retry later", {"Retry-After": str(cfg.retry_after_s)})
        return {"id": job_id, "status": "queued", "kind": info.kind, "poll": f"/api/jobs/{job_id}"}

    @app.get("/api/jobs/{job_id}")
    def job(job_id: str) -> Any:
        found = store.get(job_id) if _ID.match(job_id) else None
        if found is None:
            return _error(404, "unknown_job", "no such job")
        found.pop("upload", None)
        return found

    @app.get("/api/jobs/{job_id}/artifacts/{name}")
    def artifact(job_id: str, name: str) -> Response:
        data = store.artifact(job_id, name) if _ID.match(job_id) and _ARTIFACT.match(name) else None
        if data is None:
            raise HTTPException(404)
        return Response(data, media_type=picture_type(data))

    from dflab.serve.views_api import add_view_routes

    add_view_routes(app, store, scorers)  # the analyst's view, report downloads, detector card

    def refuse(scope: dict[str, Any]) -> Refusal | None:
        """503 before the body is read: a full queue must not cost the client (or the disk) a 90 MB upload."""
        if scope["method"] == "POST" and scope["path"] == "/api/jobs" and store.count() >= pool.capacity:
            body = {"error": {"cause": "busy", "detail": "queue full, retry later"}}
            return 503, body, {"Retry-After": str(cfg.retry_after_s)}
        return None

    wrapped = Gate(app, max_body=cfg.max_upload_bytes, allowed_hosts=cfg.allowed_hosts, token=cfg.token, refuse=refuse)
    wrapped.state = app.state  # type: ignore[attr-defined]
    wrapped.fastapi = app  # type: ignore[attr-defined]
    return wrapped
