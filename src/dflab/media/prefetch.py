"""Decode ahead in a thread: the next frames are decoded while the current one is analysed.

PyAV's decoder and the face detectors (OpenCV, dlib) release the GIL, so on two cores decoding and detection
overlap instead of taking turns (``dflab prepare`` and ``dflab scan`` both spend about as long decoding the sampled
frames as detecting faces in them).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")

_DONE = object()


def prefetch(items: Iterable[T], depth: int = 2) -> Iterator[T]:
    """Iterate ``items`` with up to ``depth`` of them produced ahead in a background thread.

    The items and any exception come out in order, exactly as from ``items`` itself (an exception raised after
    some items is raised after those items). Stopping early (``break``, an exception in the consumer, closing the
    generator) stops the producer and closes ``items`` in its own thread.
    """
    q: queue.Queue = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def put(x: object) -> bool:
        while not stop.is_set():
            try:
                q.put(x, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        it = iter(items)
        try:
            for x in it:
                if not put((x, None)):
                    return
            put((_DONE, None))
        except Exception as exc:  # noqa: BLE001  (handed to the consumer, which re-raises it in order)
            put((_DONE, exc))
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()

    worker = threading.Thread(target=produce, name="dflab-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            x, exc = q.get()
            if x is _DONE:
                if exc is not None:
                    raise exc
                return
            yield x
    finally:
        stop.set()
        worker.join(timeout=5)
