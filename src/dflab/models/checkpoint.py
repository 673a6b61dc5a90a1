"""Detector checkpoints: ``model.safetensors`` + ``card.json``; loading never unpickles anything.

The card holds everything needed to rebuild the detector and its input transform:

.. code-block:: json

    {"format": "dflab-detector/1", "detector": "resnet18", "variant": "resnet18_tiny", "kwargs": {...},
     "input_spec": {"size": 64, "margin": 1.3, "align": "box", "mean": [...], "std": [...]},
     "calibration": {"method": "temperature", "temperature": 1.5}, "checkpoint_id": "<uuid hex>",
     "training": {...}, "metrics": {...}, "dflab_version": "0.1.0", "git_sha": "...", "created": "..."}

``save_detector(model, "runs/x/best", card)`` writes ``runs/x/best/model.safetensors`` and ``card.json``;
``load_detector(path)`` accepts that folder, the ``.safetensors`` file or the ``card.json``.

Nothing lost, nothing trusted:

* a checkpoint folder is written to a temporary sibling and renamed into place (:func:`replace_dir`), so a kill
  leaves either the old or the new checkpoint, never a mix; weights and card carry the same ``checkpoint_id``
  (card field and safetensors metadata), and a pair that does not match is refused;
* every way a checkpoint can be unusable — a pickle (refused on purpose: unpickling runs code), a truncated or
  lying safetensors file, a card that fails :class:`CardSchema` (non-positive temperature or std, an absurd crop
  size, an inverted verdict band), non-finite weights — is a :class:`~dflab.errors.CheckpointError`, which every
  command reports with exit code 2 (docs/guide/exit-codes.md).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from dflab.errors import CheckpointError
from dflab.models.spec import InputSpec

if TYPE_CHECKING:  # torch is imported where weights are loaded, so reading a card (the scanner's ONNX path) skips it
    import torch

    from dflab.models.base import Detector

FORMAT = "dflab-detector/1"
WEIGHTS_NAME = "model.safetensors"
CARD_NAME = "card.json"
#: files a checkpoint folder may hold (the trainer adds its resumable state)
CHECKPOINT_FILES = frozenset({WEIGHTS_NAME, CARD_NAME, "state.pt"})
#: suffixes of pickle-based checkpoints (torch.save, Lightning, pickled sklearn, …): refused, never unpickled
PICKLE_SUFFIXES = frozenset({".pt", ".pth", ".ckpt", ".bin", ".pkl", ".pickle", ".tar"})
#: a safetensors header (JSON) of a detector is a few hundred kB; anything beyond this is a lying or hostile file
MAX_HEADER_BYTES = 16 * 2**20
#: crop sizes a card may declare (16 px: the tiny test models; 2048 px: far beyond any detector in the papers)
MIN_SIZE, MAX_SIZE = 16, 2048

Finite = Annotated[float, Field(allow_inf_nan=False)]


# ----------------------------------------------------------------------------------------------------------------
# the card schema


class InputSpecSchema(BaseModel):
    """The card's input contract: what a crop must look like before the detector sees it."""

    model_config = ConfigDict(extra="forbid")

    size: int = Field(ge=MIN_SIZE, le=MAX_SIZE)
    margin: Finite = Field(gt=0.0, le=10.0)
    align: Literal["box", "landmarks"]
    mean: tuple[Finite, Finite, Finite]
    std: tuple[Finite, Finite, Finite]
    crop_size: int | None = Field(default=None, ge=MIN_SIZE, le=MAX_SIZE)

    @model_validator(mode="after")
    def _positive_std(self) -> InputSpecSchema:
        if min(self.std) <= 0:
            raise ValueError(f"std must be > 0 in every channel (got {list(self.std)}): x / 0 is not a pixel")
        return self


class PlattSchema(BaseModel):
    """One Platt fit, P(fake) = sigmoid(scale·(logit_fake − logit_real) + bias), scale > 0 (a negative scale inverts
    every verdict). Descriptive extra keys are kept."""

    model_config = ConfigDict(extra="allow")

    scale: Finite = Field(gt=0.0)
    bias: Finite


class FileCalibrationSchema(PlattSchema):
    """The file-level calibration: a file's P(fake) = sigmoid(scale·logit(score) + bias), where the score is the mean
    P(fake) of its decisive track's faces (:func:`dflab.eval.calibration.file_calibrate`), optionally per media kind
    (``by_kind``), at the stated ``prior`` (the share of fakes the fit assumed, in (0, 1))."""

    by_kind: dict[Literal["image", "video"], PlattSchema] | None = None
    prior: Finite | None = Field(default=None, gt=0.0, lt=1.0)


class CalibrationSchema(BaseModel):
    """Calibration of the logits: ``{"method": "temperature", "temperature": T}`` (T > 0: a negative T inverts
    every verdict, 0 divides by zero) or ``{"method": "platt", "scale": a, "bias": b}`` with
    P(fake) = sigmoid(a·(logit_fake − logit_real) + b), a > 0, optionally with one Platt fit per media kind
    (``by_kind``: ``{"image": {"scale", "bias"}, "video": {...}}``) that replaces the overall one for files of
    that kind, and a file-level fit on top (``file``, :class:`FileCalibrationSchema`). Descriptive extra keys are
    kept."""

    model_config = ConfigDict(extra="allow")

    method: str = "temperature"
    temperature: Finite | None = None
    scale: Finite | None = None
    bias: Finite | None = None
    by_kind: dict[Literal["image", "video"], PlattSchema] | None = None
    file: FileCalibrationSchema | None = None

    @model_validator(mode="after")
    def _parameters(self) -> CalibrationSchema:
        if self.method == "platt":
            if self.scale is None or self.bias is None:
                raise ValueError("platt calibration needs finite 'scale' and 'bias'")
            if self.scale <= 0:
                raise ValueError(f"platt scale must be > 0 (got {self.scale}); a negative scale inverts verdicts")
            return self
        if self.by_kind or self.file:
            raise ValueError("calibration by_kind and file hold Platt fits: method must be 'platt'")
        # "temperature", or a free-text description of a temperature fit (cards written before issue 11)
        if self.temperature is None:
            raise ValueError(f"calibration method {self.method!r}: no 'temperature' (and not 'platt')")
        if self.temperature <= 0:
            raise ValueError(
                f"temperature must be > 0 (got {self.temperature}): 0 divides by zero, < 0 inverts every verdict"
            )
        return self


class VerdictSchema(BaseModel):
    """The verdict band: P(fake) below ``real_below`` is real, at or above ``fake_at`` is fake, between uncertain.

    Other keys are the band's provenance (method, error rate ``alpha``, the candidate bands and their held-out
    numbers) and are kept as information; ``alpha``, when given, must be a rate. ``min_face_px``, when given, is
    the face size (detector box's longer side) below which the scanner gives no verdict; ``min_jpeg_quality`` /
    ``max_video_qp``, when given, the JPEG quality under which / the H.264 quantiser over which a still / a video
    gets no `real` verdict.
    """

    model_config = ConfigDict(extra="allow")

    real_below: Finite = Field(ge=0.0, le=1.0)
    fake_at: Finite = Field(ge=0.0, le=1.0)
    alpha: Finite | None = Field(default=None, gt=0.0, lt=1.0)
    min_face_px: Finite | None = Field(default=None, ge=0.0, le=4096.0)
    min_jpeg_quality: int | None = Field(default=None, ge=1, le=100)
    max_video_qp: Finite | None = Field(default=None, ge=0.0, le=51.0)

    @model_validator(mode="after")
    def _ordered(self) -> VerdictSchema:
        if self.real_below > self.fake_at:
            raise ValueError(f"real_below {self.real_below} > fake_at {self.fake_at}")
        return self


class CardSchema(BaseModel):
    """What a card must satisfy before any detector is built from it.

    Informational sections (``training``, ``metrics``, ``has_seen``, ``summary``, …) are free-form and extra
    top-level keys are kept: a card documents a checkpoint, and new documentation must not break old readers.
    Everything that changes a score is checked.
    """

    model_config = ConfigDict(extra="allow")

    format: Literal["dflab-detector/1"]
    detector: str = Field(min_length=1)
    variant: str | None = None
    kwargs: dict[str, Any] = Field(default_factory=dict)
    input_spec: InputSpecSchema | None = None
    calibration: CalibrationSchema | None = None
    verdict: VerdictSchema | None = None
    checkpoint_id: str | None = None
    training: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _sane_kwargs(self) -> CardSchema:
        size = self.kwargs.get("size")
        if size is not None and not (isinstance(size, int) and MIN_SIZE <= size <= MAX_SIZE):
            raise ValueError(f"kwargs.size must be an integer in [{MIN_SIZE}, {MAX_SIZE}] (got {size!r})")
        return self


def validate_card(card: Any, where: str | Path = "card") -> dict[str, Any]:
    """Check a card against :class:`CardSchema`; returns it unchanged.

    Raises:
        CheckpointError: naming every field that is wrong.
    """
    if not isinstance(card, dict):
        raise CheckpointError(f"{where}: a card is a JSON object, got {type(card).__name__}")
    try:
        CardSchema.model_validate(card)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'card'}: {e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors()
        )
        raise CheckpointError(f"{where}: invalid card ({problems})") from None
    return card


def git_sha(cwd: str | Path | None = None) -> str:
    """The git commit of the dflab source tree (``"unknown"`` outside a checkout), ``+dirty`` if modified."""
    here = Path(cwd) if cwd else Path(__file__).resolve().parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return sha + ("+dirty" if dirty else "")


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    return obj


def _paths(path: str | Path) -> tuple[Path, Path]:
    p = Path(path)
    if p.suffix == ".safetensors":
        return p, p.with_name(CARD_NAME) if p.name == WEIGHTS_NAME else p.with_suffix(".json")
    if p.suffix == ".json":
        return (p.with_name(WEIGHTS_NAME) if p.name == CARD_NAME else p.with_suffix(".safetensors")), p
    return p / WEIGHTS_NAME, p / CARD_NAME


# ----------------------------------------------------------------------------------------------------------------
# atomic folders


def _old_of(path: Path) -> Path:
    return path.with_name(f".{path.name}.old")


def _fsync(path: Path) -> None:
    with contextlib.suppress(OSError):  # directories cannot be opened for fsync on every platform
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def replace_dir(path: str | Path) -> Iterator[Path]:
    """Write a folder in one step: yields a fresh temporary sibling; on success it replaces ``path``.

    The swap is two renames (``path`` → ``.path.old``, temporary → ``path``); a kill between them leaves no
    ``path`` but a complete ``.path.old``, which :func:`settled_dir` puts back. A kill while the temporary folder is
    written leaves ``path`` untouched (the partial folder is removed on the next write). Files are fsynced first,
    so a power cut cannot promote a folder whose contents are still in the page cache.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{path.name}.tmp-*"):  # left by an earlier kill mid-write
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:
        yield tmp
        for f in tmp.iterdir():
            _fsync(f)
        old = _old_of(path)
        if path.exists():
            if old.exists():  # a leftover of an earlier swap: ``path`` is complete, the old copy is not needed
                shutil.rmtree(old)
            os.replace(path, old)
        os.replace(tmp, path)
        _fsync(path.parent)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def settled_dir(path: str | Path) -> Path:
    """``path``, after putting back its previous version if a kill hit :func:`replace_dir` between its renames."""
    path = Path(path)
    old = _old_of(path)
    if not path.exists() and old.is_dir():
        with contextlib.suppress(FileNotFoundError):  # another rank (DDP resume) put it back first
            os.replace(old, path)
    return path


def _is_checkpoint_dir(path: Path) -> bool:
    """A folder that holds only checkpoint files (or nothing yet): safe to replace as a whole."""
    if path.suffix in (".safetensors", ".json"):
        return False
    return not path.exists() or (path.is_dir() and all(f.name in CHECKPOINT_FILES for f in path.iterdir()))


# ----------------------------------------------------------------------------------------------------------------
# save


def new_checkpoint_id() -> str:
    """A fresh id that ties a checkpoint's weights, card (and training state) together."""
    return uuid.uuid4().hex


def save_detector(
    model: Detector,
    path: str | Path,
    card: dict[str, Any] | None = None,
    *,
    checkpoint_id: str | None = None,
    atomic: bool = True,
) -> Path:
    """Write weights (safetensors) and the JSON card; returns the weights path.

    A checkpoint folder (absent, or holding only checkpoint files) is replaced as a whole (:func:`replace_dir`);
    a ``.safetensors`` path, or a folder that holds other files too, gets each file written to a temporary name
    and renamed. Either way weights and card carry the same ``checkpoint_id``, and :func:`load_detector` refuses
    a pair whose ids differ.

    Args:
        model: a detector built by :func:`dflab.models.base.build_detector` (its ``config()`` names it).
        path: a folder, or a ``.safetensors`` file path.
        card: extra card fields (``training``, ``metrics``, …).
        checkpoint_id: the id to record (default: a new one); the trainer passes the id of its state too.
        atomic: replace a checkpoint folder as a whole; ``False`` when the caller already writes into a
            temporary folder of its own (:func:`replace_dir`).
    """
    path = Path(path)
    if atomic and _is_checkpoint_dir(path):
        with replace_dir(path) as tmp:
            save_detector(model, tmp, card, checkpoint_id=checkpoint_id, atomic=False)
        return path / WEIGHTS_NAME

    from safetensors.torch import save_model

    from dflab import __version__

    cfg = model.config()
    if not cfg.get("detector"):
        raise CheckpointError("the model has no detector config; build it with dflab.models.build_detector")
    weights, card_path = _paths(path)
    weights.parent.mkdir(parents=True, exist_ok=True)
    full = {
        "format": FORMAT,
        "detector": cfg["detector"],
        "variant": cfg.get("variant", cfg["detector"]),
        "kwargs": _jsonable(cfg.get("kwargs", {})),
        "input_spec": _jsonable(model.input_spec.to_dict()),
        "training": {},
        "metrics": {},
        "dflab_version": __version__,
        "git_sha": git_sha(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        **_jsonable(card or {}),
    }
    full["checkpoint_id"] = checkpoint_id or new_checkpoint_id()
    tmp_w = weights.with_name(weights.name + ".tmp")
    tmp_c = card_path.with_name(card_path.name + ".tmp")
    was_training = model.training
    meta = {"format": FORMAT, "detector": full["detector"], "checkpoint_id": full["checkpoint_id"]}
    save_model(model, str(tmp_w), metadata=meta)
    model.train(was_training)
    tmp_c.write_text(json.dumps(full, indent=2))
    os.replace(tmp_w, weights)
    os.replace(tmp_c, card_path)
    return weights


# ----------------------------------------------------------------------------------------------------------------
# load


def _refuse_pickle(path: Path) -> None:
    """Name pickle checkpoints for what they are, before anything else looks at them."""
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise CheckpointError(
            f"{path}: pickle checkpoints ({', '.join(sorted(PICKLE_SUFFIXES))}) are refused on purpose: loading "
            "one runs whatever code it holds. Convert trusted weights to a dflab checkpoint (model.safetensors + "
            "card.json) with dflab.models.checkpoint.save_detector"
        )


def weights_metadata(weights: Path) -> dict[str, str]:
    """The safetensors header's ``__metadata__``, after checking the file is a safetensors file at all.

    Raises:
        CheckpointError: missing, a pickle or zip (``torch.save``) in disguise, a header longer than the file or
            than :data:`MAX_HEADER_BYTES`, or a header that is not valid safetensors.
    """
    from safetensors import SafetensorError, safe_open

    if not weights.is_file():
        raise CheckpointError(f"no weights at {weights}")
    size = weights.stat().st_size
    with weights.open("rb") as fh:
        head = fh.read(9)
    if head[8:9] != b"{":  # a safetensors file is an 8-byte length and a JSON header
        if head[:1] == b"\x80" or head[:4] == b"PK\x03\x04":  # pickle protocol ≥ 2, or torch.save's zip
            raise CheckpointError(
                f"{weights}: a pickle / torch.save file named .safetensors; refused on purpose (unpickling runs code)"
            )
        raise CheckpointError(f"{weights}: not a safetensors file ({size} bytes, no JSON header)")
    n = int.from_bytes(head[:8], "little")
    if n > MAX_HEADER_BYTES or n > size - 8:
        raise CheckpointError(
            f"{weights}: not a safetensors file (header of {n} bytes declared in a {size}-byte file: "
            "truncated or forged)"
        )
    try:
        with safe_open(str(weights), framework="numpy") as f:  # the header only: no torch needed
            return dict(f.metadata() or {})
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{weights}: unreadable safetensors file ({exc})") from None


def load_weights(model: torch.nn.Module, weights: str | Path, *, strict: bool = True) -> dict[str, str]:
    """Load safetensors weights into ``model`` (nothing unpickled) and check every tensor is finite.

    Returns:
        the file's metadata.

    Raises:
        CheckpointError: an unreadable file, missing/unexpected/mis-shaped tensors, or NaN/inf values.
    """
    import torch
    from safetensors import SafetensorError
    from safetensors.torch import load_model

    weights = Path(weights)
    meta = weights_metadata(weights)
    try:
        missing, unexpected = load_model(model, str(weights), strict=False)
    except (SafetensorError, RuntimeError, OSError, ValueError) as exc:  # shape mismatch, truncated data
        raise CheckpointError(f"checkpoint {weights}: {exc}") from None
    if strict and (missing or unexpected):
        raise CheckpointError(
            f"checkpoint {weights}: missing keys {sorted(missing)[:8]}, unexpected keys {sorted(unexpected)[:8]}"
        )
    bad = [k for k, v in model.state_dict().items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise CheckpointError(f"checkpoint {weights}: NaN/inf values in {len(bad)} tensors, e.g. {bad[:4]}")
    return meta


@dataclass
class LoadedDetector:
    """A detector rebuilt from its card, in eval mode, with its preprocessing.

    Attributes:
        model: the detector.
        spec: its input contract.
        card: the full card.
    """

    model: Detector
    spec: InputSpec
    card: dict[str, Any]

    def transform(self, rgb: np.ndarray) -> torch.Tensor:
        """A face crop (H, W, 3) uint8 RGB -> normalised (3, size, size) float tensor per the card
        (:meth:`InputSpec.to_input`).

        Shape:
            (H, W, 3) uint8 -> (3, S, S) float32.
        """
        import torch

        return torch.from_numpy(self.spec.to_input([np.ascontiguousarray(rgb)])[0])

    def predict(self, crops: list[np.ndarray] | np.ndarray) -> np.ndarray:
        """P(fake) for a list of face crops (uint8 RGB)."""
        import torch

        device = next(self.model.parameters()).device
        x = torch.stack([self.transform(c) for c in crops]).to(device)
        with torch.no_grad():
            return self.model.score(self.model(x)).float().cpu().numpy()


def read_card(path: str | Path) -> dict[str, Any]:
    """The card of a checkpoint (folder, weights file or card file), validated against :class:`CardSchema`.

    Raises:
        CheckpointError: a pickle checkpoint, no card, invalid JSON, or a card that fails the schema.
    """
    _refuse_pickle(Path(path))
    _, card_path = _paths(settled_dir(path) if Path(path).suffix == "" else path)
    if not card_path.is_file():
        raise CheckpointError(f"no checkpoint card at {card_path}")
    if card_path.stat().st_size > MAX_HEADER_BYTES:
        raise CheckpointError(f"{card_path}: {card_path.stat().st_size} bytes is no checkpoint card")
    try:
        card = json.loads(card_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as exc:
        raise CheckpointError(f"{card_path}: unreadable or invalid JSON ({exc})") from None
    if not isinstance(card, dict) or card.get("format") != FORMAT:
        got = card.get("format") if isinstance(card, dict) else type(card).__name__
        raise CheckpointError(f"{card_path}: format {got!r}, expected {FORMAT!r}")
    return validate_card(card, card_path)


def check_pair(card: dict[str, Any], meta: dict[str, str], where: str | Path) -> None:
    """Weights and card of one checkpoint: same detector, same ``checkpoint_id`` (when both record one).

    Raises:
        CheckpointError: a card beside weights from another save.
    """
    if meta.get("detector") and meta["detector"] != card.get("detector"):
        raise CheckpointError(
            f"checkpoint {where}: weights of {meta['detector']!r} beside a card for {card.get('detector')!r}"
        )
    ids = (card.get("checkpoint_id"), meta.get("checkpoint_id"))
    if all(ids) and ids[0] != ids[1]:
        raise CheckpointError(
            f"checkpoint {where}: card and weights come from different saves (checkpoint_id {ids[0]} vs {ids[1]})"
        )


def load_detector(path: str | Path, device: str | torch.device = "cpu") -> LoadedDetector:
    """Rebuild a detector from its (validated) card and load its weights strictly.

    Raises:
        CheckpointError: a pickle, a missing/invalid card, missing or unreadable weights, an unknown detector name,
            missing/unexpected/mis-shaped/non-finite weights, or weights and card from different saves.
    """
    import dflab.models.detectors  # noqa: F401  (fills the registries)
    from dflab.models.base import DETECTORS

    card = read_card(path)
    weights, _ = _paths(path)
    if card.get("detector") not in DETECTORS:
        raise CheckpointError(
            f"checkpoint {path} names detector {card.get('detector')!r}, which is not registered "
            f"(known: {', '.join(DETECTORS.names())})"
        )
    meta = weights_metadata(weights)
    check_pair(card, meta, path)
    cls = DETECTORS.get(card["detector"])
    kwargs = dict(card.get("kwargs", {}))
    try:
        model = cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {path}: kwargs do not fit {card['detector']}: {exc}") from None
    model._config = {"detector": card["detector"], "kwargs": kwargs, "variant": card.get("variant", card["detector"])}
    load_weights(model, weights)
    model.to(device).eval()
    spec = InputSpec.from_card(card.get("input_spec"), model.input_spec)
    model.input_spec = spec  # the card's contract (the trainer may have trained at another size than the default)
    return LoadedDetector(model=model, spec=spec, card=card)
