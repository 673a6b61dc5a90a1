"""Typed training configs (pydantic, ``extra="forbid"``): a recipe is one YAML file validated into :class:`Recipe`.

Extension points for method authors (BiG-Arts, LiSiam, DADD, MML, LAE):

* ``model.name`` names a registered detector or variant (``dflab list variants``); ``model.kwargs`` update its
  constructor kwargs; ``model.pretrained`` is ``timm:<arch>.<tag>`` (timm's ImageNet weights, fetched as timm
  does: the hub when online, else its cache), a local weights file, a ``"<backbone>:<tag>"`` name shipped in a pip
  package, or ``none`` (the explicit opt-out) — see :func:`dflab.models.backbones.resolve_pretrained`. A weights
  spec that cannot be had stops the run with a message naming both ways to get it and the opt-out.
* ``data.streams`` maps stream names to :class:`StreamConfig`; ``data.mixes`` maps names to *mixed* streams whose
  every batch is composed of fixed numbers of items from several streams (BiG-Arts §4.1). ``"default"`` is
  required (a stream or a mix); a schedule's :class:`~dflab.train.schedule.Phase` ``.stream`` picks which stream or
  mix a step draws from, and the schedule's ``streams()`` lists every one it uses (each must be defined here).
* ``schedule.name`` names an entry of ``dflab.train.schedule.SCHEDULES`` (method schedules are added in
  ``dflab/train/schedules/``); ``schedule.kwargs`` go to its constructor.

Precedence is explicit and single: a recipe may name ``base:`` (another recipe) whose values it overrides key by
key; then CLI dotted overrides (``train.epochs=3``, ``--data.manifest M``) override the result. Nothing else
(no global file, no environment) changes a config. Unknown keys are a :class:`~dflab.errors.ConfigError`.
"""

from __future__ import annotations

import copy
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from dflab.errors import ConfigError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class ModelConfig(_Strict):
    """Which detector to build.

    Attributes:
        name: registered detector or variant name (e.g. ``xception``, ``resnet18_tiny``).
        kwargs: constructor kwargs overriding the variant's.
        pretrained: ``timm:<arch>.<tag>`` (timm's pretrained weights: hub when online, else timm's cache), a
            local weights file (safetensors / .pth state dict), a ``"<name>:<tag>"`` shipped in a pip package, or
            ``none`` — the explicit opt-out (random initialisation). ``None`` (unset) = the method has no
            pretrained initialisation. Paper recipes set it to the paper's ImageNet weights.
        pretrained_prefix: parameter-name prefix the weights load into (``"backbone."`` for a timm backbone).
        allow_missing: parameter-name prefixes allowed to be missing from the weights (e.g. the new head);
            any other missing or unexpected key is an error.
        allow_unexpected: key prefixes of the weights that may be dropped besides an ImageNet head (``fc.``,
            ``classifier.``, ``head.``, ``pre_logits.``), e.g. Xception's exit flow when only blocks 1–12 are used.
    """

    name: str
    kwargs: dict[str, Any] = Field(default_factory=dict)
    pretrained: str | None = None
    pretrained_prefix: str = "backbone."
    allow_missing: list[str] = Field(default_factory=list)
    allow_unexpected: list[str] = Field(default_factory=list)


class AugmentConfig(_Strict):
    """Albumentations transforms applied jointly to image and masks, e.g. ``{"name": "HorizontalFlip", "p": 0.5}``."""

    ops: list[dict[str, Any]] = Field(default_factory=list)


class StreamConfig(_Strict):
    """One data stream: which manifest rows it reads and how a batch is made from them.

    Attributes:
        mode: ``real_only`` — real rows only, a fraction ``fake_ratio`` of items turned into fakes on the fly by
            ``synthesizers``; ``supervised`` — the manifest's own real and fake rows (masks per
            ``DataConfig.fake_mask``); ``fake_source`` — the manifest's fake rows that have an ``original_crop``,
            a fraction ``fake_ratio`` of items turned into new fakes by ``synthesizers`` that start from a fake
            (BiG-Arts (Fake, Real), ``bigarts_fr``; donors = the manifest's reals under the same filters), the
            rest the dataset fakes themselves.
        split: manifest split(s) to read. A validation stream must not read ``test``.
        datasets, methods: optional row filters (manifest columns).
        exclude_videos: video ids left out (e.g. beauty-filtered clips, see shared/data/README.md).
        synthesizers: names in ``dflab.synthesis.SYNTHESIZERS``; ``synth_weights`` their sampling weights;
            ``synth_kwargs`` per-synthesizer keyword arguments to ``sample_params``.
        fake_ratio: fraction of fake items per epoch (class balance; 0.5 = balanced); in ``fake_source`` mode the
            fraction of on-the-fly (synthesised) items, every item being a fake.
        frames_per_video: frames drawn per video each epoch (``None`` = all).
        resample_frames: draw a new ``frames_per_video`` subset every epoch (default); ``False`` draws it once per
            run (from the seed and stream name), so training sees only those frames of each video — LiSiam §IV-A.3
            "we sample only 30 frames per video for training ... our methods need less training data".
        balance: in ``supervised`` mode, oversample the minority class to ``fake_ratio``.
        degrade: name in ``dflab.train.data.DEGRADERS`` producing the ``degraded`` target when a detector asks.
        donor_pool: build a nearest-landmark donor pool of real rows (for BI / blending): the stream's own in
            ``real_only`` mode, the manifest's reals under the stream's filters in ``fake_source`` mode.
    """

    mode: Literal["real_only", "supervised", "fake_source"] = "supervised"
    split: str | list[str] = "train"
    datasets: list[str] | None = None
    methods: list[str] | None = None
    exclude_videos: list[str] = Field(default_factory=list)
    synthesizers: list[str] = Field(default_factory=list)
    synth_weights: list[float] | None = None
    synth_kwargs: dict[str, dict[str, Any]] = Field(default_factory=dict)
    fake_ratio: float = Field(0.5, ge=0.0, le=1.0)
    frames_per_video: int | None = Field(None, ge=1)
    resample_frames: bool = True
    balance: bool = True
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    degrade: str | None = None
    donor_pool: bool = True
    batch_size: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _check(self) -> StreamConfig:
        if self.mode in ("real_only", "fake_source") and self.fake_ratio > 0 and not self.synthesizers:
            raise ValueError(f"a {self.mode} stream with fake_ratio > 0 needs at least one synthesizer")
        if self.synth_weights is not None and len(self.synth_weights) != len(self.synthesizers):
            raise ValueError("synth_weights must have one weight per synthesizer")
        return self

    def splits(self) -> list[str]:
        return [self.split] if isinstance(self.split, str) else list(self.split)


class SamplingConfig(_Strict):
    """The paper's frame sampling per video, as the recipe states it. ``dflab train`` and ``dflab eval`` warn when the
    manifest (how ``dflab prepare`` was run) or the evaluation does not match (:mod:`dflab.data.sampling`).

    Attributes:
        train_frames: frames per training video (LAE 200, LiSiam 30, DADD 20); the manifest must hold at least this
            many per training video (``dflab prepare --frames N``), and the training stream draws them
            (``frames_per_video``).
        eval_frames: evenly spaced frames per validation/test video (LAE 10, LiSiam 100, DADD 20):
            ``dflab eval --frames-per-track N`` on a manifest holding at least N per video.
        eval_stride: every k-th frame of a test video (BiG-Arts §4.1: k = 10): ``dflab prepare --stride k``.
        source: where the paper says so (shown in the warnings).
    """

    train_frames: int | None = Field(None, ge=1)
    eval_frames: int | None = Field(None, ge=1)
    eval_stride: int | None = Field(None, ge=1)
    source: str = ""

    @model_validator(mode="after")
    def _check(self) -> SamplingConfig:
        if self.eval_frames is not None and self.eval_stride is not None:
            raise ValueError("data.sampling: give eval_frames or eval_stride, not both")
        return self


class DataConfig(_Strict):
    """Where the faces come from and how they are batched.

    Attributes:
        manifest: path of a prepare manifest (file or folder); usually given on the command line.
        size: training crop size (crops are resized to it).
        batch_size: default per-process batch size of every stream.
        num_workers: DataLoader workers.
        streams: named training streams; ``default`` is required unless a mix is named ``default``.
        mixes: named mixed streams, ``{mix: {stream: weight}}``: every batch of the mix holds, from each listed
            stream, a fixed share ``weight / Σ weights`` of the batch (rounded by largest remainder, see
            :func:`dflab.train.data.mix_counts`), drawn from that stream's own shuffled plan and concatenated in
            the listed order; weight 0 leaves a stream out. E.g. BiG-Arts §4.1 ``{real: 3, orig: 1, rr: 1, fr: 1}``
            = 50 % reals, the fakes a third each dataset / (Real, Real) / (Fake, Real) within every batch. A mix
            name may not also be a stream name, and a mix lists streams only (no nested mixes).
        val: the validation stream (model selection uses only it; its split may never be ``test``).
        unsplit_val_fraction: rows whose dataset has no official split (``split == ""``, e.g. a ``folder``
            dataset) are assigned to ``val`` for this fraction of videos (by a hash of the video id, so whole
            videos go one way) and to ``train`` otherwise.
        val_from_train: per dataset name, the fraction of its ``train`` videos held out as ``val`` (hashed by video
            id, whole videos), for datasets that ship no validation split: BiG-Arts §4.1 splits Celeb-DF's
            training videos 8:2 into train and val (``{celebdf: 0.2}``). Datasets not named keep their splits.
        fake_mask: ground-truth ``mask`` of a dataset fake (not an on-the-fly one): ``dataset`` — its
            ``mask_crop`` (dataset or oracle mask), else the DIFF mask against ``original_crop``; ``diff`` — the
            DIFF mask (Dang et al. 2020; LiSiam Table VII) against ``original_crop``, else ``mask_crop``;
            ``ssim`` — LiSiam's SSIM mask (§III-E, ``dflab.synthesis.masks.ssim_mask``) against
            ``original_crop``, else ``mask_crop``.
        sampling: the paper's frames per video (:class:`SamplingConfig`); ``None`` = the recipe states none.
    """

    manifest: str | None = None
    size: int = Field(256, ge=16)
    batch_size: int = Field(32, ge=1)
    num_workers: int = Field(0, ge=0)
    streams: dict[str, StreamConfig]
    mixes: dict[str, dict[str, float]] = Field(default_factory=dict)
    val: StreamConfig | None = None
    unsplit_val_fraction: float = Field(0.0, ge=0.0, lt=1.0)
    val_from_train: dict[str, Annotated[float, Field(ge=0.0, lt=1.0)]] = Field(default_factory=dict)
    fake_mask: Literal["dataset", "diff", "ssim"] = "dataset"
    sampling: SamplingConfig | None = None

    @model_validator(mode="after")
    def _check(self) -> DataConfig:
        if "default" not in self.streams and "default" not in self.mixes:
            raise ValueError("data.streams (or data.mixes) must define a 'default' stream")
        for name, mix in self.mixes.items():
            if name in self.streams:
                raise ValueError(f"data.mixes.{name} has the name of a stream in data.streams")
            unknown = [k for k in mix if k not in self.streams]
            if unknown:
                raise ValueError(f"data.mixes.{name} names streams not in data.streams: {unknown}")
            if any(w < 0 for w in mix.values()) or sum(mix.values()) <= 0:
                raise ValueError(f"data.mixes.{name} needs non-negative weights with a positive sum; got {mix}")
        if self.val is not None and "test" in self.val.splits():
            raise ValueError("data.val may not read the test split (the best checkpoint is chosen on val)")
        return self


class OptimConfig(_Strict):
    name: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = Field(1e-3, gt=0)
    betas: tuple[float, float] = (0.9, 0.999)
    momentum: float = 0.9
    weight_decay: float = 0.0
    grad_clip: float | None = None


class LRScheduleConfig(_Strict):
    """Learning-rate schedule, stepped once per epoch (``warmup_epochs`` linear from 0)."""

    name: Literal["none", "cosine", "step", "multistep"] = "none"
    t_max: int | None = None  # cosine period in epochs (default: train.epochs)
    eta_min: float = 0.0
    step_size: int = 10
    milestones: list[int] = Field(default_factory=list)
    gamma: float = 0.1
    warmup_epochs: int = 0


class ScheduleConfig(_Strict):
    """A training schedule from ``SCHEDULES`` (phases, stage freezing, loss switches)."""

    name: str = "default"
    kwargs: dict[str, Any] = Field(default_factory=dict)


class TrainConfig(_Strict):
    """Loop settings.

    Attributes:
        epochs: number of epochs.
        steps_per_epoch: optimisation steps per epoch (``None`` = one pass over the default stream).
        val_every: validate every N epochs (and after the last).
        ckpt_every_steps: write the resumable ``last`` checkpoint every N steps (and at each epoch end).
        select_metric: validation metric that picks ``best`` (``auc``, ``video_auc``, ``acc`` or ``-loss``).
        early_stop_patience: stop once ``patience`` epochs have passed since ``select_metric`` last improved
            (checked after each validation; LAE §3.1.2: "early stopping (patience=10)" on the validation loss).
            ``None`` = always run ``epochs``. Needs ``data.val``.
        amp: autocast (bf16 on CPU only when set explicitly to ``bf16``; fp16 on CUDA).
        channels_last: use channels-last memory format (faster on CPU).
        threads: torch intra-op threads (``None`` = torch default).
    """

    epochs: int = Field(1, ge=1)
    steps_per_epoch: int | None = Field(None, ge=1)
    seed: int = 0
    device: str = "auto"
    amp: Literal["off", "auto", "bf16", "fp16"] = "auto"
    channels_last: bool = False
    val_every: int = Field(1, ge=1)
    ckpt_every_steps: int = Field(200, ge=1)
    log_every: int = Field(10, ge=1)
    select_metric: str = "auc"
    early_stop_patience: int | None = Field(None, ge=1)
    max_val_items: int | None = None
    threads: int | None = None
    progress: bool = True


class Recipe(_Strict):
    """A complete training recipe (one YAML file)."""

    name: str = ""
    description: str = ""
    paper: str = ""
    base: str | None = None
    model: ModelConfig
    data: DataConfig
    optim: OptimConfig = Field(default_factory=OptimConfig)
    lr_schedule: LRScheduleConfig = Field(default_factory=LRScheduleConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    out: str = "runs"

    @model_validator(mode="after")
    def _check(self) -> Recipe:
        if self.train.early_stop_patience is not None and self.data.val is None:
            raise ValueError("train.early_stop_patience needs a validation stream (data.val) to watch")
        return self


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Return ``base`` updated by ``over`` recursively (dicts merge, everything else replaces)."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """Turn ``["a.b=1", "--c.d", "x", "--e.f=[1,2]"]`` into a nested dict; values are parsed as YAML scalars.

    Raises:
        ConfigError: an item that is neither ``key=value`` nor ``--key value``.
    """
    out: dict[str, Any] = {}
    i = 0
    while i < len(items):
        item = items[i]
        if item.startswith("--"):
            item = item[2:]
            if "=" not in item:
                if i + 1 >= len(items):
                    raise ConfigError(f"override --{item} has no value")
                item = f"{item}={items[i + 1]}"
                i += 1
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key.path=value")
        key, raw = item.split("=", 1)
        value = yaml.safe_load(raw) if raw != "" else ""
        node = out
        parts = key.split(".")
        if not all(parts):
            raise ConfigError(f"bad override key {key!r}")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {key!r} conflicts with another override")
        node[parts[-1]] = value
        i += 1
    return out


def validate_recipe(raw: dict[str, Any]) -> Recipe:
    """Validate a raw dict into a :class:`Recipe`; any unknown key or bad value is a :class:`ConfigError`."""
    try:
        return Recipe.model_validate(raw)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = ".".join(str(x) for x in err["loc"])
            lines.append(f"  {loc}: {err['msg']}")
        raise ConfigError("invalid recipe:\n" + "\n".join(lines)) from None


def recipe_to_dict(recipe: Recipe) -> dict[str, Any]:
    """JSON/YAML-able dict of a resolved recipe (written to the run directory)."""
    return recipe.model_dump(mode="json")
