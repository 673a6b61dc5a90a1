"""``dflab serve [--host 127.0.0.1] [--port 8000] [--data DIR] [--detector CKPT] [--workers N] [--max-queue N]``.

Beyond loopback (``--host 0.0.0.0`` or a LAN address) every request needs a token: ``--token`` (or the
``DFLAB_SERVE_TOKEN`` environment variable), else one is generated and printed with the URL to open. ``Host``
names other than loopback and the bind address are refused (DNS rebinding) unless listed with ``--allow-host``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dflab.argtypes import non_negative_float, non_negative_int, positive_float, positive_int


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="bind address (loopback by default)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--data", default="serve_data", help="folder for jobs.sqlite and uploads")
    parser.add_argument("--detector", default=None, help="checkpoint (.safetensors + card); default: shipped weights")
    parser.add_argument("--workers", type=positive_int, default=1, help="scanning threads")
    parser.add_argument("--max-queue", type=non_negative_int, default=8, help="waiting jobs before 503 + Retry-After")
    parser.add_argument("--max-upload-mb", type=positive_float, default=100.0)
    parser.add_argument("--max-duration", type=positive_float, default=120.0, help="longest video accepted (s)")
    parser.add_argument("--job-timeout", type=positive_float, default=300.0, help="per-job time limit (s)")
    parser.add_argument("--max-frames", type=positive_int, default=24, help="frames sampled per video")
    parser.add_argument("--allow-host", action="append", default=[], help="extra Host name to answer (repeatable)")
    parser.add_argument(
        "--token", default=None, help="shared secret for every request (default beyond loopback: a new one)"
    )
    parser.add_argument(
        "--keep-days", type=non_negative_float, default=7.0, help="delete finished jobs older than this"
    )
    parser.add_argument("--keep-jobs", type=non_negative_int, default=500, help="keep at most this many finished jobs")
    parser.add_argument(
        "--keep-mb", type=non_negative_float, default=256.0, help="keep at most this many MB of results"
    )


def run(args: argparse.Namespace) -> int:
    import os
    import secrets

    import uvicorn

    from dflab.errors import CheckpointError
    from dflab.serve.app import ServeConfig, create_app
    from dflab.serve.jobs import Retention
    from dflab.serve.security import allowed_hosts_for, is_loopback

    token = args.token or os.environ.get("DFLAB_SERVE_TOKEN") or None
    if token is None and not is_loopback(args.host):
        token = secrets.token_urlsafe(24)  # beyond loopback nobody gets in without it

    cfg = ServeConfig(
        data_dir=Path(args.data),
        detector=args.detector,
        workers=args.workers,
        max_queue=args.max_queue,
        max_upload_bytes=int(args.max_upload_mb * 2**20),
        max_duration_s=args.max_duration,
        job_timeout_s=args.job_timeout,
        max_frames=args.max_frames,
        allowed_hosts=allowed_hosts_for(args.host, args.allow_host),
        token=token,
        retention=Retention(args.keep_days, args.keep_jobs, int(args.keep_mb * 2**20)),
    )
    try:
        app = create_app(cfg)
    except CheckpointError as exc:
        print(f"dflab serve: {exc}", file=sys.stderr)
        return 2
    shown = "localhost" if args.host in ("0.0.0.0", "::") else args.host
    url = f"http://{shown}:{args.port}/" + (f"?token={token}" if token else "")
    print(f"dflab serve: {url}  (data in {cfg.data_dir})")
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0
