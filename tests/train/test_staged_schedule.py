"""``head_first``: only the head trains for the first steps, then everything (FF++ Xception recipe)."""

from __future__ import annotations

import dflab.train.schedules  # noqa: F401
from dflab.train.schedule import SCHEDULES


def test_head_first_phases():
    sched = SCHEDULES.get("head_first")(prefixes=["head."], fraction=0.25)
    phases = [sched.phase(s, 100) for s in range(100)]
    assert all(p.trainable == ("head.",) for p in phases[:25])
    assert all(p.trainable is None for p in phases[25:])
    assert SCHEDULES.get("head_first")(steps=3).phase(3, 10).name == "all"
