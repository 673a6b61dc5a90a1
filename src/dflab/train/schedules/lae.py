"""LAE's two-stage schedule with active learning (Du et al. CIKM 2020, Algorithm 1, Sec. 2.4, Sec. 3.1.4).

Stage 1 (``stage1_epochs`` epochs): everything trains with ``compute_loss(stage="stage1")`` (Eq. 2 + the
discriminator's Eq. 6). At the end of stage 1, :meth:`LAESchedule.on_epoch_end` runs the selection
(``selection="active"``: linear model on the 512 GAP activations → top-10 channels → the N_active fakes with the
highest activation; ``"random"``: the Fig. 5 baseline; ``"none"``: no stage 2, the Table 4 ablations), asks the
mask oracle for their masks and writes them under ``<run_dir>/active_masks/``. Stage 2 fine-tunes the encoder only
(``trainable=("encoder.",)``) with ``compute_loss(stage="stage2")`` = Eq. 12, at a learning rate ÷10 at the start
(Algorithm 1, line 7) and ÷10 again every ``decay_epochs`` = 3 epochs.

What stage 2 trains on (Algorithm 1, lines 9–13): ``L2 = λ1·L_latent + λ2·L_attention`` where ``L_latent`` (Eq. 4)
runs over the training data D = {(x_i, l_i)}_{i=1..N} and ``L_attention`` (Eq. 11) over the N_active annotated fakes
only. Two readings are selectable:

* **default** (``stage2_stream=None``): stage 2 draws from the stage-1 stream itself — all of D, reals and fakes at
  their stage-1 balance — and a stage-2 epoch is one pass over D, as a stage-1 epoch is (Algorithm 1 indexes both
  stages by epochs over D; the paper's "4 epochs for 100 active images" are such epochs). The selected fakes get
  their annotated masks (the stream's ``annotations``); each item carries ``mask_valid``, so the attention term
  covers exactly the N_active annotated fakes and every other item trains L_latent only. The detector weighs both
  sums per item, as Eq. 12 does (``Σ_D latent + Σ_active attention``, each divided by the batch size). This is the
  literal reading of Algorithm 1 and therefore the default; with N_active ≪ N the attention term is sparse.
* **mixed batches** (``stage2_stream`` names a ``data.mixes`` entry that includes ``active_stream``): every stage-2
  batch holds a fixed share of annotated fakes (the ``active_stream``, restricted to the N_active selected fakes
  with their masks) beside training data from the other streams, so each step has an attention term. The paper
  does not say how its batches were composed; this reading is for when the sparse default under-trains attention.

Before this schedule, stage 2 read only the reals plus the N_active fakes, the fakes oversampled to balance the
reals, for stage-1-length epochs: L_latent then saw N_active fakes repeated thousands of times, not D.

Frozen parts in stage 2 (Sec. 3.1.4, "we freeze the parameters of decoder and discriminator"): only ``encoder.*``
parameters train, and the batch-norm layers outside the encoder run in eval mode (``Phase.freeze_norm``). The decoder
still runs in ``forward`` (x̂ is an output), so without this its running statistics would drift in stage 2.

Readings of Algorithm 1 chosen here (the paper leaves them open):

* **One selection.** Algorithm 1 prints lines 9–11 (fit Eq. 10, select N_active, request masks) inside the stage-2
  ``while`` loop, which read literally would select again (and ask for new masks) every stage-2 epoch. The text
  (Sec. 2.4: "we exploit the active learning framework to select out challenging candidates to get their pixel-wise
  forgery masks. Then we reduce the learning rate ... and fine-tune") and the experiments (LAE_100/400/800 = the
  number of annotations, Sec. 3.2.2) describe one selection of N_active fakes, so the selection runs once, between
  the stages.
* **Stage-1 length and early stop.** Algorithm 1 runs stage 1 "while t ≤ max_iter1" without giving max_iter1, and
  Sec. 3.1.4 (LAE's implementation details) says nothing of early stopping. Sec. 3.1.2 says, of all the compared
  models ("For fair comparison, all models are trained on the same training data ..."): "We train the models for a
  maximum of 40 epochs with early stopping (patience=10). Validation loss is used as criteria for early stopping."
  Stage 2's length is given apart (Sec. 3.1.4: "4 and 7 epochs work well for 100 and 500 active images"), so the
  rule is read as stage 1's: ``stage1_epochs`` = 40 at most, and with ``stage1_patience`` = 10 stage 1 ends once
  10 epochs have passed since its validation loss last improved (:meth:`LAESchedule.on_validation`; the loss is
  LAE's stage-1 objective, Eq. 2, ``LAE.validation_loss``); the selection then runs and stage 2 trains its
  ``stage2_epochs`` (4 for N_active = 100), after which the run ends (:meth:`LAESchedule.stop_due`). With
  ``selection="none"`` (Table 4's stage-1-only ablations) the stage-1 early stop ends the run. Stage 2 starts from
  the weights stage 1 stopped with, not its best epoch's (the paper says nothing of restoring them). ``best/`` is
  still chosen by the run's ``train.select_metric`` (validation AUC in the ``lae`` recipe). The loop's
  ``train.early_stop_patience`` would end the whole run instead, so the ``lae`` recipes leave it unset.
* **One Adam.** Stage 2 continues the stage-1 Adam (its moments for the encoder's parameters carry over) at the
  learning rate ÷10 (Algorithm 1, line 7); the paper does not say whether its stage-2 Adam is a fresh one.

The oracle is :class:`dflab.train.active.StreamMaskOracle` over the stage-1 stream (the dataset's masks, or the
difference to the original crop); pass another oracle object to the constructor to ask a person instead.
"""

from __future__ import annotations

import dataclasses
import json
import math
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
    stream: the training-data stream (stage 1, selection, and stage 2 by default).
    stage2_stream: the stream or ``data.mixes`` entry stage 2 draws from (``None`` = ``stream``; module docstring).
    active_stream: a stream restricted to the selected fakes after selection (only for a mixed stage 2).
    linear_epochs, linear_lr: the Eq. 10 linear model's SGD (paper: 5 epochs, 1e-3).
    max_score_items: cap on the items scored for selection (``None`` = all rows of the stage-1 stream).
    stage1_patience: end stage 1 once this many epochs have passed since the validation loss last improved (Sec.
        3.1.2: 10); ``None`` = always ``stage1_epochs``.
    stage2_epochs: end the run after this many stage-2 epochs (Sec. 3.1.4: 4 for 100 active images); ``None`` =
        run to ``train.epochs``.
    oracle: a :class:`~dflab.train.active.MaskOracle` (default: the stage-1 stream's own masks).
    """

    def __init__(
        self,
        stage1_epochs: int = 1,
        n_active: int = 100,
        selection: str = "active",
        top_k: int = 10,
        decay_epochs: int = 3,
        stream: str = "default",
        stage2_stream: str | None = None,
        active_stream: str | None = None,
        linear_epochs: int = 5,
        linear_lr: float = 1e-3,
        max_score_items: int | None = None,
        stage1_patience: int | None = None,
        stage2_epochs: int | None = None,
        seed: int = 0,
        oracle: MaskOracle | None = None,
    ) -> None:
        super().__init__(stage1_epochs=stage1_epochs, n_active=n_active, selection=selection)
        if selection not in ("active", "random", "none"):
            raise ValueError(f"selection must be 'active', 'random' or 'none', got {selection!r}")
        if active_stream is not None and stage2_stream in (None, stream):
            raise ValueError("active_stream needs a stage2_stream mix that draws from it (see the module docstring)")
        self.stage1_epochs, self.n_active, self.selection, self.top_k = stage1_epochs, n_active, selection, top_k
        self.decay_epochs, self.stream = decay_epochs, stream
        self.stage2_stream, self.active_stream = stage2_stream or stream, active_stream
        self.linear_epochs, self.linear_lr, self.max_score_items, self.seed = (
            linear_epochs,
            linear_lr,
            max_score_items,
            seed,
        )
        if stage1_patience is not None and stage1_patience < 1:
            raise ValueError(f"stage1_patience must be >= 1 or None, got {stage1_patience}")
        if stage2_epochs is not None and stage2_epochs < 1:
            raise ValueError(f"stage2_epochs must be >= 1 or None, got {stage2_epochs}")
        self.stage1_patience, self.stage2_epochs = stage1_patience, stage2_epochs
        self.oracle = oracle
        # stage 1's early stop: best validation loss so far, the epoch it was reached, and the stop once it happened
        self.stage1_best: float | None = None
        self.stage1_best_epoch = 0
        self.stage1_stop: dict[str, Any] | None = None
        self.in_stage2 = False
        self.stage2_epochs_done = 0
        self.selected: Selection | None = None

    def streams(self) -> list[str]:
        if self.selection == "none" or self.stage2_stream == self.stream:
            return [self.stream]
        return [self.stream, self.stage2_stream]

    def phase(self, step: int, total_steps: int) -> Phase:
        if not self.in_stage2:
            return Phase(name="stage1", stream=self.stream, loss_kwargs={"stage": "stage1"})
        scale = 0.1 * 0.1 ** (self.stage2_epochs_done // self.decay_epochs)
        # Sec. 3.1.4 freezes the decoder and the discriminator: their parameters (``trainable``) and, since the
        # decoder still runs in ``forward``, their BatchNorm running statistics (``freeze_norm``)
        return Phase(
            name="stage2", stream=self.stage2_stream, trainable=("encoder.",), loss_kwargs={"stage": "stage2"},
            lr_scale=scale, freeze_norm=True,
        )  # fmt: skip

    def on_start(self, trainer: Any) -> None:
        """Stage 1 needs no forgery mask (Algorithm 1, lines 3–6: L1 = α1·L_rec + α2·L_latent; masks are requested for
        the N_active selected fakes only, Sec. 2.4). The streams LAE reads start with no annotated mask, so a dataset
        fake needs neither a mask file nor its original crop to train stage 1, and no mask is read or computed
        for it. Only ``attention_in_stage1`` (not the paper's LAE) keeps every fake's mask in stage 1."""
        if getattr(trainer.model, "attention_in_stage1", False):
            return
        for name in {self.stream, *self._stage2_streams(trainer)}:
            stream = trainer.streams.get(name)
            if stream is not None and stream.annotations is None:
                stream.annotations = {}

    # ------------------------------------------------------------------ selection between the stages
    def on_epoch_end(self, trainer: Any, epoch: int) -> None:
        if self.in_stage2:
            self.stage2_epochs_done += 1
            return
        if epoch + 1 < self.stage1_epochs or self.selection == "none":
            return
        self.select(trainer)
        self.in_stage2 = True

    def on_validation(self, trainer: Any, metrics: dict[str, Any]) -> None:
        """Stage 1's early stop (Sec. 3.1.2, see the module docstring): track the best validation ``loss``; once
        ``stage1_patience`` epochs have passed without a lower one, end stage 1 here (selection, then stage 2)."""
        if self.in_stage2 or self.stage1_patience is None or self.stage1_stop is not None:
            return
        epoch, loss = int(metrics["epoch"]), float(metrics.get("loss", float("nan")))
        if math.isfinite(loss) and (self.stage1_best is None or loss < self.stage1_best):
            self.stage1_best, self.stage1_best_epoch = loss, epoch
        if epoch - self.stage1_best_epoch < self.stage1_patience:
            return
        self.stage1_stop = {"epoch": epoch, "best_epoch": self.stage1_best_epoch, "best_loss": self.stage1_best}
        if getattr(trainer, "is_main", True):  # once under DDP (every rank decides alike: gathered metrics)
            print(
                f"[lae] stage 1 stopped early after epoch {epoch}: no lower validation loss since epoch "
                f"{self.stage1_best_epoch} (patience {self.stage1_patience})",
                file=sys.stderr,
            )
        if self.selection != "none":
            self.select(trainer)
            self.in_stage2 = True

    def stop_due(self, trainer: Any) -> str | None:
        """The run ends after ``stage2_epochs`` stage-2 epochs, or with stage 1's early stop when there is no
        stage 2 (``selection="none"``)."""
        if self.in_stage2 and self.stage2_epochs is not None and self.stage2_epochs_done >= self.stage2_epochs:
            return f"LAE stage 2 done ({self.stage2_epochs_done} epochs)"
        if self.selection == "none" and self.stage1_stop is not None:
            return f"LAE stage 1 stopped early after epoch {self.stage1_stop['epoch']} (no stage 2: selection 'none')"
        return None

    def select(self, trainer: Any) -> Selection:
        """Score the stage-1 stream's dataset items, choose N_active fakes, fetch masks, annotate the stage-2 data."""
        from dflab.train.data import face_key

        src = trainer.streams[self.stream]
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
        oracle = self.oracle or StreamMaskOracle(src)
        masks = oracle.request(sel.keys)
        if not masks:
            raise RuntimeError(f"the mask oracle labelled none of the {len(sel.keys)} selected fakes")
        self._annotate(trainer, self._write_masks(trainer, masks))
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
            f"{int((labels == 1).sum())} (masks: {len(masks)}); stage 2 fine-tunes the encoder only on "
            f"{self.stage2_stream!r}, the attention loss on the annotated fakes",
            file=sys.stderr,
        )
        return sel

    @staticmethod
    def _mask_path(trainer: Any, key: str) -> Path:
        return Path(getattr(trainer, "run_dir", ".")).resolve() / "active_masks" / (key.replace("/", "__") + ".png")

    def _write_masks(self, trainer: Any, masks: dict[str, np.ndarray]) -> dict[str, str]:
        import cv2

        out: dict[str, str] = {}
        for key, mask in masks.items():
            path = self._mask_path(trainer, key)
            path.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(path), np.clip(mask * 255.0, 0, 255).astype(np.uint8))
            out[key] = str(path)
        return out

    def _stage2_streams(self, trainer: Any) -> list[str]:
        """The streams stage 2 reads: ``stage2_stream`` or, when it names a mix, the mix's streams."""
        cfg = getattr(trainer, "cfg", None)
        mixes = cfg.data.mixes if cfg is not None else {}
        return list(mixes[self.stage2_stream]) if self.stage2_stream in mixes else [self.stage2_stream]

    def _annotate(self, trainer: Any, paths: dict[str, str]) -> None:
        """Give the stage-2 streams the annotated masks; restrict ``active_stream`` to the annotated fakes."""
        from dflab.train.data import face_key

        names = self._stage2_streams(trainer)
        if self.active_stream is not None and self.active_stream not in names:
            raise RuntimeError(f"active_stream {self.active_stream!r} is not read by stage 2 ({names})")
        for name in names:
            stream = trainer.streams[name]
            stream.annotations = dict(paths)
            if name == self.active_stream:
                stream.rows = [r for r in stream.rows if r.label == 1 and face_key(r) in paths]
                if not stream.rows:
                    raise RuntimeError(f"active selection left no annotated fake in stream {name!r}")

    def on_resume(self, trainer: Any) -> None:
        """A run resumed in stage 2 annotates its (fresh) stage-2 streams again, from the masks written under
        ``<run_dir>/active_masks/`` at selection time (no oracle is asked twice)."""
        if not (self.in_stage2 and self.selected):
            return
        paths = {}
        for key in self.selected.keys:
            path = self._mask_path(trainer, key)
            if path.exists():
                paths[key] = str(path)
        if not paths:
            raise RuntimeError("resuming LAE stage 2: none of the selected fakes' masks is under active_masks/")
        self._annotate(trainer, paths)

    def state_dict(self) -> dict[str, Any]:
        return {
            "in_stage2": self.in_stage2,
            "stage2_epochs_done": self.stage2_epochs_done,
            "stage1_best": self.stage1_best,
            "stage1_best_epoch": self.stage1_best_epoch,
            "stage1_stop": self.stage1_stop,
            "selected": dataclasses.asdict(self.selected) if self.selected else None,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.in_stage2 = bool(state.get("in_stage2", False))
        self.stage2_epochs_done = int(state.get("stage2_epochs_done", 0))
        self.stage1_best = state.get("stage1_best")
        self.stage1_best_epoch = int(state.get("stage1_best_epoch", 0))
        self.stage1_stop = state.get("stage1_stop")
        sel = state.get("selected")
        self.selected = Selection(**sel) if sel else None


SCHEDULES.add("lae", LAESchedule)
