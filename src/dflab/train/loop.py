"""The one training loop. It never branches on a detector's or method's name: everything method-specific comes from
the detector (``compute_loss``, ``targets``) and the schedule object (:class:`~dflab.train.schedule.Phase` per step,
``on_epoch_end`` hook).

Per step: ``phase = schedule.phase(step, total)`` → draw a batch from ``streams[phase.stream]`` (or, when
``phase.stream`` names a ``data.mixes`` entry, the mix's fixed number of items from each of its streams,
concatenated — :class:`_MixIter`) → set
``requires_grad`` from ``phase.trainable`` → ``model.prepare_batch(batch)`` (identity unless the detector transforms
its training batch, e.g. RFM's erasing) → forward → ``compute_loss(batch, out, **phase.loss_kwargs)`` → backward
→ optimiser step at ``lr(epoch) · phase.lr_scale`` → ``model.after_optimizer_step()`` (identity unless the detector
constrains its weights, e.g. SuppressNet's constrained convolution). Per epoch: ``schedule.on_epoch_end(trainer,
epoch)``, validation on the ``data.val`` stream (never ``test``), ``best/`` when the selection metric improves,
``schedule.on_validation(trainer, metrics)``, ``last/`` always; with ``train.early_stop_patience`` the run ends once
that many epochs pass without a new ``best``, and it ends when ``schedule.stop_due(trainer)`` gives a reason.

Run directory::

    config.yaml   resolved recipe          run.json   versions, seed, git SHA, command, world size
    metrics.csv   per-step log             val.csv    per-epoch validation
    tb/           TensorBoard              last/      model.safetensors + card.json + state.pt (resumable)
    best/         model.safetensors + card.json (chosen on the validation split)

Checkpoints are written whole: ``last/`` (weights, card, state) and ``best/`` go to a temporary folder renamed into
place (:func:`dflab.models.checkpoint.replace_dir`), so a kill leaves the previous checkpoint or the new one, never
step-30 weights beside a step-20 optimiser. Weights, card and state carry one ``checkpoint_id`` (and the card the
step); ``--resume`` refuses a ``last/`` whose parts disagree (:class:`~dflab.errors.CheckpointError`, exit 2).

Resume: ``state.pt`` (loaded with ``weights_only=True``) holds the optimiser, schedule state, per-stream
(epoch, batches consumed) — per component stream for a mix —, torch/Python RNG states and the step; the learning
rate is a pure function of the epoch.
Item randomness is derived from the plan (see :mod:`dflab.train.data`), so a run killed at any point and resumed
from ``last/`` ends with the same weights as an uninterrupted run on CPU. (Tests send the SIGKILL from inside the
run after a given step with ``DFLAB_TEST_SIGKILL_AT_STEP=N``, so the kill point is exact.)

A phase's ``trainable`` prefixes switch ``requires_grad``; batch-norm layers of frozen stages still update their
running statistics (the model stays in train mode) unless the phase sets ``freeze_norm`` (LiSiam's phases do), which
puts them in eval mode (:func:`dflab.train.schedule.freeze_norm_stats`).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import pickle
import platform
import random
import signal
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch.utils.data import DataLoader

from dflab.data.manifest import Manifest
from dflab.errors import CheckpointError, ConfigError
from dflab.models.base import Detector, build_detector
from dflab.models.checkpoint import (
    WEIGHTS_NAME,
    check_pair,
    git_sha,
    load_weights,
    new_checkpoint_id,
    read_card,
    replace_dir,
    save_detector,
    settled_dir,
)
from dflab.train import ddp
from dflab.train.config import Recipe, recipe_to_dict
from dflab.train.data import FaceStream, PlanSampler, build_stream, collate, concat_batches, mix_counts
from dflab.train.schedule import freeze_norm_stats

STATE_NAME = "state.pt"


def versions() -> dict[str, str]:
    """Versions of the packages a result depends on."""
    out = {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__}
    from dflab import __version__

    out["dflab"] = __version__
    from dflab.compat import ensure_torchvision

    ensure_torchvision()  # before timm (CPU torch + CUDA torchvision wheel)
    for mod in ("timm", "albumentations", "cv2"):
        try:
            out[mod] = __import__(mod).__version__
        except ImportError:
            out[mod] = "absent"
    return out


def lr_factor(cfg: Recipe, epoch: int) -> float:
    """Multiplier of ``optim.lr`` in ``epoch`` (0-based), a pure function (so resuming needs no scheduler state)."""
    s = cfg.lr_schedule
    if s.warmup_epochs and epoch < s.warmup_epochs:
        return (epoch + 1) / (s.warmup_epochs + 1)
    e = epoch - s.warmup_epochs
    if s.name == "cosine":
        t_max = s.t_max or max(1, cfg.train.epochs - s.warmup_epochs)
        floor = s.eta_min / cfg.optim.lr
        # CosineAnnealingLR's closed form, periodic in 2·T_max as PyTorch's is (BiG-Arts §4.1: T_max = 40)
        return floor + (1 - floor) * (1 + math.cos(math.pi * e / t_max)) / 2
    if s.name == "step":
        return s.gamma ** (e // s.step_size)
    if s.name == "multistep":
        return s.gamma ** sum(1 for m in s.milestones if e >= m)
    return 1.0


def check_state(card: dict[str, Any], state: dict[str, Any], where: Path) -> None:
    """The optimiser state belongs to the weights: same ``checkpoint_id``, same step.

    Runs written before checkpoint ids existed have neither id; their card's ``training.steps_done`` must then
    equal the state's step.

    Raises:
        CheckpointError: weights/card and state from different saves (resuming would continue silently from a
            step the weights are not at).
    """
    ids = (card.get("checkpoint_id"), state.get("checkpoint_id"))
    card_step = (card.get("training") or {}).get("steps_done")
    problems = []
    if any(ids) and ids[0] != ids[1]:
        problems.append(f"checkpoint_id {ids[0]} (weights, card) vs {ids[1]} (state)")
    if card_step is not None and int(card_step) != int(state.get("step", -1)):
        problems.append(f"step {card_step} (weights, card) vs {state.get('step')} (state)")
    if problems:
        raise CheckpointError(
            f"{where}: weights and optimiser state come from different saves ({'; '.join(problems)}); resuming "
            "would silently mix them. Restore a consistent last/ (model.safetensors, card.json and state.pt of "
            "one save) or start a new run"
        )


class _StreamIter:
    """Infinite iterator over a stream; remembers (stream epoch, batches consumed) for exact resume."""

    def __init__(self, stream: FaceStream, batch_size: int, workers: int, info: ddp.DistInfo) -> None:
        self.stream = stream
        self.batch_size = batch_size
        self.workers = workers
        self.sampler = PlanSampler(stream, rank=info.rank, world=info.world, shuffle=True, pad=True)
        self.epoch = 0
        self.consumed = 0
        self._it = None

    def batches_per_epoch(self) -> int:
        self.sampler.set_epoch(self.epoch)
        self.sampler.set_start(0)
        return len(self.sampler) // self.batch_size

    def _open(self) -> None:
        self.sampler.set_epoch(self.epoch)
        self.sampler.set_start(self.consumed * self.batch_size)
        loader = DataLoader(
            self.stream,
            batch_size=self.batch_size,
            sampler=self.sampler,
            num_workers=self.workers,
            collate_fn=collate,
            drop_last=True,
            persistent_workers=False,
            # its own generator, so opening a loader never draws from the global torch RNG (exact resume)
            generator=torch.Generator().manual_seed(0),
        )
        self._it = iter(loader)

    def next(self) -> dict[str, Any]:
        for _ in range(2):
            if self._it is None:
                self._open()
            try:
                batch = next(self._it)
            except StopIteration:
                self._it = None
                self.epoch += 1
                self.consumed = 0
                continue
            self.consumed += 1
            return batch
        raise ConfigError(f"stream {self.stream.name!r} has fewer items than one batch ({self.batch_size})")

    def state(self) -> dict[str, int]:
        return {"epoch": self.epoch, "consumed": self.consumed}

    def load(self, state: dict[str, int]) -> None:
        self.epoch, self.consumed = int(state["epoch"]), int(state["consumed"])
        self._it = None


class _MixIter:
    """A mixed stream (``DataConfig.mixes``, BiG-Arts §4.1): every batch holds ``counts[name]`` items of each stream,
    drawn from that stream's own :class:`_StreamIter` (batch size = its count) and concatenated in order, with a
    ``stream`` key naming each item's stream. State = the component iterators' states (exact resume)."""

    def __init__(self, parts: dict[str, _StreamIter]) -> None:
        self.parts = parts

    def batches_per_epoch(self) -> int:
        """Batches until the first component stream completes a pass (no item repeats within an epoch)."""
        return min(it.batches_per_epoch() for it in self.parts.values())

    def next(self) -> dict[str, Any]:
        batches = []
        for name, it in self.parts.items():
            b = it.next()
            b["stream"] = [name] * it.batch_size
            batches.append(b)
        return concat_batches(batches)

    def state(self) -> dict[str, dict[str, int]]:
        return {n: it.state() for n, it in self.parts.items()}

    def load(self, state: dict[str, dict[str, int]]) -> None:
        for n, s in state.items():
            if n in self.parts:
                self.parts[n].load(s)


class Trainer:
    """Builds everything a recipe names and runs the loop. Schedules receive it in ``on_epoch_end``.

    Attributes:
        cfg: the resolved recipe.
        model: the detector (unwrapped; ``self.net`` is the DDP wrapper when distributed).
        streams: name -> :class:`~dflab.train.data.FaceStream` of every stream the schedule uses (a mix's
            component streams under their own names).
        val_stream: the validation stream or ``None``.
        manifest: the open manifest.
        run_dir: the run directory.
        schedule: the schedule object.
        dist: rank/world info.
    """

    def __init__(self, cfg: Recipe, run_dir: str | Path, *, resume: bool = False, argv: list[str] | None = None):
        import dflab.train.schedules  # noqa: F401  (fills SCHEDULES)
        from dflab.train.schedule import SCHEDULES

        self.cfg = cfg
        self.run_dir = Path(run_dir)
        t = cfg.train
        if t.threads:
            torch.set_num_threads(t.threads)
        dev = t.device if t.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
        self.dist = ddp.setup(dev.split(":")[0])
        if dev == "cuda" and self.dist.enabled:
            dev = f"cuda:{self.dist.local_rank}"
        self.device = torch.device(dev)
        self.is_main = self.dist.is_main

        self._seed_all(t.seed)
        self.model: Detector = build_detector(cfg.model.name, **cfg.model.kwargs)
        if self.model.input_spec.size != cfg.data.size:
            # the crops are resized to data.size: the card must say so, or a loaded checkpoint would be fed wrongly
            self.model.input_spec = dataclasses.replace(self.model.input_spec, size=cfg.data.size)
        self.pretrained_report: dict[str, Any] = {}
        self._load_pretrained(resume=resume)
        self.model.to(self.device)
        if t.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.net: torch.nn.Module = self.model
        if self.dist.enabled:
            self.net = torch.nn.parallel.DistributedDataParallel(
                self.model,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=True,  # schedules freeze stages / switch heads per phase
            )

        self.schedule = SCHEDULES.get(cfg.schedule.name)(**cfg.schedule.kwargs)
        if not cfg.data.manifest:
            raise ConfigError("data.manifest is not set (pass --data.manifest PATH)")
        self.manifest = Manifest(cfg.data.manifest, readonly=True)
        spec = self.model.input_spec
        targets = frozenset(self.model.targets)
        self.streams: dict[str, FaceStream] = {}
        self._iters: dict[str, _StreamIter | _MixIter] = {}

        def stream(name: str) -> FaceStream:
            if name not in self.streams:
                self.streams[name] = build_stream(
                    self.manifest, cfg.data.streams[name], cfg.data, targets=targets, mean=spec.mean, std=spec.std,
                    seed=t.seed, name=name,
                )  # fmt: skip
            return self.streams[name]

        for name in self.schedule.streams():
            if name in cfg.data.mixes:
                mix = cfg.data.mixes[name]
                counts = mix_counts(mix, cfg.data.batch_size)
                self._iters[name] = _MixIter(
                    {n: _StreamIter(stream(n), c, cfg.data.num_workers, self.dist) for n, c in counts.items()}
                )
                continue
            if name not in cfg.data.streams:
                raise ConfigError(f"schedule {cfg.schedule.name!r} draws from stream {name!r}, not in data.streams")
            bs = cfg.data.streams[name].batch_size or cfg.data.batch_size
            self._iters[name] = _StreamIter(stream(name), bs, cfg.data.num_workers, self.dist)
        self.schedule.on_start(self)
        self.val_stream = None
        if cfg.data.val is not None:
            self.val_stream = build_stream(
                self.manifest, cfg.data.val, cfg.data, targets=frozenset(), mean=spec.mean, std=spec.std,
                seed=t.seed + 1, name="val",
            )  # fmt: skip

        crops = {r.crop_size for st in self.streams.values() for r in st.rows if r.crop_size}
        if len(crops) == 1 and (crop := crops.pop()) != self.model.input_spec.size:
            # the prepared crops are resized to data.size: the scanner must cut faces at the prepared size and resize
            # them the same way (InputSpec.crop_size), or it feeds the model sharper faces than it was trained on
            self.model.input_spec = dataclasses.replace(self.model.input_spec, crop_size=crop)
        self.sampling_warnings = self._check_sampling()
        self.optimizer = self._make_optimizer()
        self.steps_per_epoch = t.steps_per_epoch or self._iters["default"].batches_per_epoch()
        if self.steps_per_epoch < 1:
            raise ConfigError("the default stream has fewer items than one batch")
        self.total_steps = self.steps_per_epoch * t.epochs
        self.step = 0
        self.epoch = 0
        self.best: dict[str, Any] = {"metric": None, "epoch": None}
        self.early_stop: dict[str, Any] | None = None  # set by fit when train.early_stop_patience ends the run
        self.history: list[dict[str, Any]] = []
        self._writer = None
        self._argv = argv or sys.argv
        if resume:
            self._load_state()
        elif self.is_main:
            self._init_run_dir()
        ddp.barrier(self.dist)

    # ------------------------------------------------------------------ set-up
    @staticmethod
    def _seed_all(seed: int) -> None:
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)

    def _load_pretrained(self, resume: bool = False) -> None:
        """``model.pretrained`` into ``model.pretrained_prefix``, then the detector's own
        :meth:`~dflab.models.base.Detector.pretrained_parts`. A spec that cannot be had raises
        :class:`~dflab.errors.CheckpointError` naming the ways to get it and the ``none`` opt-out; ``none`` trains
        from random weights with a warning. ``run.json`` records what was loaded per prefix. A resumed run loads
        nothing here (``last/`` holds the weights), but a missing spec is still an error."""
        from dflab.models.backbones import (
            NO_PRETRAINED,
            load_pretrained,
            pretrained_help,
            resolve_pretrained,
            timm_pretrained_norm,
        )

        m = self.cfg.model
        jobs: list[tuple[str, str, str]] = []  # (prefix, spec, config key)
        if m.pretrained:
            jobs.append((m.pretrained_prefix, m.pretrained, "model.pretrained"))
        for prefix, (kwarg, spec) in self.model.pretrained_parts().items():
            key = f"model.kwargs.{kwarg}"
            if spec is None:
                raise CheckpointError(pretrained_help("(not set)", f"{prefix} needs pretrained weights", key=key))
            jobs.append((prefix, spec, key))
        for prefix, spec, key in jobs:
            name = prefix or "(model)"
            if spec == NO_PRETRAINED:
                self.pretrained_report[name] = {"spec": spec, "loaded": 0}
                if self.is_main:
                    print(
                        f"[train] {key}={NO_PRETRAINED}: {name} starts from random weights "
                        "(said explicitly; from-scratch recipes say it, and a recipe whose paper starts from "
                        "pretrained weights is then no longer the paper's)",
                        file=sys.stderr,
                    )
                continue
            if resume:
                continue
            if key == "model.pretrained":
                target = self.model
                for part in [p for p in prefix.split(".") if p]:
                    target = getattr(target, part)
                r = load_pretrained(
                    target, spec, allow_missing=m.allow_missing,
                    allow_unexpected=("classifier.", "fc.", "head.", "pre_logits.", *m.allow_unexpected),
                )  # fmt: skip
            else:
                r = self.model.load_pretrained_part(prefix, resolve_pretrained(spec))
            self.pretrained_report[name] = {"spec": spec, **{k: len(v) for k, v in r.items()}}
            norm = timm_pretrained_norm(spec) if key == "model.pretrained" else None
            spec_in = self.model.input_spec
            if norm is not None and not np.allclose([*norm[0], *norm[1]], [*spec_in.mean, *spec_in.std], atol=1e-3):
                # the weights carry their preprocessing: a detector normalising otherwise feeds them shifted inputs
                warning = f"{spec} was trained with mean/std {norm}; the detector uses {spec_in.mean}/{spec_in.std}"
                self.pretrained_report[name]["warning"] = warning
                if self.is_main:
                    print(f"[train] warning: {warning}", file=sys.stderr)
            if self.is_main:
                print(
                    f"[train] pretrained {spec} -> {name}: {len(r['loaded'])} tensors, "
                    f"missing {r['missing'][:5]}, unexpected {r['unexpected'][:5]}",
                    file=sys.stderr,
                )

    def _check_sampling(self) -> list[str]:
        """Warn when the manifest does not hold the frames per video the recipe's paper samples (``data.sampling``)."""
        from dflab.data.sampling import train_sampling_warnings

        d = self.cfg.data
        default = d.streams.get("default")
        warnings = train_sampling_warnings(
            d.sampling.model_dump() if d.sampling else None,
            train_rows=[r for s in self.streams.values() for r in s.rows],
            train_frames_per_video=default.frames_per_video if default else None,
            val_rows=self.val_stream.rows if self.val_stream else (),
            val_frames_per_video=d.val.frames_per_video if d.val else None,
            settings=[self.manifest.get_meta("settings")],
        )
        if self.is_main:
            for w in warnings:
                print(f"[train] warning: {w}", file=sys.stderr)
        return warnings

    def _make_optimizer(self) -> torch.optim.Optimizer:
        o = self.cfg.optim
        params = [p for p in self.model.parameters()]
        if o.name == "adam":
            return torch.optim.Adam(params, lr=o.lr, betas=o.betas, weight_decay=o.weight_decay)
        if o.name == "adamw":
            return torch.optim.AdamW(params, lr=o.lr, betas=o.betas, weight_decay=o.weight_decay)
        return torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)

    def _init_run_dir(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if (settled_dir(self.run_dir / "last") / STATE_NAME).exists():
            raise ConfigError(f"{self.run_dir} already holds a run; pass --resume to continue it")
        (self.run_dir / "config.yaml").write_text(yaml.safe_dump(recipe_to_dict(self.cfg), sort_keys=False))
        info = {
            "seed": self.cfg.train.seed,
            "git_sha": git_sha(),
            "versions": versions(),
            "command": self._argv,
            "world_size": self.dist.world,
            "device": str(self.device),
            "host": platform.node(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "pretrained": self.pretrained_report,
            "streams": {n: len(s.rows) for n, s in self.streams.items()},
            "val_rows": len(self.val_stream.rows) if self.val_stream else 0,
            "warnings": self.sampling_warnings,
        }
        (self.run_dir / "run.json").write_text(json.dumps(info, indent=2))

    # ------------------------------------------------------------------ logging
    def log(self, row: dict[str, Any], file: str = "metrics.csv") -> None:
        """Append a row to a CSV in the run dir (rank 0) and its numbers to TensorBoard."""
        if not self.is_main:
            return
        path = self.run_dir / file
        fields: list[str] = []
        if path.exists():
            with open(path, newline="") as fh:
                fields = next(csv.reader(fh), [])
        extra = [k for k in row if k not in fields]
        if extra or not fields:
            # a phase that logs new loss parts: rewrite once with the union of columns (never misalign them)
            old_rows = []
            if fields:
                with open(path, newline="") as fh:
                    old_rows = list(csv.DictReader(fh))
            fields = fields + extra
            with open(path, "w", newline="") as fh:
                w = csv.DictWriter(fh, fieldnames=fields)
                w.writeheader()
                w.writerows(old_rows)
        with open(path, "a", newline="") as fh:
            csv.DictWriter(fh, fieldnames=fields).writerow(row)
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(self.run_dir / "tb"))
        tag = Path(file).stem
        for k, v in row.items():
            if isinstance(v, int | float) and k not in ("step", "epoch") and math.isfinite(float(v)):
                self._writer.add_scalar(f"{tag}/{k}", v, row.get("step", 0))

    def _truncate_logs(self) -> None:
        """Drop log rows written after the checkpoint a resumed run restarts from."""
        # val.csv rows carry the number of epochs completed, so the checkpoint's own last validation has epoch == epoch
        for name, key, limit in (("metrics.csv", "step", self.step), ("val.csv", "epoch", self.epoch)):
            path = self.run_dir / name
            if not path.exists():
                continue
            with open(path, newline="") as fh:
                rows = list(csv.DictReader(fh))
            if not rows:
                continue
            fields = list(rows[0])
            keep = [r for r in rows if int(r[key]) <= limit]
            with open(path, "w", newline="") as fh:
                w = csv.DictWriter(fh, fieldnames=fields)
                w.writeheader()
                w.writerows(keep)

    # ------------------------------------------------------------------ checkpoints
    def card(self, metrics: dict[str, Any] | None = None) -> dict[str, Any]:
        c = self.cfg
        return {
            "training": {
                "recipe": c.name,
                "manifest": str(Path(c.data.manifest).resolve()) if c.data.manifest else None,
                "streams": {n: s.model_dump(mode="json") for n, s in c.data.streams.items()},
                "mixes": {n: dict(m) for n, m in c.data.mixes.items()},
                "val": c.data.val.model_dump(mode="json") if c.data.val else None,
                "sampling": c.data.sampling.model_dump(mode="json") if c.data.sampling else None,
                "seed": c.train.seed,
                # what picked best/ and what early stopping watched; ``loss`` in the metrics is ``val_loss``
                "select_metric": c.train.select_metric,
                "early_stop_patience": c.train.early_stop_patience,
                "val_loss": self.model.validation_loss_name,
                "epochs_done": self.epoch,
                "steps_done": self.step,
            },
            "metrics": metrics or {},
        }

    def save_last(self) -> None:
        """Write ``last/`` (weights, card, resumable state) as one folder, swapped in whole."""
        if not self.is_main:
            return
        checkpoint_id = new_checkpoint_id()
        np_state = np.random.get_state()
        state = {
            "checkpoint_id": checkpoint_id,
            "step": self.step,
            "epoch": self.epoch,
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "streams": {n: it.state() for n, it in self._iters.items()},
            "best": dict(self.best),
            "history": list(self.history),
            "rng": {
                "torch": torch.get_rng_state(),
                "python": random.getstate(),
                "numpy": (np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]),
            },
        }
        if torch.cuda.is_available():
            state["rng"]["cuda"] = torch.cuda.get_rng_state_all()
        card = self.card(self.history[-1] if self.history else None)
        with replace_dir(self.run_dir / "last") as tmp:
            save_detector(self.model, tmp, card, checkpoint_id=checkpoint_id, atomic=False)
            torch.save(state, tmp / STATE_NAME)

    def _load_state(self) -> None:
        last = settled_dir(self.run_dir / "last")  # a kill between replace_dir's two renames left ``.last.old``
        if not (last / STATE_NAME).exists():
            raise ConfigError(f"nothing to resume in {self.run_dir} (no last/{STATE_NAME})")
        card = read_card(last)
        try:
            state = torch.load(last / STATE_NAME, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as exc:
            raise CheckpointError(f"{last / STATE_NAME}: unreadable training state ({exc})") from None
        meta = load_weights(self.model, last / WEIGHTS_NAME)
        check_pair(card, meta, last)
        check_state(card, state, last)
        self.model.to(self.device)
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        self.schedule.on_resume(self)
        for n, s in state["streams"].items():
            if n in self._iters:
                self._iters[n].load(s)
        self.step, self.epoch = int(state["step"]), int(state["epoch"])
        self.best = dict(state["best"])
        self.history = list(state["history"])
        rng = state["rng"]
        torch.set_rng_state(rng["torch"])
        random.setstate(rng["python"])
        npn = rng["numpy"]
        np.random.set_state((npn[0], npn[1].numpy().astype(np.uint32), *npn[2:]))
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        if self.is_main:
            self._truncate_logs()
            print(f"[train] resumed {self.run_dir} at epoch {self.epoch}, step {self.step}", file=sys.stderr)

    # ------------------------------------------------------------------ the loop
    def _autocast(self):
        a = self.cfg.train.amp
        dt = self.device.type
        if a == "bf16":
            return torch.autocast(dt, dtype=torch.bfloat16)
        if (a == "fp16" or a == "auto") and dt == "cuda":
            return torch.autocast("cuda", dtype=torch.float16)
        return torch.autocast(dt, enabled=False)

    def _set_trainable(self, prefixes: tuple[str, ...] | None) -> None:
        model = self.model.module if hasattr(self.model, "module") else self.model
        frozen = tuple(
            getattr(model, "frozen_prefixes", ())
        )  # a detector's always-frozen parts (e.g. a foundation encoder)
        for name, p in model.named_parameters():
            p.requires_grad_(
                (prefixes is None or name.startswith(prefixes)) and not (frozen and name.startswith(frozen))
            )

    def _to_device(self, batch: dict[str, Any]) -> dict[str, Any]:
        out = {}
        for k, v in batch.items():
            if isinstance(v, torch.Tensor):
                v = v.to(self.device, non_blocking=True)
                if k in ("image", "degraded") and self.cfg.train.channels_last:
                    v = v.contiguous(memory_format=torch.channels_last)
            out[k] = v
        return out

    def train_step(self, phase: Any, scaler: Any) -> dict[str, float]:
        """One optimisation step of ``phase``; returns the logged loss parts."""
        batch = self._to_device(self._iters[phase.stream].next())
        self._set_trainable(phase.trainable)
        lr = self.cfg.optim.lr * lr_factor(self.cfg, self.epoch) * phase.lr_scale
        for g in self.optimizer.param_groups:
            g["lr"] = lr
        self.net.train()
        if phase.freeze_norm:
            freeze_norm_stats(self.model, phase.trainable)
        self.optimizer.zero_grad(set_to_none=True)
        batch = self.model.prepare_batch(batch, **phase.loss_kwargs)  # e.g. RFM's erasing; identity by default
        with self._autocast():
            out = self.net(batch["image"])
            losses = self.model.compute_loss(batch, out, **phase.loss_kwargs)
        loss = losses["loss"]
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite loss {loss.item()} at step {self.step} (phase {phase.name})")
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.unscale_(self.optimizer)
        else:
            loss.backward()
        if self.cfg.optim.grad_clip:
            torch.nn.utils.clip_grad_norm_(
                [p for p in self.model.parameters() if p.grad is not None], self.cfg.optim.grad_clip
            )
        if scaler is not None:
            scaler.step(self.optimizer)
            scaler.update()
        else:
            self.optimizer.step()
        with torch.no_grad():
            self.model.after_optimizer_step()  # e.g. SuppressNet's constrained-conv re-projection; no-op by default
        parts = {k: float(v.detach().float().mean()) for k, v in losses.items() if isinstance(v, torch.Tensor)}
        parts["lr"] = lr
        parts["n"] = int(batch["image"].shape[0])
        return parts

    def fit(self) -> dict[str, Any]:
        """Train to ``train.epochs`` or an early stop (continuing a resumed run); returns the final summary."""
        t = self.cfg.train
        scaler = torch.amp.GradScaler("cuda") if self.device.type == "cuda" and t.amp in ("auto", "fp16") else None
        kill_at = int(os.environ.get("DFLAB_TEST_SIGKILL_AT_STEP", "0"))  # tests: a real SIGKILL mid-run
        while self.epoch < t.epochs:
            # checked at the top so a run killed after saving its stopping epoch stops on resume, too
            if (stop := self._early_stop_due() or self._schedule_stop_due()) is not None:
                self._record_early_stop(stop)
                break
            bar = None
            first = self.step - self.epoch * self.steps_per_epoch
            if self.is_main and t.progress:
                from tqdm import tqdm

                bar = tqdm(total=self.steps_per_epoch, initial=first, desc=f"epoch {self.epoch + 1}/{t.epochs}")
            t0, n_img = time.perf_counter(), 0
            for _ in range(first, self.steps_per_epoch):
                phase = self.schedule.phase(self.step, self.total_steps)
                parts = self.train_step(phase, scaler)
                self.step += 1
                n_img += parts.pop("n")
                if self.step % t.log_every == 0 or self.step == self.total_steps:
                    parts = {k: ddp.mean_across(v, self.dist) for k, v in parts.items()}  # same steps on every rank
                    ips = n_img * self.dist.world / max(time.perf_counter() - t0, 1e-9)
                    row = {"step": self.step, "epoch": self.epoch, "phase": phase.name, "stream": phase.stream}
                    self.log({**row, **{k: round(v, 6) for k, v in parts.items()}, "images_per_s": round(ips, 2)})
                if bar is not None:
                    bar.set_postfix(loss=f"{parts['loss']:.4f}", phase=phase.name)
                    bar.update(1)
                if self.step % t.ckpt_every_steps == 0 and self.step % self.steps_per_epoch:
                    self.save_last()
                if kill_at and self.step == kill_at:
                    os.kill(os.getpid(), signal.SIGKILL)
            if bar is not None:
                bar.close()
            self.schedule.on_epoch_end(self, self.epoch)
            self.epoch += 1
            metrics: dict[str, Any] = {"epoch": self.epoch, "step": self.step}
            if self.val_stream is not None and (self.epoch % t.val_every == 0 or self.epoch == t.epochs):
                metrics.update(self.validate())
                self.history.append(metrics)
                self.log(metrics, "val.csv")
                self._maybe_best(metrics)
                self.schedule.on_validation(self, metrics)
                if self.is_main:
                    shown = {k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()}
                    print(f"[train] validation {shown}", file=sys.stderr)
            self.save_last()
            ddp.barrier(self.dist)
        summary = {
            "run_dir": str(self.run_dir),
            "steps": self.step,
            "best": self.best,
            "early_stop": self.early_stop,
            "history": self.history,
        }
        if self.is_main:
            (self.run_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
            if self._writer is not None:
                self._writer.close()
        return summary

    def _maybe_best(self, metrics: dict[str, Any]) -> None:
        key = self.cfg.train.select_metric
        sign = -1.0 if key.startswith("-") else 1.0
        value = metrics.get(key.lstrip("-"))
        if value is None or not math.isfinite(float(value)):
            return
        score = sign * float(value)
        if self.best["metric"] is None or score > float(self.best["metric"]):
            self.best = {"metric": score, "name": key, "value": float(value), "epoch": self.epoch}
            if self.is_main:
                save_detector(self.model, self.run_dir / "best", self.card(metrics))

    def _early_stop_due(self) -> dict[str, Any] | None:
        """The early stop owed now, or ``None``: ``train.early_stop_patience`` epochs since ``best`` last improved.

        A pure function of the state ``last/`` restores (epoch, ``best``, validation history), so a resumed run
        stops at the epoch an uninterrupted one does; ``best`` (set by :meth:`_maybe_best`) is the one comparison
        of the selection metric. Only decided right after a validation, and ``best`` is computed from metrics
        gathered over all ranks, so every DDP rank stops at the same epoch.
        """
        patience = self.cfg.train.early_stop_patience
        if patience is None or not self.history or int(self.history[-1]["epoch"]) != self.epoch:
            return None
        best_epoch = self.best.get("epoch")
        since = self.epoch - int(best_epoch or 0)  # never a finite metric: count from the start
        if since < patience:
            return None
        key = self.cfg.train.select_metric
        return {
            "epoch": self.epoch,
            "best_epoch": best_epoch,
            "patience": patience,
            "metric": key,
            "reason": f"no improvement of {key} in the {since} epochs since epoch {best_epoch or 0} "
            f"(patience {patience})",
        }

    def _schedule_stop_due(self) -> dict[str, Any] | None:
        """The schedule's end of the run (:meth:`~dflab.train.schedule.Schedule.stop_due`), or ``None``."""
        reason = self.schedule.stop_due(self)
        return None if reason is None else {"epoch": self.epoch, "schedule": self.cfg.schedule.name, "reason": reason}

    def _record_early_stop(self, stop: dict[str, Any]) -> None:
        """Keep the early stop for the summary, note it in ``run.json`` and say so on stderr (rank 0)."""
        self.early_stop = stop
        if not self.is_main:
            return
        info_path = self.run_dir / "run.json"
        info = json.loads(info_path.read_text()) if info_path.exists() else {}
        info["early_stop"] = stop
        info_path.write_text(json.dumps(info, indent=2))
        print(
            f"[train] early stop after epoch {stop['epoch']}/{self.cfg.train.epochs}: {stop['reason']}", file=sys.stderr
        )

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Frame and video AUC, accuracy and loss (``Detector.validation_loss``) on the validation stream, gathered
        over ranks."""
        from dflab.eval import metrics as M

        assert self.val_stream is not None
        sampler = PlanSampler(self.val_stream, rank=self.dist.rank, world=self.dist.world, shuffle=True, pad=False)
        sampler.limit = self.cfg.train.max_val_items
        loader = DataLoader(
            self.val_stream,
            batch_size=self.cfg.data.batch_size,
            sampler=sampler,
            num_workers=self.cfg.data.num_workers,
            collate_fn=collate,
            generator=torch.Generator().manual_seed(0),
        )
        self.net.eval()
        scores, labels, videos, losses = [], [], [], []
        for batch in loader:
            x = batch["image"].to(self.device)
            if self.cfg.train.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            y = batch["label"].to(self.device)
            with self._autocast():
                out = self.model(x)
                # the detector's own validation loss (default: cross-entropy of the logits), a batch mean
                loss = self.model.validation_loss({"image": x, "label": y}, out)
            losses.append(float(loss) * len(y))
            scores.extend(self.model.score(out).float().cpu().tolist())
            labels.extend(batch["label"].tolist())
            videos.extend(f"{v}|{lab}" for v, lab in zip(batch["video_id"], batch["label"].tolist(), strict=True))
        gathered = ddp.all_gather_objects((scores, labels, videos, losses), self.dist)
        s = np.asarray([v for g in gathered for v in g[0]], np.float64)
        y = np.asarray([v for g in gathered for v in g[1]], np.int64)
        vid = [v for g in gathered for v in g[2]]
        loss = sum(v for g in gathered for v in g[3]) / max(1, len(s))
        by_video: dict[str, list[float]] = {}
        for v, sc in zip(vid, s.tolist(), strict=True):
            by_video.setdefault(v, []).append(sc)
        vkeys = sorted(by_video)
        vs = np.asarray([np.mean(by_video[k]) for k in vkeys])
        vy = np.asarray([int(k.rsplit("|", 1)[1]) for k in vkeys])
        return {
            "auc": M.auc(y, s),
            "video_auc": M.auc(vy, vs),
            "acc": M.acc(y, s),
            "loss": float(loss),
            "n_val": len(s),
            "n_val_fake": int(y.sum()),
        }

    def close(self) -> None:
        self.manifest.close()
        ddp.teardown()
