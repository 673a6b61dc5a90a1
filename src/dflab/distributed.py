"""Scale-out on Ray: one task per video (or media file), results handed to one writer in the calling process.

``dflab prepare``, ``dflab scan`` (folders) and the prediction step of ``dflab eval`` take ``--ray [ADDRESS]``: with
no address a local Ray instance is started (all cores of this machine); with one (``auto``, ``ray://head:10001``,
``head:6379``) the tasks run on that cluster. The calling process (the *driver*) is the only writer of the manifest
or report, exactly as with ``--workers``: a task returns its result, and the driver commits it. That keeps the
resume logic of each command unchanged — a video is final only once its result is committed.

A task whose worker process dies (killed, out of memory, node lost) is retried by Ray (``max_retries``); an
exception raised *inside* a task is not retried (it is a property of the input) and is reported to the caller's
``on_failure``, which records it like any other error.

Ray is an optional extra: ``pip install 'dflab[distributed]'``. Training does not use Ray: it scales with
``torchrun`` (PyTorch DDP), see docs/guide/distributed.md.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from typing import Any

RAY_INSTALL = "pip install 'dflab[distributed]'  (or: pip install ray==2.60.0)"
#: ``--ray`` given without an address: start (or reuse) a local Ray instance
LOCAL = "local"


def ray_module() -> Any:
    """Import Ray, or fail with the install command.

    Raises:
        ModuleNotFoundError: Ray is not installed.
    """
    try:
        import ray
    except ModuleNotFoundError as exc:
        raise ModuleNotFoundError(f"--ray needs Ray, an optional extra: {RAY_INSTALL}") from exc
    return ray


def init_ray(address: str | None = LOCAL, **kwargs: Any) -> Any:
    """Connect to a Ray cluster (or start a local instance for ``None``/``"local"``); reuse an existing connection.

    Args:
        address: ``"local"``/``None`` for a local instance, else any address ``ray.init`` accepts.
        kwargs: passed to ``ray.init`` (e.g. ``num_cpus`` for a local instance).
    """
    ray = ray_module()
    if not ray.is_initialized():
        ray.init(
            address=None if address in (None, "", LOCAL) else address,
            ignore_reinit_error=True,
            log_to_driver=False,
            include_dashboard=False,
            **kwargs,
        )
    return ray


def add_ray_argument(parser: Any, what: str) -> None:
    """The ``--ray [ADDRESS]`` option, the same in every command."""
    parser.add_argument(
        "--ray",
        nargs="?",
        const=LOCAL,
        default=None,
        metavar="ADDRESS",
        help=f"run {what} as Ray tasks (no ADDRESS: a local Ray instance; else a cluster, e.g. auto or "
        "ray://head:10001); needs the distributed extra",
    )


def run_tasks(
    fn: Callable[..., Any],
    jobs: Iterable[tuple[Hashable, tuple[Any, ...]]],
    *,
    address: str | None = LOCAL,
    on_result: Callable[[Hashable, Any], None],
    on_failure: Callable[[Hashable, BaseException], None],
    max_retries: int = 3,
    max_in_flight: int | None = None,
    num_cpus: float = 1,
) -> None:
    """Run ``fn(*args)`` for every job as a Ray task; hand each result to ``on_result`` in this process.

    Results arrive in completion order. At most ``max_in_flight`` tasks are submitted at once (default: twice the
    cluster's CPUs), so a dataset of 100k videos does not flood the object store.

    Args:
        fn: a module-level function (Ray ships it to the workers).
        jobs: ``(key, args)`` pairs; ``key`` identifies the job to the callbacks.
        address: the cluster (see :func:`init_ray`).
        on_result: called with ``(key, fn(*args))``, in the calling process only (the single writer).
        on_failure: called with ``(key, exception)`` when a task raised, or its worker died ``max_retries + 1``
            times.
        max_retries: retries of a task whose worker process died.
        max_in_flight: tasks submitted at once.
        num_cpus: CPUs reserved per task.
    """
    ray = init_ray(address)
    remote = ray.remote(num_cpus=num_cpus, max_retries=max_retries, retry_exceptions=False)(fn)
    limit = max_in_flight or max(2, 2 * int(ray.cluster_resources().get("CPU", 1)))
    pending: dict[Any, Hashable] = {}
    todo = iter(jobs)
    exhausted = False
    while pending or not exhausted:
        while not exhausted and len(pending) < limit:
            nxt = next(todo, None)
            if nxt is None:
                exhausted = True
                break
            key, args = nxt
            pending[remote.remote(*args)] = key
        if not pending:
            break
        done, _ = ray.wait(list(pending), num_returns=1)
        ref = done[0]
        key = pending.pop(ref)
        try:
            result = ray.get(ref)
        except (ray.exceptions.RayTaskError, ray.exceptions.RayError) as exc:
            on_failure(key, exc)
            continue
        on_result(key, result)
