"""``dflab serve [--host 127.0.0.1] [--port 8000] [--data DIR] [--detector CKPT] [--workers N] [--max-queue N]``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="bind address (loopback by default)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--data", default="serve_data", help="folder for jobs.sqlite and uploads")
    parser.add_argument("--detector", default=None, help="checkpoint (.safetensors + card); default: shipped weights")
    parser.add_argument("--workers", type=int, default=1, help="scanning threads")
    parser.add_argument("--max-queue", type=int, default=8, help="waiting jobs before 503 + Retry-After")
    parser.add_argument("--max-upload-mb", type=float, default=100.0)
    parser.add_argument("--max-duration", type=float, default=120.0, help="longest video accepted (s)")
    parser.add_argument("--job-timeout", type=float, default=300.0, help="per-job time limit (s)")
    parser.add_argument("--max-frames", type=int, default=24, help="frames sampled per video")


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from dflab.errors import CheckpointError
    from dflab.serve.app import ServeConfig, create_app

    cfg = ServeConfig(
        data_dir=Path(args.data),
        detector=args.detector,
        workers=args.workers,
        max_queue=args.max_queue,
        max_upload_bytes=int(args.max_upload_mb * 2**20),
        max_duration_s=args.max_duration,
        job_timeout_s=args.job_timeout,
        max_frames=args.max_frames,
    )
    try:
        app = create_app(cfg)
    except CheckpointError as exc:
        print(f"dflab serve: {exc}", file=sys.stderr)
        return 2
    print(f"dflab serve: http://{args.host}:{args.port}/  (data in {cfg.data_dir})")
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0
