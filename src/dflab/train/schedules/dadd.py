"""DADD's alternating multi-task schedule (Hong & Du 2021, Algorithm 1).

One cycle = k rounds over the N sub-tasks (each step of sub-task n draws from its own stream — that ADDG
category's negatives with reals — and calls ``compute_loss(task="sub:n")``), then t steps of the final task on the
``final_stream`` (all categories, ``task="final"``, Eq. 4). Cycles repeat until training ends.
``order="interleaved"`` follows Algorithm 1 literally (for i in k: for n in N); ``"blocked"`` runs k steps of
sub-task 1, then k of sub-task 2, ….
"""

from __future__ import annotations

from typing import Any

from dflab.train.schedule import SCHEDULES, Phase, Schedule


class DADDSchedule(Schedule):
    """Args:
    sub_streams: one stream name per sub-task, in sub-task order (the recipe defines each stream).
    k: rounds of sub-task training per cycle.
    t: final-task steps per cycle.
    final_stream: stream of the final task (all categories + reals).
    order: ``interleaved`` (Algorithm 1) or ``blocked``.
    categories: optional category id per sub-task; when given, ``compute_loss`` keeps only reals and that category.
    """

    def __init__(
        self,
        sub_streams: list[str],
        k: int = 1,
        t: int = 1,
        final_stream: str = "default",
        order: str = "interleaved",
        categories: list[int] | None = None,
    ) -> None:
        super().__init__(sub_streams=sub_streams, k=k, t=t, final_stream=final_stream, order=order)
        if not sub_streams:
            raise ValueError("DADD schedule needs at least one sub-task stream")
        if k < 0 or t < 0 or k + t == 0:
            raise ValueError(f"need k, t >= 0 and k + t > 0, got k={k}, t={t}")
        if order not in ("interleaved", "blocked"):
            raise ValueError(f"order must be 'interleaved' or 'blocked', got {order!r}")
        if categories is not None and len(categories) != len(sub_streams):
            raise ValueError("categories must have one id per sub-task stream")
        self.sub_streams, self.k, self.t = list(sub_streams), k, t
        self.final_stream, self.order, self.categories = final_stream, order, categories

    def streams(self) -> list[str]:
        return list(dict.fromkeys([self.final_stream, *self.sub_streams]))

    @property
    def cycle(self) -> int:
        return len(self.sub_streams) * self.k + self.t

    def phase(self, step: int, total_steps: int) -> Phase:
        n_sub = len(self.sub_streams) * self.k
        pos = step % self.cycle
        if pos < n_sub:
            n = pos % len(self.sub_streams) if self.order == "interleaved" else pos // self.k
            kw: dict[str, Any] = {"task": f"sub:{n}"}
            if self.categories is not None:
                kw["category"] = self.categories[n]
            return Phase(name=f"subtask:{self.sub_streams[n]}", stream=self.sub_streams[n], loss_kwargs=kw)
        return Phase(name="final", stream=self.final_stream, loss_kwargs={"task": "final"})


SCHEDULES.add("dadd", DADDSchedule)
