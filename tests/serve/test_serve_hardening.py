"""A server that refuses early and keeps nothing it should not (issue 14, items 6–11): streamed bodies cut at the
limit with 413, 503 before the body is read, orphan uploads cleaned at start, no server paths in error bodies,
Host/Origin/token checks and security headers, bounded and private ``jobs.sqlite``."""

from __future__ import annotations

import asyncio
import json
import stat
import threading
import time

import pytest
from fastapi.testclient import TestClient

from dflab.scan.corpus import EXPECTED
from dflab.scan.pipeline import ScanResult
from dflab.serve.app import ServeConfig, create_app
from dflab.serve.jobs import JobStore, Retention

BOUNDARY = "dflabtestboundary"
CHUNK = 64 * 1024


def _client(app, host: str = "127.0.0.1") -> TestClient:
    return TestClient(app, base_url=f"http://{host}")


def _post_streamed(app, n_chunks: int, headers: dict[str, str] | None = None) -> tuple[int, dict, int]:
    """POST /api/jobs as a chunked multipart body (no Content-Length) straight through ASGI.

    Returns:
        status, JSON body, and how many body chunks the server asked for.
    """
    pulled = 0
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="big.mp4"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()

    async def receive() -> dict:
        nonlocal pulled
        pulled += 1
        if pulled > n_chunks:
            return {"type": "http.request", "body": f"\r\n--{BOUNDARY}--\r\n".encode(), "more_body": False}
        return {"type": "http.request", "body": (head if pulled == 1 else b"") + b"\0" * CHUNK, "more_body": True}

    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    raw = [(b"host", b"127.0.0.1"), (b"content-type", f"multipart/form-data; boundary={BOUNDARY}".encode())]
    raw += [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/api/jobs", "raw_path": b"/api/jobs", "query_string": b"", "headers": raw,
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 8000)}  # fmt: skip
    asyncio.run(app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], json.loads(body), pulled


def _blocked_scan(gate: threading.Event):
    def scan(path, scorers, opts, *, progress=None, deadline=None):
        gate.wait(20)
        return ScanResult({"path": str(path), "status": "no_face", "verdict": "no_face", "score": None, "ci": None})

    return scan


# ------------------------------------------------------------------------------------------------ items 6 and 7
def test_streamed_upload_over_the_limit_is_413_and_stops_reading(tmp_path, tiny_scorers):
    limit = 10 * CHUNK
    app = create_app(ServeConfig(data_dir=tmp_path / "srv", max_upload_bytes=limit), scorers=tiny_scorers)
    status, body, pulled = _post_streamed(app, n_chunks=200)  # 12.5 MB offered, no Content-Length
    assert status == 413 and body["error"]["cause"] == "too_large"  # the old code answered 400
    assert pulled <= limit // CHUNK + 2  # cut at the first chunk past the limit, not after the whole body
    assert list((tmp_path / "srv" / "uploads").iterdir()) == []


def test_full_queue_answers_503_before_reading_the_body(tmp_path):
    cfg = ServeConfig(data_dir=tmp_path / "srv", workers=1, max_queue=0, retry_after_s=9)
    app = create_app(cfg, scorers=[object()], scan_fn=_blocked_scan(threading.Event()))
    app.state.store.create("waiting.upload", 1, "image")  # the one slot is taken
    status, body, pulled = _post_streamed(app, n_chunks=50)
    assert status == 503 and body["error"]["cause"] == "busy"
    assert pulled == 0  # the old code read (and wrote) the whole body first


# ------------------------------------------------------------------------------------------------ items 8 and 9
def test_orphan_uploads_are_deleted_at_start_and_live_ones_kept(tmp_path):
    uploads = tmp_path / "srv" / "uploads"
    uploads.mkdir(parents=True)
    store = JobStore(tmp_path / "srv" / "jobs.sqlite")
    store.create("live.upload", 3, "image")
    store.close()
    (uploads / "live.upload").write_bytes(b"abc")
    (uploads / "0123456789abcdef0123456789abcdef.upload").write_bytes(b"half an upload")  # killed mid-upload
    gate = threading.Event()
    app = create_app(ServeConfig(data_dir=tmp_path / "srv"), scorers=[object()], scan_fn=_blocked_scan(gate))
    with _client(app):
        assert sorted(p.name for p in uploads.iterdir()) == ["live.upload"]
        gate.set()


def test_error_bodies_never_show_server_paths(tmp_path, tiny_scorers, corpus, wait):
    app = create_app(ServeConfig(data_dir=tmp_path / "srv", max_frames=4), scorers=tiny_scorers)
    with _client(app) as client:
        for name in EXPECTED:
            r = client.post("/api/jobs", files={"file": (name, corpus[name].read_bytes())})
            text = json.dumps(wait(client, r.json()["id"])) if r.status_code == 202 else r.text
            assert str(tmp_path) not in text and "/uploads/" not in text, (name, text)


# ------------------------------------------------------------------------------------------------ item 10
def test_unknown_host_is_refused(tmp_path, tiny_scorers):
    app = create_app(ServeConfig(data_dir=tmp_path / "srv"), scorers=tiny_scorers)
    with _client(app, host="rebind.attacker.example") as client:
        r = client.get("/api/health")
        assert r.status_code == 400 and r.json()["error"]["cause"] == "bad_host"
        ok = client.get("/api/health", headers={"Host": "localhost:8000"})
        assert ok.status_code == 200


def test_cross_origin_post_is_refused_same_origin_passes(tmp_path, tiny_scorers, corpus):
    gate = threading.Event()
    app = create_app(ServeConfig(data_dir=tmp_path / "srv"), scorers=tiny_scorers, scan_fn=_blocked_scan(gate))
    data = corpus["astronaut.png"].read_bytes()
    with _client(app) as client:
        evil = client.post("/api/jobs", files={"file": ("a.png", data)}, headers={"Origin": "https://evil.example"})
        assert evil.status_code == 403 and evil.json()["error"]["cause"] == "cross_origin"
        site = client.post("/api/jobs", files={"file": ("a.png", data)}, headers={"Sec-Fetch-Site": "cross-site"})
        assert site.status_code == 403
        own = client.post("/api/jobs", files={"file": ("a.png", data)}, headers={"Origin": "http://127.0.0.1"})
        assert own.status_code == 202
        gate.set()


@pytest.mark.parametrize("path", ["/", "/static/app.js", "/api/health", "/api/jobs/" + "0" * 32])
def test_security_headers_on_every_response(tmp_path, tiny_scorers, path):
    app = create_app(ServeConfig(data_dir=tmp_path / "srv"), scorers=tiny_scorers)
    with _client(app) as client:
        r = client.get(path)
        assert r.headers["x-content-type-options"] == "nosniff"
        assert "default-src 'self'" in r.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
        refused = client.get(path, headers={"Host": "evil.example"})  # refusals carry them too
        assert refused.status_code == 400 and refused.headers["x-content-type-options"] == "nosniff"


def test_token_required_when_configured(tmp_path, tiny_scorers):
    app = create_app(ServeConfig(data_dir=tmp_path / "srv", token="s3cret"), scorers=tiny_scorers)
    with _client(app) as client:
        assert client.get("/api/health").status_code == 401
        assert client.get("/api/health", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert client.get("/api/health", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        page = client.get("/?token=s3cret")  # the URL the CLI prints: sets a same-site cookie for the UI's requests
        assert page.status_code == 200 and "HttpOnly" in page.headers["set-cookie"]
        assert "SameSite=Strict" in page.headers["set-cookie"]
        assert client.get("/api/health").status_code == 200  # the cookie now rides along
        other = {"Cookie": "$bad=1; dflab_token=s3cret"}  # another localhost app's malformed cookie beside ours
        assert client.get("/api/health", headers=other).status_code == 200


def test_cli_generates_a_token_beyond_loopback(monkeypatch, tmp_path, capsys):
    import uvicorn

    from dflab.cli import main

    seen = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.update(app=app, **kw))
    monkeypatch.delenv("DFLAB_SERVE_TOKEN", raising=False)
    assert main(["serve", "--host", "0.0.0.0", "--data", str(tmp_path / "srv")]) == 0
    assert seen["app"].token and f"?token={seen['app'].token}" in capsys.readouterr().out
    assert main(["serve", "--data", str(tmp_path / "srv2")]) == 0  # loopback: no token needed
    assert seen["app"].token is None and "127.0.0.1" in seen["app"].allowed_hosts


# ------------------------------------------------------------------------------------------------ item 11
def _finished(store: JobStore, n: int, size: int, age_s: float = 0.0) -> list[str]:
    ids = []
    for i in range(n):
        job = store.create(f"{i}.upload", 1, "image")
        store.finish(job, "done", {"status": "ok", "i": i}, {"frame000000": b"\0" * size})
        store.db.execute("UPDATE jobs SET updated = ? WHERE id = ?", (time.time() - age_s + i, job))
        store.db.commit()
        ids.append(job)
    return ids


def test_retention_by_count_age_and_size_and_the_file_shrinks(tmp_path):
    store = JobStore(tmp_path / "jobs.sqlite", retention=Retention(max_age_days=None, max_jobs=5, max_bytes=None))
    ids = _finished(store, 40, 100_000)
    live = store.create("live.upload", 1, "image")  # active jobs are never pruned
    store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    before = (tmp_path / "jobs.sqlite").stat().st_size
    assert store.prune() == 35
    assert [store.get(i) is not None for i in ids] == [False] * 35 + [True] * 5  # the newest survive
    assert store.get(live)["status"] == "queued"
    after = sum(f.stat().st_size for f in tmp_path.glob("jobs.sqlite*"))
    assert after < before / 3  # the pages of pruned jobs go back to the file system

    store.retention = Retention(max_age_days=1.0, max_jobs=None, max_bytes=None)
    old = _finished(store, 3, 10, age_s=3 * 86400)
    assert store.prune() == 3 and all(store.get(i) is None for i in old)

    store.retention = Retention(max_age_days=None, max_jobs=None, max_bytes=250_000)
    assert store.prune() == 3  # 5 × 100 kB → 2 fit
    store.close()


def test_store_files_are_private(tmp_path):
    store = JobStore(tmp_path / "jobs.sqlite")
    _finished(store, 2, 10)
    for f in tmp_path.iterdir():
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
    store.close()


def test_finished_jobs_are_pruned_while_serving(tmp_path, tiny_scorers, corpus, wait):
    cfg = ServeConfig(data_dir=tmp_path / "srv", retention=Retention(max_age_days=None, max_jobs=2, max_bytes=None))
    app = create_app(cfg, scorers=tiny_scorers, scan_fn=lambda p, s, o, **k: ScanResult(
        {"path": str(p), "status": "no_face", "verdict": "no_face", "score": None, "ci": None}))  # fmt: skip
    with _client(app) as client:
        ids = []
        for _ in range(4):
            r = client.post("/api/jobs", files={"file": ("a.png", corpus["astronaut.png"].read_bytes())})
            ids.append(r.json()["id"])
            wait(client, ids[-1])
        assert [client.get(f"/api/jobs/{i}").status_code for i in ids] == [404, 404, 200, 200]
