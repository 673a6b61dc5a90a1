"""The process that fits ``dflab prepare``'s 68-point landmarks, so that nothing waits for dlib's model to load.

Loading dlib's 68-point model takes 0.5–1 s of one core and holds the GIL throughout. ``dflab prepare`` used to load
it before forking its workers (which then shared it): the one serial step of a run, the other cores idle. Now a
:class:`LandmarkServer` process loads it and fits the points for everyone else (:class:`LandmarkClient`): the
workers decode, detect and crop at once, send each frame's boxes with the frame, and collect the 68 points before
they track the video's faces (tracking matches faces by their landmarks' centre). ``dflab prepare`` on the command
line starts the server before it imports anything heavy (:func:`preload`, called by ``dflab.cli``), so the model
loads on the core its ~0.25 s of imports leave idle. Fitting takes ~1–3 ms per face, far less than the detection
that produces the faces, so one server keeps up with a few workers (:data:`MAX_CLIENTS`); with more, the model is
loaded before the fork as before.

The frame travels in grey: dlib's predictor reads an RGB image through its intensities ``(r + g + b) // 3``, so the
points fitted on :func:`~dflab.faces.detect.intensity` are bit-identical (tested) for a third of the bytes. The grey
image is the very image (padded when the face was found padded) and the boxes are the very boxes an inline fit uses.

This module imports nothing heavy (numpy, OpenCV, dlib load in the processes that use them), so that
:func:`preload` can run before the command's own imports.
"""

from __future__ import annotations

import os
import queue
import sys
from pathlib import Path
from typing import Any

#: most clients one server is used for (``dflab prepare`` loads the model before the fork above this)
MAX_CLIENTS = 4
#: images a client may have sent without their answers: bounds what waits in the queue while the model loads
#: (64 grey 1080p frames are 133 MB)
MAX_IN_FLIGHT = 64
#: how often a waiting client checks that the server is still there
POLL_S = 1.0

Box = tuple[float, float, float, float]


class LandmarkServiceError(RuntimeError):
    """The server could not fit a client's landmarks (the model failed to load, dlib raised, or the server died)."""


def exit_with_parent(parent: int) -> None:
    """Linux: have the kernel end this process when ``parent`` dies (the manifest writer, killed before a resume, say),
    so that no orphan goes on working beside the resumed run."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before the line above
        os._exit(1)


def _alive(pid: int) -> bool:
    """Whether a process runs (a zombie, dead but not yet reaped by its parent, does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:  # no /proc (macOS): ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def _model_path() -> str | None:
    """The packaged 68-point model, found as :func:`dflab.faces.detect.model_file` finds it but without importing
    numpy and OpenCV with that module (``None`` when the package is missing: the run then reports it)."""
    import importlib.util

    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / "shape_predictor_68_face_landmarks.dat"
    return str(path) if path.is_file() else None


def _serve(inbox: Any, replies: list[Any], parent: int, model: str) -> None:
    """The server process: load the model, then answer ``("fit", client, key, image, boxes)`` until ``None``.

    Imports dlib only (numpy loads when the first image is unpickled), so that a server started before the command's
    imports loads the model at once. The fit is :meth:`dflab.faces.detect.Landmarks68.fit`'s (tested equal).
    """
    exit_with_parent(parent)
    for reply in replies:
        reply.cancel_join_thread()  # never wait at exit on answers to a client that is gone
    import dlib

    error = None
    try:
        predictor = dlib.shape_predictor(model)
    except Exception as exc:  # noqa: BLE001 - reported to every client, whose video is then recorded as an error
        error = f"the 68-point model failed to load: {type(exc).__name__}: {exc}"
    while (msg := inbox.get()) is not None:
        _, client, key, image, boxes = msg
        if error is not None:
            replies[client].put((key, error))
            continue
        try:
            points = []
            for box in boxes:
                x0, y0, x1, y1 = (round(v) for v in box)
                shape = predictor(image, dlib.rectangle(x0, y0, x1 - 1, y1 - 1))
                points.append([(p.x, p.y) for p in shape.parts()])
        except Exception as exc:  # noqa: BLE001 - a client must never wait for an answer that will not come
            replies[client].put((key, f"{type(exc).__name__}: {exc}"))
            continue
        replies[client].put((key, points))


class LandmarkServer:
    """A process that loads dlib's 68-point model at once and fits points for up to ``n_clients`` clients.

    Clients (worker processes, or this one) call :func:`connect` with :meth:`client_args`; create the server before
    forking them, :meth:`close` it when they are done.

    Args:
        context: the ``multiprocessing`` context (default: fork where available).
        n_clients: most clients.
        model: the model file (default: the packaged one).

    Raises:
        FileNotFoundError: the model file is missing.
    """

    def __init__(self, context: Any = None, n_clients: int = MAX_CLIENTS, model: str | None = None) -> None:
        import multiprocessing

        model = model or _model_path()
        if model is None:
            raise FileNotFoundError("shape_predictor_68_face_landmarks.dat (pip install face-recognition-models)")
        if context is None:
            context = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else None)
        self.n_clients = n_clients
        self.inbox = context.Queue()
        self.replies = [context.Queue() for _ in range(n_clients)]
        # a process that put data nobody reads (the server died) waits at exit for it to be read, unless told not to;
        # a client's data is always read in a run (it waits for the answers), so nothing is lost
        self.inbox.cancel_join_thread()
        self._counter = context.Value("i", 0)
        self._stopping = False
        self._process = context.Process(
            target=_serve,
            args=(self.inbox, self.replies, os.getpid(), model),
            name="dflab-landmarks",
            daemon=True,
        )
        self._process.start()

    @property
    def pid(self) -> int | None:
        return self._process.pid

    def client_args(self) -> tuple:
        """What a client passes to :func:`connect` (inherited by forked workers, or pickled for spawned ones)."""
        return (self.inbox, self.replies, self._counter, self._process.pid)

    def stop(self) -> None:
        """Ask the server to end (after its clients are done), without waiting for it: ``dflab prepare`` stops it when
        the last video is in, so that it ends while the workers do."""
        if not self._stopping and self._process.is_alive():
            self.inbox.put(None)
        self._stopping = True

    def close(self) -> None:
        """Stop the server (after its clients are done) and wait for it to end."""
        self.stop()
        if self._process.is_alive():
            self._process.join(timeout=10)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()


class LandmarkClient:
    """A client of :class:`LandmarkServer`: a :class:`~dflab.faces.detect.LandmarkSink` for
    :meth:`FaceDetector.defer_landmarks <dflab.faces.detect.FaceDetector.defer_landmarks>`.

    Args:
        inbox: the server's request queue.
        replies: this client's reply queue.
        client: this client's number.
        server: the server's process id (a waiting client checks that it still runs).
    """

    def __init__(self, inbox: Any, replies: Any, client: int, server: int) -> None:
        self.inbox = inbox
        self.replies = replies
        self.client = client
        self.server = server
        self._next = 0
        self._pending: dict[int, tuple[list[Any], int]] = {}

    def begin(self) -> None:
        """Start a new video: forget the fits of an aborted one (their late answers are dropped)."""
        self._pending.clear()

    def submit(self, image: Any, faces: list[tuple[Any, Box]], offset: int) -> None:
        """Send one image's boxes; :meth:`finish` sets each face's landmarks (minus ``offset``).

        Waits for earlier answers first when :data:`MAX_IN_FLIGHT` images are unanswered.

        Shape:
            image (H, W, 3) RGB or (H, W) grey uint8; ``faces`` pairs each :class:`~dflab.faces.detect.DetectedFace`
            with its box in ``image`` pixels.
        """
        from dflab.faces.detect import intensity

        while len(self._pending) >= MAX_IN_FLIGHT:
            self._receive()
        grey = intensity(image) if image.ndim == 3 else image
        key = self._next
        self._next += 1
        self._pending[key] = ([f for f, _ in faces], offset)
        self.inbox.put(("fit", self.client, key, grey, [b for _, b in faces]))

    def finish(self) -> None:
        """Wait for every submitted fit and fill the faces' landmarks in place.

        Raises:
            LandmarkServiceError: the server could not fit them, or died.
        """
        while self._pending:
            self._receive()

    def _receive(self) -> None:
        import numpy as np

        while True:
            try:
                key, answer = self.replies.get(timeout=POLL_S)
                break
            except queue.Empty:
                if not _alive(self.server):
                    self._pending.clear()
                    raise LandmarkServiceError("the 68-point landmark process ended") from None
        if key not in self._pending:
            return  # a late answer for a video that raised before its fits were collected
        faces, offset = self._pending.pop(key)
        if isinstance(answer, str):
            self._pending.clear()
            raise LandmarkServiceError(answer)
        for face, points in zip(faces, answer, strict=True):
            face.landmarks = np.array(points, dtype=np.float32) - np.float32(offset)


def connect(inbox: Any, replies: list[Any], counter: Any, server: int) -> LandmarkClient:
    """Called once per client process with :meth:`LandmarkServer.client_args`: takes the next free number.

    Raises:
        LandmarkServiceError: the server's clients are all taken.
    """
    with counter.get_lock():
        client = counter.value
        counter.value += 1
    if client >= len(replies):
        raise LandmarkServiceError(f"more than {len(replies)} clients for one landmark server")
    inbox.cancel_join_thread()  # as in LandmarkServer (a spawned client gets a fresh copy of the queue)
    return LandmarkClient(inbox, replies[client], client, server)


_PRELOADED: LandmarkServer | None = None


def preload() -> None:
    """Start the server now, before the caller's heavy imports (``dflab prepare`` on the command line): the model then
    loads on the core those imports leave idle. :func:`take_preloaded` hands it to the run; an unused one ends with
    the process (it is a daemon)."""
    global _PRELOADED
    # forking before the imports is what saves the time (fork: Linux); without the model file the run reports it
    if _PRELOADED is None and sys.platform.startswith("linux") and _model_path() is not None:
        _PRELOADED = LandmarkServer()


def take_preloaded() -> LandmarkServer | None:
    """The server :func:`preload` started (once; ``None`` when there is none)."""
    global _PRELOADED
    server, _PRELOADED = _PRELOADED, None
    return server
