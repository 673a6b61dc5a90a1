"""Per-method training schedules: small objects the plain training loop asks what to do at each step.

The loop never branches on a detector's name. At every step it asks the schedule for a :class:`Phase`:
which data stream to draw from, which parameters train, and which keyword arguments go to
``Detector.compute_loss``. Hooks let a schedule run an extra selection phase (LAE active learning) between epochs,
end a stage on the validation (``on_validation``) and end the run (``stop_due``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import nn

from dflab.registry import Registry


@dataclass(frozen=True)
class Phase:
    """What the loop does now.

    Attributes:
        name: shown in logs and the progress bar (e.g. ``"subtask:Inner-GaussBlur"``, ``"stage2"``).
        stream: name of the data stream to draw the batch from (the data layer builds one loader per stream name
            declared by the recipe; ``"default"`` is the recipe's main stream).
        trainable: parameter-name prefixes that train in this phase; ``None`` means all.
        loss_kwargs: passed to ``compute_loss`` as ``**phase``.
        lr_scale: multiplies the optimiser's scheduled learning rate.
        freeze_norm: the batch-norm layers outside ``trainable`` run in eval mode, so a frozen module's running
            statistics stay as they were trained (what "freezing a layer" means for BN; :func:`freeze_norm_stats`).
    """

    name: str = "train"
    stream: str = "default"
    trainable: tuple[str, ...] | None = None
    loss_kwargs: dict[str, Any] = field(default_factory=dict)
    lr_scale: float = 1.0
    freeze_norm: bool = False


def freeze_norm_stats(model: nn.Module, trainable: tuple[str, ...] | None) -> list[str]:
    """Put every batch-norm layer whose name is outside the ``trainable`` prefixes in eval mode (call after
    ``model.train()``); returns their names. Frozen layers then normalise with their stored statistics and do not
    update them.
    """
    if trainable is None:
        return []
    frozen = []
    for name, module in model.named_modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and not f"{name}.".startswith(trainable):
            module.eval()
            frozen.append(name)
    return frozen


class Schedule:
    """Default schedule: one phase, everything trains."""

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs

    def streams(self) -> list[str]:
        """Names of the data streams this schedule draws from (the recipe's data config defines each)."""
        return ["default"]

    def phase(self, step: int, total_steps: int) -> Phase:
        return Phase()

    def on_epoch_end(self, trainer: Any, epoch: int) -> None:
        """Hook for extra phases between epochs (e.g. active selection). ``trainer`` exposes model, data, log."""

    def on_validation(self, trainer: Any, metrics: dict[str, Any]) -> None:
        """Hook called after each validation (``metrics``: the epoch's validation row, gathered over ranks, so every
        rank sees the same) and before ``last/`` is written: end a stage on a validation criterion (LAE's stage 1
        stops early on the validation loss)."""

    def stop_due(self, trainer: Any) -> str | None:
        """Why the schedule ends the run now, before ``train.epochs`` (checked before each epoch, like
        ``train.early_stop_patience``), or ``None``. A pure function of the schedule's saved state, so a resumed run
        ends where an uninterrupted one does."""
        return None

    def on_start(self, trainer: Any) -> None:
        """Hook called once the trainer has built its data streams, before any batch is drawn (and before a resumed
        run's :meth:`on_resume`): adjust the streams (e.g. LAE's stage 1 asks for no forgery mask)."""

    def on_resume(self, trainer: Any) -> None:
        """Hook called after a resumed run restored model, optimiser and this schedule's state: re-apply what the
        schedule had changed on the trainer (e.g. a restricted data stream)."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


SCHEDULES: Registry[type[Schedule]] = Registry("schedule")
SCHEDULES.add("default", Schedule)
