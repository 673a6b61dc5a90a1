"""The input contract of a detector, kept free of torch so the scanner's ONNX path can read a card without it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True)
class InputSpec:
    """Preprocessing a detector expects: face crop convention and tensor normalisation.

    Attributes:
        size: side (px) of the image the detector takes.
        margin: crop box / detector box.
        align: ``"box"`` (FF++-style square box crop) or ``"landmarks"`` (similarity-aligned).
        mean, std: per-channel normalisation of [0, 1] pixels.
        crop_size: side (px) at which the face is cut from the frame before it is resized (area) to ``size``: the
            crop size of the prepared data the detector was trained and validated on (``dflab prepare`` crops at
            256 px, and training resizes those crops). A face cut at ``size`` directly is resampled once instead of
            twice and looks sharper to a detector of resampling traces: the default CLIP probe's logit moved by
            −2.0 ± 1.6 (its spread over faces is ±5.1) on the same 51 faces. ``None``: cut at ``size``.
    """

    size: int = 256
    margin: float = 1.3
    align: str = "box"
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    crop_size: int | None = None

    @property
    def crop_px(self) -> int:
        """Side of the face crop cut from a frame (``crop_size``, else ``size``)."""
        return self.crop_size or self.size

    def to_input(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        """Face crops as the detector takes them: resized to ``size`` (area-averaged when shrinking, as training
        resized its prepared crops; bilinear when enlarging) and normalised with ``mean``/``std``. The one
        conversion of the scanner, ``dflab eval`` and :meth:`LoadedDetector.predict`.

        Shape:
            crops: B × (H, W, 3) uint8 RGB; returns (B, 3, size, size) float32.
        """
        import cv2
        import numpy as np

        s = self.size
        fitted = [
            c
            if c.shape[:2] == (s, s)
            else cv2.resize(c, (s, s), interpolation=cv2.INTER_AREA if c.shape[0] > s else cv2.INTER_LINEAR)
            for c in crops
        ]
        x = np.stack(fitted).transpose(0, 3, 1, 2).astype(np.float32) / np.float32(255.0)
        mean = np.asarray(self.mean, np.float32).reshape(1, 3, 1, 1)
        std = np.asarray(self.std, np.float32).reshape(1, 3, 1, 1)
        return np.ascontiguousarray((x - mean) / std)

    @classmethod
    def from_card(cls, d: Mapping[str, Any] | None, default: InputSpec) -> InputSpec:
        """The card's ``input_spec`` (a validated dict); keys it lacks (or no dict at all) come from ``default``."""
        d = d or {}
        crop = d.get("crop_size", default.crop_size)
        return cls(
            size=int(d.get("size", default.size)),
            margin=float(d.get("margin", default.margin)),
            align=str(d.get("align", default.align)),
            mean=tuple(d.get("mean", default.mean)),
            std=tuple(d.get("std", default.std)),
            crop_size=None if crop is None else int(crop),
        )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if d["crop_size"] is None:  # cards written before crop_size stay byte-identical
            del d["crop_size"]
        return d
