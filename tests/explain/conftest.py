"""Fixtures for explain tests: the eval tests' tiny encoder/decoder detector, exposing its mask as a map."""

from __future__ import annotations

import pytest
import torch

from tests.eval.evalkit import TinyConvDetector


class TinyEncDec(TinyConvDetector):
    """Encoder → classifier, plus a mask decoder that runs last but does not feed the classifier."""

    def explain_maps(self, outputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"mask": outputs["mask"]}


@pytest.fixture
def encdec() -> TinyEncDec:
    return TinyEncDec(size=64)
