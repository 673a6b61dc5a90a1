"""Detector checkpoints: ``model.safetensors`` + ``card.json``; loading never unpickles anything.

The card holds everything needed to rebuild the detector and its input transform:

.. code-block:: json

    {"format": "dflab-detector/1", "detector": "resnet18", "variant": "resnet18_tiny", "kwargs": {...},
     "input_spec": {"size": 64, "margin": 1.3, "align": "box", "mean": [...], "std": [...]},
     "training": {...}, "metrics": {...}, "dflab_version": "0.1.0", "git_sha": "...", "created": "..."}

``save_detector(model, "runs/x/best", card)`` writes ``runs/x/best/model.safetensors`` and ``card.json``;
``load_detector(path)`` accepts that folder, the ``.safetensors`` file or the ``card.json``.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dflab.errors import CheckpointError
from dflab.models.base import Detector, InputSpec

FORMAT = "dflab-detector/1"
WEIGHTS_NAME = "model.safetensors"
CARD_NAME = "card.json"


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


def save_detector(model: Detector, path: str | Path, card: dict[str, Any] | None = None) -> Path:
    """Write weights (safetensors) and the JSON card; returns the weights path. Writes are atomic (tmp + rename).

    Args:
        model: a detector built by :func:`dflab.models.base.build_detector` (its ``config()`` names it).
        path: a folder, or a ``.safetensors`` file path.
        card: extra card fields (``training``, ``metrics``, …).
    """
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
    tmp_w = weights.with_name(weights.name + ".tmp")
    tmp_c = card_path.with_name(card_path.name + ".tmp")
    was_training = model.training
    save_model(model, str(tmp_w), metadata={"format": FORMAT, "detector": full["detector"]})
    model.train(was_training)
    tmp_c.write_text(json.dumps(full, indent=2))
    os.replace(tmp_w, weights)
    os.replace(tmp_c, card_path)
    return weights


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
        """A face crop (H, W, 3) uint8 RGB -> normalised (3, size, size) float tensor per the card.

        Shape:
            (H, W, 3) uint8 -> (3, S, S) float32.
        """
        import cv2

        s = self.spec.size
        if rgb.shape[:2] != (s, s):
            rgb = cv2.resize(rgb, (s, s), interpolation=cv2.INTER_AREA)
        x = torch.from_numpy(np.ascontiguousarray(rgb)).float().permute(2, 0, 1) / 255.0
        mean = torch.tensor(self.spec.mean).view(3, 1, 1)
        std = torch.tensor(self.spec.std).view(3, 1, 1)
        return (x - mean) / std

    @torch.no_grad()
    def predict(self, crops: list[np.ndarray] | np.ndarray) -> np.ndarray:
        """P(fake) for a list of face crops (uint8 RGB)."""
        device = next(self.model.parameters()).device
        x = torch.stack([self.transform(c) for c in crops]).to(device)
        return self.model.score(self.model(x)).float().cpu().numpy()


def read_card(path: str | Path) -> dict[str, Any]:
    """The card of a checkpoint (folder, weights file or card file)."""
    _, card_path = _paths(path)
    if not card_path.exists():
        raise CheckpointError(f"no checkpoint card at {card_path}")
    try:
        card = json.loads(card_path.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{card_path}: invalid JSON ({exc})") from None
    if card.get("format") != FORMAT:
        raise CheckpointError(f"{card_path}: format {card.get('format')!r}, expected {FORMAT!r}")
    return card


def load_detector(path: str | Path, device: str | torch.device = "cpu") -> LoadedDetector:
    """Rebuild a detector from its card and load its weights strictly.

    Raises:
        CheckpointError: missing card/weights, an unknown detector name, or missing/unexpected/mis-shaped weights.
    """
    from safetensors.torch import load_model

    import dflab.models.detectors  # noqa: F401  (fills the registries)
    from dflab.models.base import DETECTORS

    weights, _ = _paths(path)
    card = read_card(path)
    if card.get("detector") not in DETECTORS:
        raise CheckpointError(
            f"checkpoint {path} names detector {card.get('detector')!r}, which is not registered "
            f"(known: {', '.join(DETECTORS.names())})"
        )
    if not weights.exists():
        raise CheckpointError(f"no weights at {weights}")
    cls = DETECTORS.get(card["detector"])
    kwargs = dict(card.get("kwargs", {}))
    try:
        model = cls(**kwargs)
    except TypeError as exc:
        raise CheckpointError(f"checkpoint {path}: kwargs do not fit {card['detector']}: {exc}") from None
    model._config = {"detector": card["detector"], "kwargs": kwargs, "variant": card.get("variant", card["detector"])}
    try:
        missing, unexpected = load_model(model, str(weights), strict=False)
    except RuntimeError as exc:  # shape mismatch
        raise CheckpointError(f"checkpoint {weights}: {exc}") from None
    if missing or unexpected:
        raise CheckpointError(
            f"checkpoint {weights}: missing keys {sorted(missing)[:8]}, unexpected keys {sorted(unexpected)[:8]}"
        )
    model.to(device).eval()
    spec_d = card.get("input_spec") or model.input_spec.to_dict()
    spec = InputSpec(
        size=int(spec_d["size"]),
        margin=float(spec_d["margin"]),
        align=str(spec_d["align"]),
        mean=tuple(spec_d["mean"]),
        std=tuple(spec_d["std"]),
    )
    model.input_spec = spec  # the card's contract (the trainer may have trained at another size than the default)
    return LoadedDetector(model=model, spec=spec, card=card)
