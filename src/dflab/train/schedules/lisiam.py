"""LiSiam's three-phase training (Wang et al., TIFS 2022, §IV-B) and its quality-degraded view.

Phase 1 trains the segmentation modules only (feature extractor + segmentation/auxiliary decoders; the
classification modules are frozen) for ~146k iterations; phase 2 trains the classification modules only (separable
conv unit, mask-guided transformer, SE, MLP head) for ~16k; phase 3 trains everything for ~324k. The phase lengths
are given as proportions of the run (default 146 : 16 : 324), so a short recipe keeps the paper's ratios. The
paper's poly learning-rate policy (power 0.9, per iteration) is applied here as ``Phase.lr_scale =
(1 − step/total)^power`` — use it with ``lr_schedule.name: none`` so the two do not compound.
``compute_loss`` receives ``stage="seg" | "cls" | "all"`` so that frozen parts' losses (and branch 2 in phase 2)
are not computed. Frozen modules' batch-norm layers run in eval mode (``Phase.freeze_norm``): their running
statistics stay those of the phase that trained them.

This module also registers ``lisiam_iqd``, the recipes' name for the degrader ``iqd`` of
:data:`dflab.train.data.DEGRADERS`: the synthesis library's IQD (§IV-A.3: JPEG compression, resizing and Gaussian
blur, each with p = 0.5 in random order; levels from the official code, see :mod:`dflab.synthesis.iqd`) producing
the ``degraded`` batch key of the Siamese branch 2.
"""

from __future__ import annotations

from dflab.models.detectors.lisiam import CLS_MODULES, SEG_MODULES
from dflab.train.data import DEGRADERS
from dflab.train.schedule import SCHEDULES, Phase, Schedule


class LiSiamSchedule(Schedule):
    """Args:
    seg, cls, all: relative lengths of the three phases (paper: 146k, 16k, 324k iterations).
    poly_power: power of the per-step poly lr factor (0.9 in the paper; 0 disables it).
    stream: the data stream every phase draws from.
    """

    def __init__(
        self,
        seg: float = 146.0,
        cls: float = 16.0,
        all: float = 324.0,
        poly_power: float = 0.9,
        stream: str = "default",
    ) -> None:
        super().__init__(seg=seg, cls=cls, all=all, poly_power=poly_power, stream=stream)
        self.poly_power = float(poly_power)
        if min(seg, cls, all) < 0 or seg + cls + all <= 0:
            raise ValueError(f"phase lengths must be >= 0 with a positive sum; got {seg}, {cls}, {all}")
        self.lengths = (float(seg), float(cls), float(all))
        self.stream = stream

    def streams(self) -> list[str]:
        return [self.stream]

    def boundaries(self, total_steps: int) -> tuple[int, int]:
        """First step of phase 2 and of phase 3 for a run of ``total_steps``."""
        s = sum(self.lengths)
        b1 = round(total_steps * self.lengths[0] / s)
        b2 = round(total_steps * (self.lengths[0] + self.lengths[1]) / s)
        return b1, b2

    def phase(self, step: int, total_steps: int) -> Phase:
        b1, b2 = self.boundaries(total_steps)
        scale = max(0.0, 1.0 - step / max(1, total_steps)) ** self.poly_power
        if step < b1:
            name, trainable = "seg", SEG_MODULES
        elif step < b2:
            name, trainable = "cls", CLS_MODULES
        else:
            name, trainable = "all", None
        # frozen layers keep their BN statistics too (§IV-B "freeze"): phase 2 must not re-estimate the segmentation
        # modules' BN on a classifier-only schedule
        return Phase(
            name=name,
            stream=self.stream,
            trainable=trainable,
            loss_kwargs={"stage": name},
            lr_scale=scale,
            freeze_norm=trainable is not None,
        )


SCHEDULES.add("lisiam", LiSiamSchedule)
# the name the lisiam recipes use for the degrader ``iqd`` of dflab.train.data (the synthesis ``iqd``)
DEGRADERS.add("lisiam_iqd", DEGRADERS.get("iqd"))
