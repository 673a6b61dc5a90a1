"""Multi-metric loss stages by iteration (Zhang et al. 2021, Sec. 4.3.1): triplet + CE throughout, the
weight-center loss from the middle stage, AHE in the end stage (``compute_loss(stage=…)``).

The paper does not give the stage boundaries; defaults put them at 30 % and 60 % of the run, i.e. at the first and
second ÷10 learning-rate drops of the paper recipe (3000 and 6000 of 10 000 iterations). Absolute step numbers
(``middle_step``/``end_step``) override the fractions.
"""

from __future__ import annotations

from dflab.train.schedule import SCHEDULES, Phase, Schedule


class MMLSchedule(Schedule):
    """Args:
    middle_start, end_start: stage boundaries as fractions of the total steps.
    middle_step, end_step: the same as absolute steps (take precedence when given).
    stream: the data stream (real + fake, supervised).
    """

    def __init__(
        self,
        middle_start: float = 0.3,
        end_start: float = 0.6,
        middle_step: int | None = None,
        end_step: int | None = None,
        stream: str = "default",
    ) -> None:
        super().__init__(middle_start=middle_start, end_start=end_start, middle_step=middle_step, end_step=end_step)
        if not 0 <= middle_start <= end_start <= 1:
            raise ValueError(f"need 0 <= middle_start <= end_start <= 1, got {middle_start}, {end_start}")
        self.middle_start, self.end_start = middle_start, end_start
        self.middle_step, self.end_step, self.stream = middle_step, end_step, stream

    def streams(self) -> list[str]:
        return [self.stream]

    def stage(self, step: int, total_steps: int) -> str:
        mid = self.middle_step if self.middle_step is not None else int(self.middle_start * total_steps)
        end = self.end_step if self.end_step is not None else int(self.end_start * total_steps)
        return "end" if step >= end else "middle" if step >= mid else "early"

    def phase(self, step: int, total_steps: int) -> Phase:
        s = self.stage(step, total_steps)
        return Phase(name=s, stream=self.stream, loss_kwargs={"stage": s})


SCHEDULES.add("mml", MMLSchedule)
