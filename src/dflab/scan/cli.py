"""``dflab scan PATH... [--detector CKPT] [--every K] [--out DIR] [--format json|csv|html]``.

Exit status (for pipelines): 0 = every file scanned and none judged fake; bit 1 set = at least one file judged
fake; bit 4 set = at least one file could not be scanned (its record says why); 2 = bad arguments or no usable
detector. ``--format`` may be repeated; ``-`` as ``--out`` prints the JSON to stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from dflab.argtypes import non_negative_float, non_negative_int, positive_float, positive_int, probability
from dflab.distributed import add_ray_argument
from dflab.errors import CheckpointError
from dflab.faces.detect import BACKENDS, DEFAULT_BACKEND
from dflab.media.video import IMAGE_EXTS, VIDEO_EXTS
from dflab.scan.journal import ScanJournal, fingerprint
from dflab.scan.pipeline import FACES_PER_TRACK, WEIGHTS_DIR, ScanOptions, ScanResult, Scorer, load_scorer, scan_file

#: what a folder scan picks up: every suffix dflab.media reads (HEIC/AVIF phone photos, MPEG-TS captures …)
MEDIA_SUFFIXES = IMAGE_EXTS | VIDEO_EXTS
EXIT_FAKE, EXIT_ERROR, EXIT_USAGE = 1, 4, 2


def expand_paths(paths: Iterable[str | Path]) -> list[Path]:
    """Files given explicitly are always scanned (their content decides the kind); folders contribute their media
    files (by suffix, recursively, sorted), so a stray ``labels.csv`` in a folder is not reported as broken media.
    A broken or looping symlink with a media suffix and a sub-folder that cannot be read are listed too, so their
    records say why (:func:`dflab.media.files.media_files`)."""
    from dflab.media.files import media_files

    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out.extend(media_files(p, MEDIA_SUFFIXES))
        else:
            out.append(p)
    return out


def detector_paths(detectors: Sequence[str] | None, ensemble: bool) -> list[str | None]:
    """``--detector`` (repeatable) checkpoints, or every shipped checkpoint for ``--ensemble``, or ``[None]`` (the
    default)."""
    if ensemble and not detectors:
        detectors = [str(p) for p in sorted(WEIGHTS_DIR.glob("*.safetensors"))]
        if not detectors:
            raise CheckpointError(f"--ensemble: no checkpoints shipped in {WEIGHTS_DIR}")
    return list(detectors or [None])


def load_scorers(detectors: Sequence[str] | None, ensemble: bool) -> list[Scorer]:
    """Load the detectors named by :func:`detector_paths`."""
    return [load_scorer(d) for d in detector_paths(detectors, ensemble)]


_WORKER_SCORERS: dict[tuple[str | None, ...], list[Scorer]] = {}


def scan_task(path: Path, detectors: tuple[str | None, ...], opts: ScanOptions) -> ScanResult:
    """One file as a Ray task: the worker loads the checkpoints once (by path, from safetensors + card) and keeps
    them for its next files."""
    if detectors not in _WORKER_SCORERS:
        _WORKER_SCORERS[detectors] = [load_scorer(d) for d in detectors]
    res = scan_file(path, _WORKER_SCORERS[detectors], opts)
    res.frames, res.heats = {}, {}  # held frames stay in the worker: the report decodes the few it shows again
    return res


def _scan_on_ray(
    paths: Sequence[Path],
    detectors: Sequence[str | None],
    opts: ScanOptions,
    address: str,
    on_result: Callable[[Path, ScanResult], None] | None = None,
) -> list:
    from dflab.distributed import run_tasks

    results: list[ScanResult | None] = [None] * len(paths)

    def got(i: int, res: ScanResult) -> None:
        results[i] = res
        if on_result is not None:
            on_result(paths[i], res)

    def failed(i: int, exc: BaseException) -> None:
        # scan_file never raises for bad media: this is a lost worker (after Ray's retries) or a bug
        detail = f"{type(exc).__name__}: {str(exc)[:300]}"
        results[i] = ScanResult(
            {"path": str(paths[i]), "status": "error", "verdict": "error", "reason": None, "score": None,
             "ci": None, "error": {"cause": "task_failed", "detail": detail}, "seconds": None}
        )  # fmt: skip

    run_tasks(
        scan_task,
        ((i, (p, tuple(detectors), opts)) for i, p in enumerate(paths)),
        address=address,
        on_result=got,
        on_failure=failed,
    )
    return results


def scan_paths(
    paths: Sequence[Path],
    scorers: Sequence[Scorer],
    opts: ScanOptions,
    *,
    jobs: int = 1,
    progress: bool = True,
    ray: str | None = None,
    detectors: Sequence[str | None] | None = None,
    journal: ScanJournal | None = None,
) -> list[ScanResult]:
    """Scan files (``jobs`` threads; torch and the decoders release the GIL), keeping the input order.

    With ``ray`` (an address or ``"local"``), each file is a Ray task that loads ``detectors`` (checkpoint paths,
    ``None`` = default) in its worker; this process gathers the results and writes the report.

    With a ``journal``, files it already holds are not scanned again (their results carry the record only), and each
    new record is appended to it as soon as its file is done.
    """
    if journal is None:
        return _scan_todo(paths, scorers, opts, jobs=jobs, progress=progress, ray=ray, detectors=detectors)
    results: list[ScanResult | None] = [None] * len(paths)
    todo = []
    for i, p in enumerate(paths):
        record = journal.get(p)
        if record is None:
            todo.append(i)
        else:
            results[i] = ScanResult(record)
    if len(todo) < len(paths):
        print(f"dflab scan: resuming, {len(paths) - len(todo)} of {len(paths)} files already scanned", file=sys.stderr)
    scanned = _scan_todo(
        [paths[i] for i in todo],
        scorers,
        opts,
        jobs=jobs,
        progress=progress,
        ray=ray,
        detectors=detectors,
        on_result=lambda p, res: journal.add(p, res.record),
    )
    for i, res in zip(todo, scanned, strict=True):
        results[i] = res
    return results  # type: ignore[return-value]


def _scan_todo(
    paths: Sequence[Path],
    scorers: Sequence[Scorer],
    opts: ScanOptions,
    *,
    jobs: int,
    progress: bool,
    ray: str | None,
    detectors: Sequence[str | None] | None,
    on_result: Callable[[Path, ScanResult], None] | None = None,
) -> list[ScanResult]:
    if ray is not None:
        return _scan_on_ray(paths, detectors or [None], opts, ray, on_result)
    from tqdm import tqdm

    if jobs > 1 and any(not s.array_io for s in scorers):  # torch detectors share the cores between the jobs
        import torch

        torch.set_num_threads(max(1, torch.get_num_threads() // jobs))
    bar = tqdm(total=len(paths), unit="file", disable=not progress, file=sys.stderr, dynamic_ncols=True)
    lock = threading.Lock()

    def one(p: Path) -> ScanResult:
        def cb(frac: float, msg: str) -> None:
            if jobs == 1:
                with lock:
                    bar.set_postfix_str(f"{p.name}: {msg}", refresh=False)
                    bar.refresh()

        res = scan_file(p, scorers, opts, progress=cb)
        with lock:
            if on_result is not None:
                on_result(p, res)
            bar.update(1)
        return res

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        results = list(pool.map(one, paths))
    bar.close()
    return results


def write_outputs(
    results: Sequence[ScanResult],
    out: Path,
    formats: Sequence[str],
    meta: dict[str, Any],
    scorers: Sequence[Scorer] = (),
) -> dict[str, Path]:
    """Write the requested reports (and overlay videos) under ``out``; returns format → path.

    The HTML report's pictures (track thumbnails, key frames, heatmap layers) are rendered from each scanned file by
    :func:`dflab.scan.views.render_views` with the first of ``scorers`` (no heatmap layers without one).
    """
    from dflab.scan import report

    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for i, res in enumerate(results):
        if res.video_frames:
            name = f"overlay_{i:03d}_{Path(res.record['path']).stem}.mp4"
            report.write_overlay_video(res.video_frames, res.fps, out / name)
            res.record["overlay_video"] = name
    records = [r.record for r in results]
    if "json" in formats:
        written["json"] = report.write_json(records, out / "scan.json", meta)
    if "csv" in formats:
        written["csv"] = report.write_csv(records, out / "scan.csv")
    if "html" in formats:
        from dflab.scan.views import render_views

        scorer = scorers[0] if scorers else None
        views = [
            render_views(r.record, r.record.get("path"), scorer, r.overlays, frames=r.frames, heats=r.heats)
            for r in results
        ]
        written["html"] = report.write_html(records, views, out / "report.html", meta)
    return written


def exit_code(records: Iterable[dict[str, Any]]) -> int:
    code = 0
    for r in records:
        if r["verdict"] == "fake":
            code |= EXIT_FAKE
        if r["status"] == "error":
            code |= EXIT_ERROR
    return code


def summary_line(r: dict[str, Any]) -> str:
    name = Path(r["path"]).name
    if r["status"] == "error":
        detail = r["error"].get("detail")
        return f"{name}: ERROR {r['error']['cause']}" + (f" ({detail})" if detail else "")
    partial = ""
    if r["status"] == "partial":
        err = r["error"]
        partial = f"  PARTIAL: {err['frames_decoded']}/{err['frames_planned']} frames before {err['cause']}"
    if r["verdict"] == "no_face":
        return f"{name}: no face found{partial}"
    lo, hi = r["ci"]
    n, scored = r["n_faces"], r.get("n_scored", r["n_faces"])
    faces = f"faces={n}" if scored == n else f"faces={n} ({scored} scored)"
    return f"{name}: {r['verdict'].upper()}  P(fake)={r['score']:.3f}  95% CI [{lo:.3f}, {hi:.3f}]  {faces}" + partial


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", help="images, videos or folders")
    parser.add_argument(
        "--detector",
        action="append",
        help="checkpoint (.safetensors + card); repeat for an ensemble (default: shipped)",
    )
    parser.add_argument("--ensemble", action="store_true", help="average every checkpoint shipped in dflab/weights")
    parser.add_argument(
        "--every", type=positive_int, default=None, help="score every K-th frame (default: spread --max-frames)"
    )
    parser.add_argument("--max-frames", type=positive_int, default=32)
    parser.add_argument(
        "--threshold",
        type=probability,
        default=None,
        help="P(fake) at or above which a file is fake (default: the detector card's verdict band, else 0.5)",
    )
    parser.add_argument(
        "--margin",
        type=non_negative_float,
        default=None,
        help="with --threshold: scores within threshold ± margin are uncertain",
    )
    parser.add_argument("--out", default="scan_out", help="report folder, or - for JSON on stdout")
    parser.add_argument("--format", action="append", choices=["json", "csv", "html"], help="repeatable (default: all)")
    parser.add_argument("--overlays", type=non_negative_int, default=4, help="frames per file with heatmap overlays")
    parser.add_argument("--overlay-video", action="store_true", help="also write an H.264 overlay video per file")
    parser.add_argument("--jobs", type=positive_int, default=1, help="files scanned in parallel")
    parser.add_argument("--max-duration", type=positive_float, default=None, help="refuse videos longer than this (s)")
    parser.add_argument(
        "--face-detector",
        default=None,
        choices=BACKENDS,
        help=f"face detection backend (default {DEFAULT_BACKEND}; dlib = HOG as in the papers' preprocessing)",
    )
    parser.add_argument(
        "--faces-per-track",
        type=non_negative_int,
        default=FACES_PER_TRACK,
        help=f"score at most this many faces of each face track, evenly spaced (default {FACES_PER_TRACK}, the "
        "number per video the default detector was calibrated on; 0 = every face); every face is still detected",
    )
    parser.add_argument("--no-progress", action="store_true")
    add_ray_argument(parser, "one task per file")


def run(args: argparse.Namespace) -> int:
    paths = expand_paths(args.paths)
    if not paths:
        print("dflab scan: no media files found", file=sys.stderr)
        return EXIT_USAGE
    try:
        detectors = detector_paths(args.detector, args.ensemble)
        scorers = [load_scorer(d) for d in detectors]
    except CheckpointError as exc:
        print(f"dflab scan: {exc}", file=sys.stderr)
        return EXIT_USAGE
    opts = ScanOptions(
        every=args.every,
        max_frames=args.max_frames,
        threshold=args.threshold,
        margin=args.margin,
        overlays=args.overlays,
        overlay_video=args.overlay_video,
        max_duration_s=args.max_duration,
        face_detector=args.face_detector,
        faces_per_track=args.faces_per_track,
    )
    # a scan with a report folder journals each finished file there: killed, the same command resumes
    journal = None
    if args.out != "-":
        try:  # before any file is scanned: a report folder it cannot write must not cost the whole scan
            journal = ScanJournal(Path(args.out), fingerprint(detectors, [s.name for s in scorers], opts))
        except OSError as exc:
            print(f"dflab scan: cannot write the report folder {args.out}: {exc.strerror or exc}", file=sys.stderr)
            return EXIT_USAGE
        if journal.discarded:
            print("dflab scan: a journal of a scan with other settings was in --out; starting over", file=sys.stderr)
    try:
        results = scan_paths(
            paths,
            scorers,
            opts,
            jobs=args.jobs,
            progress=not args.no_progress,
            ray=args.ray,
            detectors=detectors,
            journal=journal,
        )
    finally:
        if journal is not None:
            journal.close()
    records = [r.record for r in results]
    meta = {"detector": ", ".join(s.name for s in scorers), "cards": [s.card for s in scorers]}
    if args.out == "-":
        print(json.dumps({"meta": meta, "files": records}, indent=2))
    else:
        written = write_outputs(results, Path(args.out), args.format or ["json", "csv", "html"], meta, scorers)
        journal.finish()
        for r in records:
            print(summary_line(r))
        for fmt, p in written.items():
            print(f"{fmt}: {p}")
    return exit_code(records)
