"""The JSON API end to end (FastAPI TestClient): submit → poll → result, limits, fuzz corpus, restart, safety."""

from __future__ import annotations

import threading

import pytest
from fastapi.testclient import TestClient

from dflab.scan.corpus import EXPECTED
from dflab.scan.pipeline import ScanResult
from dflab.serve.app import ServeConfig, create_app


def _client(tmp_path, scorers, **kw) -> TestClient:
    cfg = ServeConfig(data_dir=tmp_path / "srv", max_frames=4, **kw)
    return TestClient(create_app(cfg, scorers=scorers), base_url="http://127.0.0.1")  # a Host the server answers


def test_submit_poll_result_and_artifacts(tmp_path, tiny_scorers, corpus, wait):
    with _client(tmp_path, tiny_scorers) as client:
        r = client.post("/api/jobs", files={"file": ("../../evil name.png", corpus["astronaut.png"].read_bytes())})
        assert r.status_code == 202, r.text
        job = wait(client, r.json()["id"])
        assert job["status"] == "done"
        res = job["result"]
        assert res["verdict"] in ("fake", "real", "uncertain") and 0 <= res["score"] <= 1
        assert "evil" not in res["path"] and res["path"].endswith(".upload")
        assert "upload" not in job
        overlay = next(a for a in job["artifacts"] if a.startswith("frame"))
        pic = client.get(f"/api/jobs/{job['id']}/artifacts/{overlay}")  # an overlay is a photograph: JPEG
        assert pic.status_code == 200 and pic.content[:3] == b"\xff\xd8\xff"
        assert pic.headers["content-type"] == "image/jpeg"
        # the upload is gone once the job is final; only generated names were ever used
        assert list((tmp_path / "srv" / "uploads").iterdir()) == []

        v = client.post("/api/jobs", files={"file": ("clip.mp4", corpus["clip.mp4"].read_bytes())})
        vjob = wait(client, v.json()["id"])
        assert vjob["status"] == "done" and "timeline" in vjob["artifacts"]
        assert vjob["result"]["n_sampled"] == 4


def test_fuzz_corpus_every_file_answered_and_server_healthy(tmp_path, tiny_scorers, corpus, wait):
    with _client(tmp_path, tiny_scorers) as client:
        for name, allowed in EXPECTED.items():
            r = client.post("/api/jobs", files={"file": (name, corpus[name].read_bytes())})
            if r.status_code == 202:
                job = wait(client, r.json()["id"])
                got = job["error"]["cause"] if job["status"] == "error" else job["result"]["status"]
            else:
                assert r.status_code in (413, 415, 422), (name, r.status_code, r.text)
                got = r.json()["error"]["cause"]
            assert got in allowed, (name, got)
        health = client.get("/api/health").json()
        assert health["status"] == "ok" and health["alive_workers"] == 1
        assert health["queued"] == 0 and health["running"] == 0


def test_upload_size_limit_is_413(tmp_path, tiny_scorers):
    with _client(tmp_path, tiny_scorers, max_upload_bytes=10_000) as client:
        r = client.post("/api/jobs", files={"file": ("big.png", b"\x89PNG" + b"\0" * 20_000)})
        assert r.status_code == 413
        assert r.json()["error"]["cause"] == "too_large"
        assert client.get("/api/health").status_code == 200


def test_framework_refusals_answer_in_the_documented_error_shape(tmp_path, tiny_scorers):
    # FastAPI's defaults answered {"detail": [...]} or {"detail": "Not Found"}: a client reading error.cause broke
    with _client(tmp_path, tiny_scorers) as client:
        for r, status, cause in [
            (client.post("/api/jobs", files={"upload": ("a.png", b"x")}), 422, "bad_request"),  # wrong field name
            (client.post("/api/jobs", data={"file": "a string, not a file"}), 422, "bad_request"),
            (client.post("/api/jobs"), 422, "bad_request"),
            (client.get("/api/nothing"), 404, "not_found"),
            (client.get("/static/..%2Fapp.py"), 404, "not_found"),
            (client.delete("/api/jobs"), 405, "method_not_allowed"),
        ]:
            assert r.status_code == status, (r.request.url, r.text)
            assert r.json()["error"]["cause"] == cause, r.text
        assert "field 'file'" in client.post("/api/jobs").json()["error"]["detail"]
        assert list((tmp_path / "srv" / "uploads").iterdir()) == []


def test_video_duration_limit_is_413(tmp_path, tiny_scorers, corpus):
    with _client(tmp_path, tiny_scorers, max_duration_s=0.5) as client:  # the clip lasts 1 s
        r = client.post("/api/jobs", files={"file": ("clip.mp4", corpus["clip.mp4"].read_bytes())})
        assert r.status_code == 413 and "limit" in r.json()["error"]["detail"]


def test_full_queue_answers_503_with_retry_after(tmp_path, corpus):
    gate = threading.Event()

    def blocked(path, scorers, opts, *, progress=None, deadline=None):
        gate.wait(20)
        return ScanResult({"path": str(path), "status": "no_face", "verdict": "no_face", "score": None, "ci": None})

    cfg = ServeConfig(data_dir=tmp_path / "srv", workers=1, max_queue=1, retry_after_s=7)
    with TestClient(create_app(cfg, scorers=[object()], scan_fn=blocked), base_url="http://localhost") as client:
        data = corpus["astronaut.png"].read_bytes()
        codes = [client.post("/api/jobs", files={"file": ("a.png", data)}).status_code for _ in range(2)]
        assert codes == [202, 202]
        r = client.post("/api/jobs", files={"file": ("a.png", data)})
        assert r.status_code == 503 and r.headers["retry-after"] == "7"
        gate.set()


def test_jobs_survive_a_restart(tmp_path, tiny_scorers, corpus, wait):
    with _client(tmp_path, tiny_scorers) as client:
        job_id = client.post("/api/jobs", files={"file": ("a.png", corpus["astronaut.png"].read_bytes())}).json()["id"]
        before = wait(client, job_id)
    # a queued job left behind by a crash: its upload is there, its row says "running"
    from dflab.serve.jobs import JobStore

    store = JobStore(tmp_path / "srv" / "jobs.sqlite")
    pending = store.create("pending.upload", 1, "image")
    store.update(pending, status="running")
    store.close()
    (tmp_path / "srv" / "uploads" / "pending.upload").write_bytes(corpus["rgba.png"].read_bytes())
    with _client(tmp_path, tiny_scorers) as client:
        after = client.get(f"/api/jobs/{job_id}").json()
        assert after["result"] == before["result"] and after["artifacts"] == before["artifacts"]
        assert wait(client, pending)["status"] == "done"


@pytest.mark.parametrize(
    "url",
    [
        "/api/jobs/..%2F..%2Fetc%2Fpasswd",
        "/api/jobs/" + "0" * 32,
        "/api/jobs/" + "0" * 32 + "/artifacts/..%2Fjobs.sqlite",
        "/static/..%2F..%2Fapp.py",
        "/static/app.py",
    ],
)
def test_request_paths_never_reach_the_file_system(tmp_path, tiny_scorers, url):
    with _client(tmp_path, tiny_scorers) as client:
        assert client.get(url).status_code == 404


def test_ui_pages_are_served(tmp_path, tiny_scorers):
    with _client(tmp_path, tiny_scorers) as client:
        page = client.get("/")
        assert page.status_code == 200 and 'id="verdict"' in page.text
        assert client.get("/static/app.js").headers["content-type"].startswith("text/javascript")


def test_phone_sized_jpeg_is_accepted_and_scanned_reduced(tmp_path, tiny_scorers, astronaut, wait):
    # a 48 MP JPEG is over the scan's 40 MP limit; it was refused with 413, it is now decoded at 1/2 scale
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(astronaut).resize((8000, 6000), Image.NEAREST).save(buf, format="JPEG", quality=80)
    png = io.BytesIO()
    Image.new("RGB", (8000, 6000)).save(png, format="PNG")
    with _client(tmp_path, tiny_scorers) as client:
        r = client.post("/api/jobs", files={"file": ("phone.jpg", buf.getvalue())})
        assert r.status_code == 202, r.text
        job = wait(client, r.json()["id"])
        assert job["status"] == "done", job
        r = client.post("/api/jobs", files={"file": ("big.png", png.getvalue())})  # no reduced decode for PNG
        assert r.status_code == 413 and r.json()["error"]["cause"] == "too_large"


def test_a_one_pixel_image_is_refused_at_upload(tmp_path, tiny_scorers):
    # it was admitted (202) and only failed later as a job
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (1, 1)).save(buf, format="PNG")
    with _client(tmp_path, tiny_scorers) as client:
        r = client.post("/api/jobs", files={"file": ("dot.png", buf.getvalue())})
        assert r.status_code == 422 and r.json()["error"]["cause"] == "bad_dimensions", r.text
