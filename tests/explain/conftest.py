"""Fixtures for explain tests: a tiny encoder/decoder detector (no registry needed)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dflab.models.base import Detector, InputSpec


class TinyEncDec(Detector):
    """Encoder → classifier, plus a mask decoder that runs last but does not feed the classifier."""

    def __init__(self) -> None:
        super().__init__(InputSpec(size=64))
        torch.manual_seed(0)
        self.enc1 = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.enc2 = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.head = nn.Linear(16, 2)
        self.decoder = nn.Conv2d(16, 1, 1)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        f = torch.relu(self.enc2(torch.relu(self.enc1(images))))
        logits = self.head(f.mean(dim=(2, 3)))
        return {"logits": logits, "mask": torch.sigmoid(self.decoder(f))}

    def explain_maps(self, outputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"mask": outputs["mask"]}


@pytest.fixture
def encdec() -> TinyEncDec:
    return TinyEncDec()
