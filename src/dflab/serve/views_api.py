"""The analyst's endpoints of ``dflab serve``: a job's view (verdict in words, tracks, key frames), its reports as
downloads, and the detector's card.

* ``GET /api/detector`` → ``{"detectors", "name", "summary", "has_seen", "has_not_seen", "calibration"}``.
* ``GET /api/jobs/{id}/view`` → :func:`dflab.scan.views.summarize` of the job's result, plus ``artifacts``; 409
  while the job is not final.
* ``GET /api/jobs/{id}/report.json`` | ``report.csv`` | ``report.html`` → the same files ``dflab scan`` writes, for
  this one job, as an attachment; 409 while the job is not final.

Like the rest of the service, nothing here builds a path from a request: the job id is checked against a regex and
looked up in the job store, the format is one of three fixed names, and the reports are written to a fresh
temporary folder and read back.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response

from dflab.serve.jobs import FINAL, JobStore

_ID = re.compile(r"^[0-9a-f]{32}$")
_REPORTS = {"json": "application/json", "csv": "text/csv", "html": "text/html"}


def _error(status: int, cause: str, detail: str) -> JSONResponse:
    return JSONResponse({"error": {"cause": cause, "detail": detail}}, status_code=status)


def job_report(fmt: str, record: dict[str, Any], views: dict[str, bytes], meta: dict[str, Any]) -> bytes:
    """One job's report in ``fmt`` (``json``, ``csv`` or ``html``), written by :mod:`dflab.scan.report`."""
    from dflab.scan import report

    with tempfile.TemporaryDirectory(prefix="dflab-report-") as tmp:
        out = Path(tmp) / f"report.{fmt}"
        if fmt == "json":
            report.write_json([record], out, meta)
        elif fmt == "csv":
            report.write_csv([record], out)
        else:
            report.write_html([record], [views], out, meta)
        return out.read_bytes()


def add_view_routes(app: FastAPI, store: JobStore, scorers: Sequence[Any]) -> None:
    """Register the analyst's endpoints on ``app`` (see the module docstring)."""
    from dflab.scan.views import card_summary, summarize

    cards = [getattr(s, "card", {}) or {} for s in scorers]
    names = [str(getattr(s, "name", "detector")) for s in scorers]
    meta = {"detector": ", ".join(names), "cards": cards}

    def final_job(job_id: str) -> dict[str, Any] | JSONResponse:
        job = store.get(job_id) if _ID.match(job_id) else None
        if job is None:
            return _error(404, "unknown_job", "no such job")
        if job["status"] not in FINAL or job["result"] is None:
            return _error(409, "not_final", f"the job is {job['status']}")
        return job

    @app.get("/api/detector")
    def detector() -> dict[str, Any]:
        return {"detectors": names, **card_summary(cards[0] if cards else {})}

    @app.get("/api/jobs/{job_id}/view")
    def view(job_id: str) -> Any:
        job = final_job(job_id)
        if isinstance(job, JSONResponse):
            return job
        return {"id": job_id, "status": job["status"], "artifacts": job["artifacts"], **summarize(job["result"])}

    @app.get("/api/jobs/{job_id}/report.{fmt}")
    def download(job_id: str, fmt: str) -> Response:
        if fmt not in _REPORTS:
            return _error(404, "unknown_format", "report.json, report.csv or report.html")
        job = final_job(job_id)
        if isinstance(job, JSONResponse):
            return job
        views = {name: store.artifact(job_id, name) or b"" for name in job["artifacts"]}
        data = job_report(fmt, job["result"], views, meta)
        # no filename here: the UI names the download after the file the analyst gave (the server never knows it)
        headers = {"Content-Disposition": "attachment"}
        return Response(data, media_type=_REPORTS[fmt], headers=headers)
