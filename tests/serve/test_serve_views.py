"""The analyst's endpoints (TestClient): a job's view, its report downloads, the detector card."""

from __future__ import annotations

import csv
import io
import json
import threading

import pytest
from fastapi.testclient import TestClient

from dflab.scan.pipeline import scan_file
from dflab.serve.app import ServeConfig, create_app


@pytest.fixture()
def gated_client(tmp_path, tiny_scorers):
    """A client whose scans wait at a gate, so a job can be seen while it is not final."""
    gate = threading.Event()

    def gated(path, scorers, opts, *, progress=None, deadline=None):
        gate.wait(60)
        return scan_file(path, scorers, opts, progress=progress, deadline=deadline)

    tiny_scorers[0].card = {"name": "tiny", "has_seen": ["blends"], "has_not_seen": ["diffusion faces"]}
    cfg = ServeConfig(data_dir=tmp_path / "srv", max_frames=4)
    try:
        with TestClient(create_app(cfg, scorers=tiny_scorers, scan_fn=gated), base_url="http://127.0.0.1") as client:
            yield client, gate
            gate.set()
    finally:
        tiny_scorers[0].card = {}


def test_view_and_reports_of_a_video_job(gated_client, corpus, wait):
    client, gate = gated_client
    job_id = client.post("/api/jobs", files={"file": ("clip.mp4", corpus["clip.mp4"].read_bytes())}).json()["id"]
    for url in (f"/api/jobs/{job_id}/view", f"/api/jobs/{job_id}/report.html"):
        r = client.get(url)
        assert r.status_code == 409 and r.json()["error"]["cause"] == "not_final"
    gate.set()
    job = wait(client, job_id)
    assert job["status"] == "done"

    view = client.get(f"/api/jobs/{job_id}/view").json()
    assert view["verdict"] == job["result"]["verdict"] and view["kind"] == "video"
    assert view["tracks"][0]["verdict"] in ("fake", "real", "uncertain")
    keys = [k["frame_index"] for k in view["key_frames"]]
    assert keys and all(f"key{i:06d}" in view["artifacts"] and f"heat{i:06d}" in view["artifacts"] for i in keys)
    assert "track0" in view["artifacts"] and "timeline" in view["artifacts"]
    heat = client.get(f"/api/jobs/{job_id}/artifacts/heat{keys[0]:06d}")
    assert heat.status_code == 200 and heat.content[:4] == b"\x89PNG"

    r = client.get(f"/api/jobs/{job_id}/report.json")
    assert r.headers["content-disposition"] == "attachment" and r.headers["content-type"].startswith("application/json")
    report = json.loads(r.content)
    assert report["files"][0]["verdict"] == job["result"]["verdict"]
    assert report["meta"]["cards"][0]["has_not_seen"] == ["diffusion faces"]
    rows = list(csv.DictReader(io.StringIO(client.get(f"/api/jobs/{job_id}/report.csv").text)))
    assert len(rows) == 1 and rows[0]["verdict"] == job["result"]["verdict"]
    page = client.get(f"/api/jobs/{job_id}/report.html")
    assert page.headers["content-type"].startswith("text/html")
    assert "The frames that drove the verdict" in page.text and "diffusion faces" in page.text


def test_view_of_a_job_that_found_no_face_says_why(gated_client, corpus, wait):
    client, gate = gated_client
    gate.set()
    job_id = client.post("/api/jobs", files={"file": ("f.png", corpus["faceless.png"].read_bytes())}).json()["id"]
    assert wait(client, job_id)["result"]["status"] == "no_face"
    view = client.get(f"/api/jobs/{job_id}/view").json()
    assert view["verdict"] == "no_face" and "no face" in view["reason"].lower() and view["tracks"] == []


def test_detector_card_endpoint(gated_client):
    client, _ = gated_client
    card = client.get("/api/detector").json()
    assert card["detectors"] == ["lisiam_tiny"]
    assert card["has_seen"] == ["blends"] and card["has_not_seen"] == ["diffusion faces"]


@pytest.mark.parametrize(
    "url",
    [
        "/api/jobs/" + "0" * 32 + "/view",
        "/api/jobs/" + "0" * 32 + "/report.json",
        "/api/jobs/..%2F..%2Fjobs/report.json",
        "/api/jobs/" + "0" * 32 + "/report.sqlite",
    ],
)
def test_unknown_jobs_and_formats_are_404(gated_client, url):
    client, _ = gated_client
    assert client.get(url).status_code == 404
