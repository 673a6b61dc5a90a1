"""``dflab prepare``: decode, detect, track and crop every face of a dataset; write crops and a manifest.

One job per video: sample frames (``--frames N`` evenly spaced, ``--stride K``, or ``--all``), detect every face with
68 landmarks, give each a track id, crop it FF++-style (1.3× box, square, ``--size`` px, PNG: lossless, so no new
compression traces are added to what a detector must see). For a fake whose original (target) video is present, the
*same frames* of the original are cropped with the fake's *same boxes* (``original_crop``), and likewise the
dataset's mask video when it ships one (``mask_crop``), so pixel masks can be computed later (LAE §3.2, Multi-metric
§3.3, BiG-Arts §3.2, LiSiam §3.3 all derive masks from original/fake differences).

Atomic and resumable: all rows of a video are committed in one SQLite transaction with its status
(:meth:`Manifest.commit_video`); a rerun skips videos whose status is final and redoes the rest, so killing the run at
any moment and running it again gives the same manifest as an uninterrupted run. Workers are processes; only the
main process writes the manifest.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from dflab.argtypes import crop_side, positive_float, positive_int
from dflab.data.datasets import DATASETS, scan_dataset
from dflab.data.landmark_server import MAX_CLIENTS as MAX_LANDMARK_CLIENTS
from dflab.data.landmark_server import LandmarkClient, LandmarkServer, exit_with_parent, take_preloaded
from dflab.data.landmark_server import connect as connect_landmarks
from dflab.data.manifest import FAKE, MANIFEST_NAME, FaceRow, Manifest, VideoRecord
from dflab.distributed import add_ray_argument
from dflab.errors import ConfigError, MediaError
from dflab.faces import (
    BACKENDS,
    DEFAULT_BACKEND,
    FaceCrop,
    FaceDetector,
    Sampling,
    crop_box,
    extract_faces,
    one_opencv_thread,
)
from dflab.media import iter_frames
from dflab.media.png import write_png
from dflab.media.video import set_decode_threads

#: a default only: each paper recipe states its own (`sampling:` in its YAML: DADD 20, LAE 200 / 10, LiSiam 100)
DEFAULT_FRAMES = 32


@dataclass(frozen=True)
class PrepareSettings:
    """What a manifest was prepared with; a resumed run must use the same."""

    count: int | None
    stride: int | None
    size: int
    margin: float
    detector: str
    upsample: int | str = "auto"

    def to_dict(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "stride": self.stride,
            "size": self.size,
            "margin": self.margin,
            "detector": self.detector,
            "upsample": self.upsample,
        }


@dataclass
class VideoResult:
    video: VideoRecord
    faces: list[FaceRow]
    events: list[tuple[int, str, str]]
    n_frames: int
    error: tuple[str, str] | None = None


_DETECTOR: FaceDetector | None = None
#: where this process sends its 68-point fits (:mod:`dflab.data.landmark_server`), when it does
_LANDMARKS: LandmarkClient | None = None


def _detector(backend: str, upsample: int | str = "auto") -> FaceDetector:
    """One detector per process (workers build theirs on first use)."""
    global _DETECTOR
    if _DETECTOR is None or _DETECTOR.backend != backend or _DETECTOR.upsample != upsample:
        _DETECTOR = FaceDetector(backend, upsample=upsample)
    return _DETECTOR


def safe_relpath(video_id: str) -> str:
    """A file-system-safe relative folder for a video id (ids may contain ``/``)."""
    parts = [re.sub(r"[^A-Za-z0-9._-]", "_", p) for p in video_id.split("/") if p not in ("", ".", "..")]
    return "/".join(parts) or "_"


def _write_png(path: Path, image: np.ndarray) -> None:
    """A crop as a lossless PNG (:mod:`dflab.media.png`: Up filter + ISA-L deflate, 0.6 instead of 2.2 CPU ms per
    256 px crop through OpenCV's libpng, 80 instead of 73 KB)."""
    write_png(path, image)


def _paired_crops(
    path: str, faces: list[FaceCrop], size: int, out_dir: Path, suffix: str, grey: bool
) -> tuple[dict[tuple[int, int], str], list[tuple[int, str, str]]]:
    """Crop the same frames of a paired video (original or mask) with the fake's boxes."""
    wanted = sorted({f.frame_index for f in faces})
    crops: dict[tuple[int, int], str] = {}
    events: list[tuple[int, str, str]] = []
    try:
        frames = dict(iter_frames(path, indices=wanted))
    except MediaError as exc:
        return crops, [(-1, f"{suffix}_error", f"{exc.cause}: {exc.detail}")]
    for f in faces:
        rgb = frames.get(f.frame_index)
        if rgb is None:
            events.append((f.frame_index, f"{suffix}_missing_frame", path))
            continue
        if (rgb.shape[1], rgb.shape[0]) != f.frame_size:
            events.append(
                (f.frame_index, f"{suffix}_size_mismatch", f"{rgb.shape[1]}x{rgb.shape[0]} vs {f.frame_size}")
            )
            continue
        img = crop_box(rgb, f.crop.box, size).image
        if grey:
            img = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
        rel = f"{f.frame_index:06d}_{f.track_id:02d}_{suffix}.png"
        _write_png(out_dir / rel, img)
        crops[(f.frame_index, f.track_id)] = rel
    return crops, events


def process_video(video: VideoRecord, original_path: str, out: Path, settings: PrepareSettings) -> VideoResult:
    """Prepare one video (runs in a worker process). Media errors become an error result, never an exception."""
    sampling = Sampling(count=settings.count, stride=settings.stride)
    detector = _detector(settings.detector, settings.upsample)
    detector.defer_landmarks(_LANDMARKS)
    if _LANDMARKS is not None:
        _LANDMARKS.begin()
    try:
        faces, events = extract_faces(
            video.path,
            sampling,
            detector,
            size=settings.size,
            margin=settings.margin,
            schedule=True,
            keep_partial=True,  # a video that breaks mid-way keeps the faces decoded before the break
        )
    except MediaError as exc:
        return VideoResult(video, [], [], 0, (exc.cause, exc.detail))
    except (cv2.error, RuntimeError, ValueError, OSError, MemoryError) as exc:
        # a decoder/detector failure on one file is recorded with its type, and the batch goes on
        return VideoResult(video, [], [], 0, ("decode_error", f"{type(exc).__name__}: {exc}"))
    n_frames = len({f.frame_index for f in faces}) + sum(1 for e in events if e[1] == "no_face")
    rel_dir = Path("crops") / safe_relpath(video.dataset) / safe_relpath(video.video_id)
    out_dir = out / rel_dir
    for f in faces:
        _write_png(out_dir / f"{f.frame_index:06d}_{f.track_id:02d}.png", f.crop.image)
    originals: dict[tuple[int, int], str] = {}
    masks: dict[tuple[int, int], str] = {}
    if video.label == FAKE and faces:
        if original_path and Path(original_path).exists():
            originals, ev = _paired_crops(original_path, faces, settings.size, out_dir, "orig", grey=False)
            events += ev
        elif video.original_id:
            events.append((-1, "original_missing", video.original_id))
        if video.mask_path and Path(video.mask_path).exists():
            masks, ev = _paired_crops(video.mask_path, faces, settings.size, out_dir, "mask", grey=True)
            events += ev
    rows = []
    for f in faces:
        key = (f.frame_index, f.track_id)
        rows.append(
            FaceRow(
                dataset=video.dataset,
                video_id=video.video_id,
                frame_index=f.frame_index,
                track_id=f.track_id,
                label=video.label,
                method=video.method,
                split=video.split,
                compression=video.compression,
                crop_path=str(rel_dir / f"{f.frame_index:06d}_{f.track_id:02d}.png"),
                box=[float(v) for v in f.crop.box],
                det_box=[float(v) for v in f.det.box],
                landmarks=np.round(f.landmarks.astype(np.float64), 3).tolist(),
                det_score=float(f.det.score),
                identity=video.identity,
                original_id=video.original_id,
                original_crop=str(rel_dir / originals[key]) if key in originals else "",
                mask_crop=str(rel_dir / masks[key]) if key in masks else "",
                frame_width=f.frame_size[0],
                frame_height=f.frame_size[1],
                crop_size=settings.size,
            )
        )
    return VideoResult(video, rows, events, n_frames)


def auto_workers(n_jobs: int) -> int:
    """Worker processes for ``n_jobs`` videos: one more than the cores this process may use (one on a single core),
    at most one per video.

    One process keeps only ~1.1 cores busy (decoding runs in a thread beside detection, but each video's decoding
    and searching alternate), so one per core is the least that keeps every core busy; the extra one keeps them busy
    while the last videos finish. On the three reference videos of ``bench/bench_ratios.py`` (2 cores) two workers
    left one core idle while the third (smallest) video ran alone, ~0.5 s of a 2.5 s run; with three, one per
    video, the cores are shared until the end (docs/guide/faces_and_speed.md).
    """
    cores = _usable_cores()
    return max(1, min(cores + 1 if cores > 1 else 1, n_jobs))


def _start_worker(parent: int, decode_threads: int, landmark_args: tuple | None) -> None:
    """Pool initializer: die with the writer, decode with ``decode_threads`` FFmpeg threads, and with
    ``landmark_args`` send the 68-point fits to the landmark server."""
    global _LANDMARKS
    exit_with_parent(parent)
    set_decode_threads(decode_threads)
    if landmark_args is not None:
        _LANDMARKS = connect_landmarks(*landmark_args)


def _usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def decode_threads_per_worker(n_workers: int) -> int:
    """FFmpeg threads per worker: its share of the cores, at least one (FFmpeg's own default is one per core, in
    every worker)."""
    return max(1, _usable_cores() // max(1, n_workers))


_ORDER_AT_MOST = 256


def _largest_first(job: tuple) -> int:
    """Sort key: minus the pixels to decode (frames × width × height, from the header; file size misleads: the
    512 × 512 liveportrait clip of 78 frames is a larger file than FF++'s 640 × 480 video of 751 frames)."""
    from dflab.media import probe

    try:
        info = probe(job[0].path)
        return -info.n_frames * info.width * info.height
    except MediaError:
        return 0  # process_video records the error


def _run_pool(
    jobs: list[tuple], n_workers: int, settings: PrepareSettings, server: LandmarkServer | None
) -> Iterator[VideoResult]:
    """Run ``process_video`` over ``jobs`` in ``n_workers`` processes; results in completion order.

    With a ``server`` (:class:`~dflab.data.landmark_server.LandmarkServer`, up to
    :data:`~dflab.data.landmark_server.MAX_CLIENTS` workers) the workers start at once without dlib's 68-point model:
    they decode, detect and crop while the server loads it, and send it their boxes. Loading it here first and
    forking the workers from this process (so they shared it) left the other cores idle for that long: on the three
    reference videos of ``bench/bench_ratios.py`` a fifth of the run (docs/guide/faces_and_speed.md). Without one
    (more workers than a server keeps up with) the model is loaded before the fork as before. YuNet's networks are
    built per process (:meth:`FaceDetector._yunet`). The videos with most pixels to decode go first, so that the
    last one to finish is a small one.
    """
    import multiprocessing

    context = None
    if sys.platform.startswith("linux"):  # fork is unsafe on macOS (system frameworks) and absent on Windows
        context = multiprocessing.get_context("fork")
        if server is None:
            _detector(settings.detector, settings.upsample).load_landmarks()  # the workers share this copy (~100 MB)
    # One OpenCV thread in the workers: its thread pool made YuNet *slower* here (2 loaded cores: 11.6 against 5.6
    # CPU ms per 384 × 288 search, 29 against 16 ms at 640 × 480). It is set here, before the fork, not in the
    # workers: a forked child that reconfigures (or uses) the pool of threads it did not inherit waits forever
    # (seen when this process had run OpenCV with threads before, e.g. in a test session).
    init_args = (
        os.getpid(),
        decode_threads_per_worker(n_workers),
        server.client_args() if server is not None else None,
    )
    with (
        one_opencv_thread(),
        ProcessPoolExecutor(
            max_workers=n_workers, mp_context=context, initializer=_start_worker, initargs=init_args
        ) as pool,
    ):
        # ordering matters for the last videos only, and not at all when every video has its own worker; probing
        # costs ~16 ms per file before any worker starts, so large runs keep their order
        ordered = sorted(jobs, key=_largest_first) if n_workers < len(jobs) <= _ORDER_AT_MOST else jobs
        futures = [pool.submit(process_video, *job) for job in ordered]
        for fut in as_completed(futures):
            yield fut.result()
        if server is not None:
            server.stop()  # every video is done: it ends while the pool's workers do (each takes ~10–20 ms)


def _run_serial(jobs: list[tuple], server: LandmarkServer | None) -> Iterator[VideoResult]:
    """Run ``process_video`` over ``jobs`` in this process; with a ``server`` (the one ``dflab prepare`` starts before
    its imports) this process detects while the server loads the 68-point model and fits the points."""
    global _LANDMARKS
    if server is not None:
        _LANDMARKS = connect_landmarks(*server.client_args())
    try:
        with one_opencv_thread():  # the other core decodes (prefetch thread)
            for job in jobs:
                yield process_video(*job)
    finally:
        _LANDMARKS = None


def _check_settings(man: Manifest, dataset: str, settings: PrepareSettings) -> None:
    saved = man.get_meta("settings")
    if saved is None:
        man.set_meta("settings", settings.to_dict())
        man.set_meta("dataset", dataset)
        man.set_meta("detector", _detector(settings.detector, settings.upsample).config())
    elif saved != settings.to_dict():
        raise ConfigError(f"{man.path} was prepared with {saved}; this run asks for {settings.to_dict()}")


def prepare_records(
    records: list[VideoRecord],
    out: str | Path,
    *,
    frames: int | None = DEFAULT_FRAMES,
    stride: int | None = None,
    size: int = 256,
    margin: float = 1.3,
    workers: int | None = None,
    detector: str = DEFAULT_BACKEND,
    upsample: int | str = "auto",
    progress: bool = True,
    retry_errors: bool = False,
    ray: str | None = None,
) -> dict[str, Any]:
    """Prepare a list of media records into ``out`` (crops + ``manifest.sqlite``); returns the summary.

    Videos already ``done`` (or ``error``, unless ``retry_errors``) in the manifest are skipped: that is the resume.
    ``workers`` processes prepare videos at once (``None``: :func:`auto_workers`, one per core and one more); this
    process alone writes the manifest, one transaction per video, whatever the number of workers.
    With ``ray`` (an address, or ``"local"``) each video is a Ray task (:mod:`dflab.distributed`) and this process
    alone writes the manifest; ``out`` must then be on a file system every node sees.
    """
    if frames is not None and stride is not None:
        raise ValueError("give frames or stride, not both")
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a file of that name, or no permission: the user's mistake, not a bug (exit 2)
        raise ConfigError(f"cannot write the output folder {out}: {exc.strerror or exc}") from exc
    settings = PrepareSettings(frames, stride, size, margin, detector, upsample)
    by_id = {r.video_id: r for r in records}
    t0 = time.time()
    with Manifest(out / MANIFEST_NAME) as man:
        _check_settings(man, records[0].dataset if records else "", settings)
        final = ("done",) if retry_errors else ("done", "error")
        todo = [r for r in records if man.video_status(r.dataset, r.video_id) not in final]
        skipped = len(records) - len(todo)
        jobs = [(r, by_id[r.original_id].path if r.original_id in by_id else "", out, settings) for r in todo]
        n_workers = auto_workers(len(jobs)) if workers is None else min(workers, len(jobs))
        bar = _progress(len(records), skipped, progress)
        run_faces = 0

        def commit(res: VideoResult) -> None:
            nonlocal run_faces
            status = "error" if res.error else "done"
            man.commit_video(res.video, res.faces, res.events, status=status, n_frames=res.n_frames, error=res.error)
            run_faces += len(res.faces)
            if bar is not None:
                bar.set_postfix_str(f"faces={run_faces}" + (f" last_error={res.error[0]}" if res.error else ""))
                bar.update(1)

        # the landmark server that `dflab prepare` started before its imports (dflab.data.landmark_server.preload)
        server = take_preloaded() if jobs else None
        if ray is not None:
            from dflab.distributed import run_tasks

            if server is not None:
                server.close()  # Ray's workers fit their own points

            def lost(key: int, exc: BaseException) -> None:
                # retried by Ray if its worker died; recorded as an error (redone by --retry-errors) if it never ran
                cause = "worker_lost" if "WorkerCrashedError" in type(exc).__name__ else "task_error"
                commit(VideoResult(jobs[key][0], [], [], 0, (cause, f"{type(exc).__name__}: {str(exc)[:500]}")))

            run_tasks(
                process_video,
                ((i, job) for i, job in enumerate(jobs)),
                address=ray,
                on_result=lambda _key, res: commit(res),
                on_failure=lost,
            )
        else:
            if server is None and 1 < n_workers <= MAX_LANDMARK_CLIENTS:  # a small pool gets one all the same
                server = LandmarkServer()
            elif server is not None and n_workers > MAX_LANDMARK_CLIENTS:
                server.close()  # more workers than it keeps up with: they share a model loaded before the fork
                server = None
            try:
                run = _run_serial(jobs, server) if n_workers <= 1 else _run_pool(jobs, n_workers, settings, server)
                for res in run:
                    commit(res)
            finally:
                if server is not None:
                    server.close()
        if bar is not None:
            bar.close()
        summary = man.summary()
    summary.update(
        {
            "skipped_already_done": skipped,
            "processed": len(todo),
            "seconds": round(time.time() - t0, 2),
            "manifest": str(out / MANIFEST_NAME),
        }
    )
    return summary


def _progress(total: int, done: int, enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=done, unit="video", desc="prepare", file=sys.stderr, dynamic_ncols=True)


def prepare_dataset(
    dataset: str,
    root: str | Path | None,
    out: str | Path,
    *,
    frames: int | None = DEFAULT_FRAMES,
    stride: int | None = None,
    size: int = 256,
    margin: float = 1.3,
    workers: int | None = None,
    limit: int | None = None,
    progress: bool = True,
    detector: str = DEFAULT_BACKEND,
    upsample: int | str = "auto",
    retry_errors: bool = False,
    ray: str | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Scan a registered dataset (``options`` go to its adapter, e.g. ``compression="c40"``) and prepare it."""
    records = scan_dataset(dataset, root, **options)
    if limit is not None:
        records = records[:limit]
    return prepare_records(
        records,
        out,
        frames=frames,
        stride=stride,
        size=size,
        margin=margin,
        workers=workers,
        detector=detector,
        upsample=upsample,
        progress=progress,
        retry_errors=retry_errors,
        ray=ray,
    )


def prepare_media(paths: list[str | Path], out: str | Path, **kwargs: Any) -> dict[str, Any]:
    """Prepare an analyst's files and folders (unlabelled) through the same path as a dataset."""
    return prepare_dataset("media", None, out, paths=paths, **kwargs)


def format_summary(summary: dict[str, Any]) -> str:
    errors = ", ".join(f"{k}: {v}" for k, v in sorted(summary["errors"].items())) or "none"
    return (
        f"videos {summary['videos']} (done {summary['videos_done']}, this run {summary['processed']}, "
        f"already done {summary['skipped_already_done']}) | frames {summary['frames']} | faces {summary['faces']} | "
        f"frames without a face {summary['frames_without_face']} | videos cut short {summary['videos_cut_short']} | "
        f"errors by cause: {errors} | "
        f"{summary['seconds']} s | {summary['manifest']}"
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    import dflab.data.datasets  # noqa: F401  (fills DATASETS)

    parser.add_argument("--dataset", required=True, choices=DATASETS.names())
    parser.add_argument("--root", nargs="+", required=True, help="dataset root (several paths for --dataset media)")
    parser.add_argument("--out", required=True, help="output folder (crops/ and manifest.sqlite)")
    sampling = parser.add_mutually_exclusive_group()
    sampling.add_argument(
        "--frames", type=positive_int, default=None, help=f"evenly spaced frames per video ({DEFAULT_FRAMES})"
    )
    sampling.add_argument("--stride", type=positive_int, default=None, help="every K-th frame")
    sampling.add_argument("--all", action="store_true", help="every frame")
    parser.add_argument("--size", type=crop_side, default=256, help="crop side in pixels")
    parser.add_argument("--margin", type=positive_float, default=1.3, help="crop box / detector box (FF++: 1.3)")
    parser.add_argument(
        "--workers",
        type=positive_int,
        default=None,
        help="worker processes (default: one per core and one more, at most one per video)",
    )
    parser.add_argument("--limit", type=positive_int, default=None, help="only the first N videos (sorted by id)")
    parser.add_argument("--compression", default=None, help="ffpp/dfd: raw|c23|c40; dftimit: LQ|HQ")
    parser.add_argument(
        "--face-detector",
        "--detector",
        dest="detector",
        default=DEFAULT_BACKEND,
        choices=BACKENDS,
        help="yunet (default: fast, finds more faces); dlib for the papers' exact HOG preprocessing",
    )
    parser.add_argument(
        "--upsample",
        default="auto",
        choices=["auto", "0", "1", "2"],
        help="detector upsamplings; auto: 1 for images up to 800 px; 0 is faster, enough for faces > 80 px",
    )
    parser.add_argument("--retry-errors", action="store_true", help="redo videos recorded as errors (e.g. now present)")
    add_ray_argument(parser, "one task per video")
    parser.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    frames = None if (args.all or args.stride) else (args.frames or DEFAULT_FRAMES)
    options: dict[str, Any] = {}
    if args.compression:
        options["compression"] = args.compression
    if args.dataset == "media":
        root, options["paths"] = None, args.root
    elif len(args.root) != 1:
        print(f"dflab prepare: --dataset {args.dataset} takes one --root", file=sys.stderr)
        return 2
    else:
        root = args.root[0]
    try:
        summary = prepare_dataset(
            args.dataset,
            root,
            args.out,
            frames=frames,
            stride=args.stride,
            size=args.size,
            margin=args.margin,
            workers=args.workers,
            limit=args.limit,
            progress=(not args.no_progress and sys.stderr.isatty()) or os.environ.get("DFLAB_PROGRESS") == "1",
            detector=args.detector,
            upsample=args.upsample if args.upsample == "auto" else int(args.upsample),
            retry_errors=args.retry_errors,
            ray=args.ray,
            **options,
        )
    except ConfigError as exc:
        print(f"dflab prepare: {exc}", file=sys.stderr)
        return 2
    print(format_summary(summary))
    with Manifest(Path(args.out) / MANIFEST_NAME, readonly=True) as man:
        for v in man.videos(status="error"):
            print(f"  error {v['error_cause']}: {v['video_id']} ({v['path']})")
        for e in man.events(kind="truncated"):
            print(f"  cut short: {e['video_id']} (kept the frames before the break; {e['detail']})")
    return 0
