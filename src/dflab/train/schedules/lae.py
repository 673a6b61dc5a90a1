"""LAE's two-stage schedule with active learning (Du et al. CIKM 2020, Algorithm 1, Sec. 2.4, Sec. 3.1.4).

Stage 1 (``stage1_epochs`` epochs): everything trains with ``compute_loss(stage="stage1")`` (Eq. 2 + the
discriminator's Eq. 6). At the end of stage 1, :meth:`LAESchedule.on_epoch_end` runs the selection
(``selection="active"``: linear model on the 512 GAP activations → top-10 channels → the N_active fakes with the
highest activation; ``"random"``: the Fig. 5 baseline; ``"none"``: no stage 2, the Table 4 ablations), asks the
mask oracle for their masks, writes them under ``<run_dir>/active_masks/`` and restricts the ``active_stream`` to
the reals plus the selected fakes (their ``mask_crop`` pointing at the oracle's masks). Stage 2 fine-tunes the
encoder only (``trainable=("encoder.",)``) with ``compute_loss(stage="stage2")`` = Eq. 12, at a learning rate
÷10 at the start (Algorithm 1, line 7) and ÷10 again every ``decay_epochs`` = 3 epochs.

The oracle is :class:`dflab.train.active.StreamMaskOracle` over the active stream (the dataset's masks, or the
difference to the original crop); pass another oracle object to the constructor to ask a person instead.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from dflab.train.active import MaskOracle, Selection, StreamMaskOracle, channel_activations, choose
from dflab.train.schedule import SCHEDULES, Phase, Schedule


class LAESchedule(Schedule):
    """Args:
    stage1_epochs: epochs of stage 1.
    n_active: number of fakes whose masks are requested (paper: 100–800, < 3 % of the training fakes).
    selection: ``active``, ``random`` or ``none``.
    top_k: channels kept from the linear model (paper: 10).
    decay_epochs: stage-2 lr ÷10 period in epochs (paper: 3).
    stream: stage-1 stream; active_stream: the stream stage 2 draws from (restricted after selection).
    linear_epochs, linear_lr: the Eq. 10 linear model's SGD (paper: 5 epochs, 1e-3).
    max_score_items: cap on the items scored for selection (``None`` = all rows of the stage-1 stream).
    oracle: a :class:`~dflab.train.active.MaskOracle` (default: the active stream's own masks).
    """

    def __init__(
        self,
        stage1_epochs: int = 1,
        n_active: int = 100,
        selection: str = "active",
        top_k: int = 10,
        decay_epochs: int = 3,
        stream: str = "default",
        active_stream: str = "active",
        linear_epochs: int = 5,
        linear_lr: float = 1e-3,
        max_score_items: int | None = None,
        seed: int = 0,
        oracle: MaskOracle | None = None,
    ) -> None:
        super().__init__(stage1_epochs=stage1_epochs, n_active=n_active, selection=selection)
        if selection not in ("active", "random", "none"):
            raise ValueError(f"selection must be 'active', 'random' or 'none', got {selection!r}")
        self.stage1_epochs, self.n_active, self.selection, self.top_k = stage1_epochs, n_active, selection, top_k
        self.decay_epochs, self.stream, self.active_stream = decay_epochs, stream, active_stream
        self.linear_epochs, self.linear_lr, self.max_score_items, self.seed = (
            linear_epochs,
            linear_lr,
            max_score_items,
            seed,
        )
        self.oracle = oracle
        self.in_stage2 = False
        self.stage2_epochs_done = 0
        self.selected: Selection | None = None

    def streams(self) -> list[str]:
        return [self.stream] if self.selection == "none" else [self.stream, self.active_stream]

    def phase(self, step: int, total_steps: int) -> Phase:
        if not self.in_stage2:
            return Phase(name="stage1", stream=self.stream, loss_kwargs={"stage": "stage1"})
        scale = 0.1 * 0.1 ** (self.stage2_epochs_done // self.decay_epochs)
        return Phase(
            name="stage2", stream=self.active_stream, trainable=("encoder.",), loss_kwargs={"stage": "stage2"},
            lr_scale=scale,
        )  # fmt: skip

    # ------------------------------------------------------------------ selection between the stages
    def on_epoch_end(self, trainer: Any, epoch: int) -> None:
        if self.in_stage2:
            self.stage2_epochs_done += 1
            return
        if epoch + 1 < self.stage1_epochs or self.selection == "none":
            return
        self.select(trainer)
        self.in_stage2 = True

    def select(self, trainer: Any) -> Selection:
        """Score the stage-1 stream's dataset items, choose N_active fakes, fetch masks, restrict the active stream."""
        from dflab.train.data import face_key

        src = trainer.streams[self.stream]
        dst = trainer.streams[self.active_stream]
        items = [(i, 0, 0) for i in range(len(src.rows))]
        if self.max_score_items is not None and len(items) > self.max_score_items:
            rng = np.random.default_rng(self.seed)
            items = [items[i] for i in sorted(rng.choice(len(items), self.max_score_items, replace=False))]
        keys = [face_key(src.rows[i]) for i, _, _ in items]
        device = next(trainer.model.parameters()).device
        u, labels = channel_activations(trainer.model, (src[it] for it in items), device=device)
        sel = choose(
            u, labels, keys, self.n_active, method=self.selection, top_k=self.top_k, seed=self.seed,
            linear_epochs=self.linear_epochs, linear_lr=self.linear_lr,
        )  # fmt: skip
        oracle = self.oracle or StreamMaskOracle(dst)
        masks = oracle.request(sel.keys)
        self._restrict(trainer, dst, masks)
        self.selected = sel
        trainer.log(
            {
                "method": sel.method,
                "n_scored": len(keys),
                "n_fakes_scored": int((labels == 1).sum()),
                "n_selected": len(sel.keys),
                "n_masks": len(masks),
                "channels": " ".join(map(str, sel.channels)),
            },
            "active.csv",
        )
        run_dir = Path(getattr(trainer, "run_dir", "."))
        (run_dir / "active_selection.json").write_text(json.dumps(dataclasses.asdict(sel), indent=1))
        print(
            f"[lae] stage 1 done: {sel.method} selection of {len(sel.keys)} fakes out of "
            f"{int((labels == 1).sum())} (masks: {len(masks)}); stage 2 fine-tunes the encoder only",
            file=sys.stderr,
        )
        return sel

    def _restrict(self, trainer: Any, stream: Any, masks: dict[str, np.ndarray]) -> None:
        import cv2

        from dflab.train.data import face_key

        out_dir = Path(getattr(trainer, "run_dir", ".")) / "active_masks"
        out_dir.mkdir(parents=True, exist_ok=True)
        rows = []
        for r in stream.rows:
            key = face_key(r)
            if r.label == 0:
                rows.append(r)
            elif key in masks:
                path = out_dir / (key.replace("/", "__") + ".png")
                cv2.imwrite(str(path), np.clip(masks[key] * 255.0, 0, 255).astype(np.uint8))
                rows.append(dataclasses.replace(r, mask_crop=str(path.resolve())))
        if not any(r.label == 1 for r in rows):
            raise RuntimeError(f"active selection left no fake with a mask in stream {self.active_stream!r}")
        stream.rows = rows

    def on_resume(self, trainer: Any) -> None:
        """A run resumed in stage 2 re-restricts the active stream to the selected fakes, whose masks were
        written under ``<run_dir>/active_masks/`` at selection time (no oracle is asked twice)."""
        if not (self.in_stage2 and self.selected):
            return
        import cv2

        out_dir = Path(getattr(trainer, "run_dir", ".")) / "active_masks"
        masks = {}
        for key in self.selected.keys:
            path = out_dir / (key.replace("/", "__") + ".png")
            img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
            if img is None:
                raise RuntimeError(f"resuming LAE stage 2: the selected fake's mask {path} is missing")
            masks[key] = img.astype(np.float32) / 255.0
        self._restrict(trainer, trainer.streams[self.active_stream], masks)

    def state_dict(self) -> dict[str, Any]:
        return {
            "in_stage2": self.in_stage2,
            "stage2_epochs_done": self.stage2_epochs_done,
            "selected": dataclasses.asdict(self.selected) if self.selected else None,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.in_stage2 = bool(state.get("in_stage2", False))
        self.stage2_epochs_done = int(state.get("stage2_epochs_done", 0))
        sel = state.get("selected")
        self.selected = Selection(**sel) if sel else None


SCHEDULES.add("lae", LAESchedule)
