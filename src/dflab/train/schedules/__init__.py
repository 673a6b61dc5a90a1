"""Per-method training schedules. Each method adds ONE explicit import line here for its schedule file
(``from dflab.train.schedules import big_arts  # noqa: F401``); importing this package fills
:data:`dflab.train.schedule.SCHEDULES`.

A schedule (see :class:`dflab.train.schedule.Schedule`) is constructed with the recipe's ``schedule.kwargs``; the
loop calls ``streams()`` once, ``phase(step, total_steps)`` before every optimisation step (the returned
:class:`~dflab.train.schedule.Phase` picks the stream, the trainable parameter prefixes, ``compute_loss`` kwargs
and an lr multiplier), and ``on_epoch_end(trainer, epoch)`` after every epoch. ``trainer`` is a
:class:`dflab.train.loop.Trainer`: ``trainer.model`` (the unwrapped detector), ``trainer.streams`` (name ->
:class:`~dflab.train.data.FaceStream`), ``trainer.manifest``, ``trainer.cfg``, ``trainer.log(dict)`` and
``trainer.run_dir``. ``state_dict()``/``load_state_dict()`` are saved in the resumable checkpoint.
"""

from dflab.train.schedule import SCHEDULES, Phase, Schedule
from dflab.train.schedules import (  # noqa: F401  (DADD, LAE, MML schedules)
    big_arts,
    dadd,
    lae,
    lisiam,
    mml,
    staged,
)

__all__ = ["SCHEDULES", "Phase", "Schedule"]
