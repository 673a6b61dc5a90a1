"""Fixtures of the web-service tests: an app over a tiny seeded detector, and the fuzz corpus."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch


@pytest.fixture(scope="session")
def tiny_scorers():
    from dflab.models.base import build_detector
    from dflab.scan.pipeline import scorer_from_model

    torch.manual_seed(0)
    return [scorer_from_model(build_detector("lisiam_tiny"), name="lisiam_tiny")]


@pytest.fixture(scope="session")
def corpus(tmp_path_factory, astronaut) -> dict[str, Path]:
    from dflab.scan.corpus import write_corpus

    return write_corpus(tmp_path_factory.mktemp("corpus"), astronaut)


def wait_job(client, job_id: str, timeout: float = 60.0) -> dict:
    end = time.time() + timeout
    while time.time() < end:
        job = client.get(f"/api/jobs/{job_id}").json()
        if job["status"] in ("done", "error"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} not final after {timeout} s")


@pytest.fixture()
def wait():
    """``wait(client, job_id)`` polls until the job is final and returns it."""
    return wait_job
