"""The input contract of a detector, kept free of torch so the scanner's ONNX path can read a card without it."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class InputSpec:
    """Preprocessing a detector expects: face crop convention and tensor normalisation."""

    size: int = 256
    margin: float = 1.3
    align: str = "box"  # "box" (FF++ style square box crop) or "landmarks" (similarity-aligned)
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
