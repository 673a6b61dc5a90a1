"""Load test of ``dflab serve`` on loopback: 50 concurrent uploads, bounded in count and time.

A uvicorn server (1 worker, queue of 8) runs in this process on 127.0.0.1; 50 clients each upload one file at
once (the astronaut photo and the 12-frame clip, alternating). Every request must be answered — 202 then a final
job state, or 503 with Retry-After — and the process's resident memory is sampled throughout. Then the fuzz corpus
goes through the same server and its health is checked.
"""

from __future__ import annotations

import socket
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import torch

N_CLIENTS = 50
DEADLINE_S = 300.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run() -> dict:
    import httpx
    import uvicorn

    from bench.bench_scan import _scorers
    from dflab.scan.corpus import EXPECTED, write_corpus
    from dflab.serve.app import ServeConfig, create_app

    scorers, det = _scorers()
    proc = psutil.Process()
    with tempfile.TemporaryDirectory() as tmp:
        corpus = write_corpus(Path(tmp) / "corpus")
        cfg = ServeConfig(data_dir=Path(tmp) / "srv", workers=1, max_queue=8, max_frames=8)
        app = create_app(cfg, scorers=scorers)
        port = _free_port()
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.05)
        base = f"http://127.0.0.1:{port}"
        rss0 = proc.memory_info().rss
        peak = [rss0]
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                peak[0] = max(peak[0], proc.memory_info().rss)
                time.sleep(0.05)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        files = [corpus["astronaut.png"].read_bytes(), corpus["clip.mp4"].read_bytes()]
        barrier = threading.Barrier(N_CLIENTS)

        def client(i: int) -> dict:
            with httpx.Client(base_url=base, timeout=60) as c:
                barrier.wait()
                t0 = time.perf_counter()
                r = c.post("/api/jobs", files={"file": (f"u{i}", files[i % 2])})
                out = {"code": r.status_code, "submit_s": time.perf_counter() - t0}
                if r.status_code == 503:
                    out["retry_after"] = r.headers.get("retry-after")
                if r.status_code == 202:
                    job_id = r.json()["id"]
                    while time.perf_counter() - t0 < DEADLINE_S:
                        job = c.get(f"/api/jobs/{job_id}").json()
                        if job["status"] in ("done", "error"):
                            out["final"] = job["status"]
                            break
                        time.sleep(0.2)
                    out["total_s"] = time.perf_counter() - t0
                return out

        t0 = time.perf_counter()
        with ThreadPoolExecutor(N_CLIENTS) as pool:
            results = list(pool.map(client, range(N_CLIENTS)))
        wall = time.perf_counter() - t0

        fuzz = {}
        with httpx.Client(base_url=base, timeout=60) as c:
            for name in EXPECTED:
                r = c.post("/api/jobs", files={"file": (name, corpus[name].read_bytes())})
                if r.status_code == 202:
                    job_id = r.json()["id"]
                    for _ in range(600):
                        job = c.get(f"/api/jobs/{job_id}").json()
                        if job["status"] in ("done", "error"):
                            break
                        time.sleep(0.1)
                    fuzz[name] = job["error"]["cause"] if job["status"] == "error" else job["result"]["status"]
                else:
                    fuzz[name] = f"{r.status_code} {r.json()['error']['cause']}"
            health = c.get("/api/health").json()
        stop.set()
        server.should_exit = True
        thread.join(10)

    codes = [r["code"] for r in results]
    done = [r for r in results if r.get("final")]
    return {
        "detector": det,
        "torch_threads": torch.get_num_threads(),
        "clients": N_CLIENTS,
        "workers": cfg.workers,
        "max_queue": cfg.max_queue,
        "accepted_202": codes.count(202),
        "refused_503": codes.count(503),
        "other_status": len([c for c in codes if c not in (202, 503)]),
        "all_answered": len(codes) == N_CLIENTS and all(c in (202, 503) for c in codes),
        "accepted_jobs_final": len(done),
        "all_503_have_retry_after": all(r.get("retry_after") for r in results if r["code"] == 503),
        "max_submit_latency_s": round(max(r["submit_s"] for r in results), 3),
        "max_job_turnaround_s": round(max((r["total_s"] for r in done), default=0.0), 2),
        "wall_s_all_answered": round(wall, 2),
        "rss_start_mb": round(rss0 / 2**20, 1),
        "rss_peak_mb": round(peak[0] / 2**20, 1),
        "fuzz_outcomes": fuzz,
        "healthy_after": health["status"] == "ok" and health["alive_workers"] == cfg.workers,
    }


if __name__ == "__main__":
    print(run())
