"""Decoding ahead in a thread keeps order, errors and early stops exactly as the plain iterator."""

from __future__ import annotations

import threading

import pytest

from dflab.media.prefetch import prefetch


def test_items_in_order_from_another_thread():
    seen = []

    def gen():
        for i in range(20):
            seen.append(threading.current_thread().name)
            yield i

    assert list(prefetch(gen(), depth=3)) == list(range(20))
    assert set(seen) == {"dflab-prefetch"}


def test_an_error_after_some_items_comes_after_those_items():
    def gen():
        yield 1
        yield 2
        raise ValueError("broken mid-stream")

    got = []
    with pytest.raises(ValueError, match="broken mid-stream"):
        for x in prefetch(gen()):
            got.append(x)
    assert got == [1, 2]


def test_stopping_early_closes_the_source():
    closed = threading.Event()

    def gen():
        try:
            yield from range(1000)
        finally:
            closed.set()

    for x in prefetch(gen(), depth=2):
        if x == 3:
            break
    assert closed.wait(5)
