"""Whole-batch interleaving of data streams (``stream_mix``), first written for BiG-Arts (Chen, Li et al. 2022, §4.1).

The paper builds every batch from 50 % reals and 50 % fakes, the fakes a third each original dataset fakes,
(Real, Real) and (Fake, Real) augmentations. The BiG-Arts recipes now do that *within each batch* with a mixed
stream (``data.mixes``, :class:`~dflab.train.config.DataConfig`; the loop concatenates fixed counts from each
stream). This schedule is kept for recipes that interleave *whole* batches of different streams in a fixed cycle
with integer weights (smooth weighted round-robin), e.g. ``{"default": 1, "synth": 2}`` draws one ``default``
batch, then two ``synth`` batches, per 3-step cycle (the default-detector recipes).
"""

from __future__ import annotations

from dflab.train.schedule import SCHEDULES, Phase, Schedule


class StreamMixSchedule(Schedule):
    """Args:
    weights: stream name -> integer steps per cycle (order of first appearance breaks ties).
    """

    def __init__(self, weights: dict[str, int] | None = None) -> None:
        weights = dict(weights or {"default": 1})
        super().__init__(weights=weights)
        if not weights or any(int(w) != w or w < 0 for w in weights.values()) or sum(weights.values()) <= 0:
            raise ValueError(f"weights must be non-negative integers with a positive sum; got {weights}")
        self.weights = {k: int(v) for k, v in weights.items() if v > 0}
        self.cycle = self._interleave(self.weights)

    @staticmethod
    def _interleave(weights: dict[str, int]) -> list[str]:
        total = sum(weights.values())
        current = dict.fromkeys(weights, 0)
        out = []
        for _ in range(total):  # smooth weighted round-robin (nginx): spreads each stream evenly over the cycle
            for k, w in weights.items():
                current[k] += w
            best = max(current, key=lambda k: current[k])
            current[best] -= total
            out.append(best)
        return out

    def streams(self) -> list[str]:
        return list(self.weights)

    def phase(self, step: int, total_steps: int) -> Phase:
        name = self.cycle[step % len(self.cycle)]
        return Phase(name=name, stream=name)


SCHEDULES.add("stream_mix", StreamMixSchedule)
