"""``head_first``: train only some parameters for the first steps, then everything.

The FaceForensics++ Xception recipe (Rössler et al., ICCV 2019, §4.2 of their paper) trains the new classification
layer alone for a few epochs before fine-tuning the whole network; ``head_first`` expresses that as a schedule:
``steps`` (or ``epochs`` × steps per epoch) with only ``prefixes`` trainable, then all parameters.
"""

from __future__ import annotations

from typing import Any

from dflab.train.schedule import SCHEDULES, Phase, Schedule


@SCHEDULES.register("head_first")
class HeadFirst(Schedule):
    """Args: prefixes (parameter-name prefixes trained first), fraction (of total steps) or steps."""

    def __init__(self, prefixes: list[str] | None = None, fraction: float = 0.0, steps: int = 0, **kw: Any) -> None:
        super().__init__(prefixes=prefixes, fraction=fraction, steps=steps, **kw)
        self.prefixes = tuple(prefixes or ["head."])
        self.fraction = float(fraction)
        self.steps = int(steps)

    def phase(self, step: int, total_steps: int) -> Phase:
        warm = self.steps or round(self.fraction * total_steps)
        if step < warm:
            return Phase(name="head", trainable=self.prefixes)
        return Phase(name="all")
