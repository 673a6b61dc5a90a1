"""68-point landmarks fitted in the manifest writer for ``dflab prepare``'s workers, so they start before the model.

Loading dlib's 68-point model takes 0.5–1 s of one core and holds the GIL throughout. ``dflab prepare`` used to load
it before forking its workers (which then shared it): the one serial step of a run, with the other cores idle. Now
the workers are forked at once and decode, detect and crop while the writer loads the model in a thread
(:class:`LandmarkServer`); each worker (:class:`LandmarkClient`) sends every frame's boxes, with the frame, to the
writer and collects the 68 points before it tracks the video's faces (tracking matches faces by their landmarks'
centre). Fitting takes ~1–3 ms per face, far less than the detection that produces the faces, so one thread serves a
few workers; ``dflab prepare`` uses it up to :data:`MAX_CLIENTS` workers and otherwise loads the model before the fork.

The frame travels in grey: dlib's predictor reads an RGB image through its intensities ``(r + g + b) // 3``, so the
points fitted on :func:`~dflab.faces.detect.intensity` are bit-identical (tested) for a third of the bytes. The grey
image is the very image (padded when the face was found padded) and the boxes are the very boxes an inline fit uses.
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Any

import numpy as np

from dflab.faces.detect import DetectedFace, FaceDetector, intensity

#: most workers one serving thread is used for (``dflab prepare`` loads the model before the fork above this)
MAX_CLIENTS = 4
#: longest wait for every worker's first job before the model's load (which holds this process's GIL) starts
START_WAIT_S = 1.0
#: images a worker may have sent without their answers: bounds what waits in the queue while the model loads
#: (64 grey 1080p frames are 133 MB)
MAX_IN_FLIGHT = 64

Box = tuple[float, float, float, float]


class LandmarkServiceError(RuntimeError):
    """The writer could not fit a worker's landmarks (the model failed to load, or dlib raised)."""


class LandmarkServer:
    """Fits the 68 points for :class:`LandmarkClient` workers in a thread of this process.

    Create it before the workers (they inherit its queues through :meth:`client_args`), :meth:`start` it once their
    first jobs are submitted, :meth:`close` it when they are done.

    Args:
        detector: the detector whose 68-point model fits the points (loaded by the serving thread).
        n_clients: number of workers.
        context: the ``multiprocessing`` context the workers are started with.
    """

    def __init__(self, detector: FaceDetector, n_clients: int, context: Any) -> None:
        self.detector = detector
        self.n_clients = n_clients
        self.requests = context.Queue()
        self.replies = [context.Queue() for _ in range(n_clients)]
        self._counter = context.Value("i", 0)
        self._thread: threading.Thread | None = None
        self.error: str | None = None

    def client_args(self) -> tuple:
        """What a worker passes to :func:`connect` (queues inherited, or pickled for a spawned worker)."""
        return (self.requests, self.replies, self._counter)

    def start(self) -> None:
        """Start serving (the model loads once every worker has said hello, or after :data:`START_WAIT_S`)."""
        self._thread = threading.Thread(target=self._serve, name="dflab-landmarks", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop the serving thread (after the workers are done)."""
        if self._thread is not None:
            self.requests.put(None)
            self._thread.join()
            self._thread = None

    def _serve(self) -> None:
        backlog = []
        waiting = set(range(self.n_clients))
        deadline = time.monotonic() + START_WAIT_S
        # dlib's load holds the GIL: this process's pool threads must have handed every worker its first job before
        while waiting and (left := deadline - time.monotonic()) > 0:
            try:
                msg = self.requests.get(timeout=left)
            except queue.Empty:
                break
            if msg is None:
                return
            if msg[0] == "hello":
                waiting.discard(msg[1])
            else:
                backlog.append(msg)
        try:
            self.detector.load_landmarks()
        except Exception as exc:  # noqa: BLE001 - reported to every worker, whose video is then recorded as an error
            self.error = f"the 68-point model failed to load: {type(exc).__name__}: {exc}"
        for msg in backlog:
            self._answer(msg)
        while (msg := self.requests.get()) is not None:
            if msg[0] == "fit":
                self._answer(msg)

    def _answer(self, msg: tuple) -> None:
        _, client, key, image, boxes = msg
        if self.error is not None:
            self.replies[client].put((key, self.error))
            return
        try:
            points = np.stack([self.detector.landmarks(image, box) for box in boxes])
        except Exception as exc:  # noqa: BLE001 - a worker must never wait for an answer that will not come
            self.replies[client].put((key, f"{type(exc).__name__}: {exc}"))
            return
        self.replies[client].put((key, points))


class LandmarkClient:
    """A worker's side of :class:`LandmarkServer`: a :class:`~dflab.faces.detect.LandmarkSink` for
    :meth:`FaceDetector.defer_landmarks`.

    Args:
        requests: the server's request queue.
        replies: this worker's reply queue.
        client: this worker's number.
    """

    def __init__(self, requests: Any, replies: Any, client: int) -> None:
        self.requests = requests
        self.replies = replies
        self.client = client
        self._next = 0
        self._pending: dict[int, tuple[list[DetectedFace], int]] = {}

    def begin(self) -> None:
        """Start a new video: forget the fits of an aborted one (their late answers are dropped) and say hello."""
        self._pending.clear()
        self.requests.put(("hello", self.client))

    def submit(self, image: np.ndarray, faces: list[tuple[DetectedFace, Box]], offset: int) -> None:
        """Send one image's boxes; :meth:`finish` sets each face's landmarks (minus ``offset``).

        Waits for earlier answers first when :data:`MAX_IN_FLIGHT` images are unanswered.
        """
        while len(self._pending) >= MAX_IN_FLIGHT:
            self._receive()
        grey = intensity(image) if image.ndim == 3 else image
        key = self._next
        self._next += 1
        self._pending[key] = ([f for f, _ in faces], offset)
        self.requests.put(("fit", self.client, key, grey, [b for _, b in faces]))

    def finish(self) -> None:
        """Wait for every submitted fit and fill the faces' landmarks in place.

        Raises:
            LandmarkServiceError: the writer could not fit them.
        """
        while self._pending:
            self._receive()

    def _receive(self) -> None:
        key, answer = self.replies.get()
        if key not in self._pending:
            return  # a late answer for a video that raised before its fits were collected
        faces, offset = self._pending.pop(key)
        if isinstance(answer, str):
            self._pending.clear()
            raise LandmarkServiceError(answer)
        for face, points in zip(faces, answer, strict=True):
            face.landmarks = points - np.float32(offset)


def connect(requests: Any, replies: list[Any], counter: Any) -> LandmarkClient:
    """Called once in each worker (its pool initializer) with :meth:`LandmarkServer.client_args`: takes a number."""
    with counter.get_lock():
        client = counter.value
        counter.value += 1
    return LandmarkClient(requests, replies[client], client)
