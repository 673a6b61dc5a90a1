"""ResidualNet (Cozzolino, Poggi, Verdoliva, "Recasting residual-based local descriptors as convolutional neural
networks: an application to image forgery detection", ACM IH&MMSec 2017, arXiv:1703.04615), a baseline of LAE
Table 3 (LAE §3.1.2, ref [7]).

The paper writes a residual-based local descriptor (a rich-model/SPAM-like feature) as a constrained CNN, initialises
the layers to the hand-crafted descriptor and then relaxes the constraints and fine-tunes the whole net. Its steps
(LAE §3.1.2 summarises them: high-pass residual, quantisation/truncation, co-occurrences of 4-pixel patterns along
the horizontal and vertical directions, then a classifier), each a layer here:

1. **Residual** (:class:`ResidualFilter`): third-order high-pass derivatives of the luminance (grey levels 0–255),
   ``r = −x[j−1] + 3x[j] − 3x[j+1] + x[j+2]``, horizontally and vertically — a fixed conv (zero response on constant
   and on linear/quadratic ramps).
2. **Quantisation + truncation** (:class:`SoftQuantizer`): ``q = clip(round(r / Δ), −T, T)`` is recast as a 1×1 conv
   with weights ``2βk/Δ`` and biases ``−βk²`` for the 2T+1 levels k, followed by a softmax over the levels: the
   soft one-hot of ``−β(r/Δ − k)²`` (the pixel's own ``−β(r/Δ)²`` cancels in the softmax); truncation comes free
   (a residual beyond T falls in the outer bin). β → ∞ is the hard quantiser. Trainable (the relaxed constraint).
3. **Co-occurrence** (:class:`CooccurrenceConv`): a 4-pixel pattern (k1…k4) along a direction is a conv of the
   one-hot maps with a 1×4 (or 4×1) kernel that picks channel k_i at tap i, bias −3, ReLU: 1 where all four match,
   0 otherwise (for hard one-hots); global average pooling gives the normalised histogram. (2T+1)^4 patterns per
   direction. Trainable, initialised to the pattern indicators.
4. **Classifier** (:class:`ResidualNet`): signed square root of the histograms (the descriptor's power
   normalisation), then a linear layer to two logits — the recast of the descriptor's linear classifier; trained
   with cross-entropy.

Source check (2026-11-30). Checked against LAE §3.1.2 (full text in the shared papers): residual after high-pass
filtering, co-occurrences of 4-pixel patterns along the horizontal and vertical directions, "recasts the
hand-crafted Steganalysis features ... to a CNN-based network", lr 1e-5, batch 16 — all as here. The paper's own
text is stored only as its title and abstract (arXiv:1703.04615; the abstract also in
learning2hash/learning2hash.github.io ``_publications/cozzolino2017recasting.markdown``), which confirms "a class of
residual-based descriptors can be actually regarded as a simple constrained CNN", then "relaxing the constraints,
and fine-tuning the net on a relatively small training set". **Not checked against the paper text; source: the
descriptor family as we know it (written offline)**: the third-order filter, Δ, T, β, the soft quantiser as a
1×1 conv + softmax, the co-occurrence conv with bias −3, the signed square root and the linear classifier. No code
was released by the authors that could be read here.

Choices where the paper (or what could be read of it offline) is silent:
* Δ = 1, T = 2 (5 levels, 625 patterns per direction, 1250 features), β = 4; the horizontal residual feeds the
  horizontal co-occurrence and the vertical residual the vertical one; histograms concatenated, not merged by
  symmetries.
* The residual filters stay fixed by default (``train_residual=False``), so the net remains residual-based (no DC
  response) whatever the fine-tuning does; ``train_residual=True`` relaxes them too.
* Input: LAE's 256 px face crops in [0, 1] (mean 0, std 1), converted to luminance (BT.601) inside the net.
* LAE §3.1.2: lr 1e-5, batch 16; Adam (recipe ``residualnet``).
"""

from __future__ import annotations

import itertools
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dflab.losses import classification_loss
from dflab.models.base import Detector, InputSpec, register_detector
from dflab.models.layers import luma

#: third-order derivative ``−x[j−1] + 3x[j] − 3x[j+1] + x[j+2]`` (the residual of the descriptor)
THIRD_ORDER = (-1.0, 3.0, -3.0, 1.0)


class ResidualFilter(nn.Module):
    """Luminance → horizontal and vertical third-order residuals (grey levels), fixed unless ``trainable``.

    Shape:
        (B, 3, H, W) in [0, 1] -> (B, 2, H−3, W−3): channel 0 horizontal, 1 vertical (valid convolution)
    """

    def __init__(self, trainable: bool = False) -> None:
        super().__init__()
        k = torch.tensor(THIRD_ORDER)
        kh = torch.zeros(4, 4)
        kh[1, :] = k  # horizontal taps on the row of the second pixel
        kv = kh.t().contiguous()
        weight = torch.stack([kh, kv])[:, None]  # (2, 1, 4, 4)
        if trainable:
            self.weight = nn.Parameter(weight)
        else:
            self.register_buffer("weight", weight, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        grey = 255.0 * luma(x)
        return F.conv2d(grey, self.weight)


class SoftQuantizer(nn.Module):
    """Quantisation to 2T+1 levels with step Δ and truncation at ±T, as a 1×1 conv + softmax (soft one-hot).

    Shape:
        (B, D, H, W) residuals -> (B, D, 2T+1, H, W) level probabilities
    """

    def __init__(self, step: float = 1.0, trunc: int = 2, beta: float = 4.0) -> None:
        super().__init__()
        levels = torch.arange(-trunc, trunc + 1, dtype=torch.float32)
        self.weight = nn.Parameter(2 * beta * levels / step)
        self.bias = nn.Parameter(-beta * levels**2)
        self.n_levels = len(levels)

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        logits = r.unsqueeze(2) * self.weight.view(1, 1, -1, 1, 1) + self.bias.view(1, 1, -1, 1, 1)
        return logits.softmax(dim=2)


class CooccurrenceConv(nn.Module):
    """Indicators of the (2T+1)^4 patterns of 4 consecutive quantised residuals along one direction.

    Shape:
        (B, L, H, W) level maps -> (B, L^4, H, W−3) (horizontal) or (B, L^4, H−3, W) (vertical)
    """

    def __init__(self, n_levels: int, horizontal: bool) -> None:
        super().__init__()
        patterns = list(itertools.product(range(n_levels), repeat=4))
        weight = torch.zeros(len(patterns), n_levels, 1, 4)
        for p, pattern in enumerate(patterns):
            for tap, level in enumerate(pattern):
                weight[p, level, 0, tap] = 1.0
        self.conv = nn.Conv2d(n_levels, len(patterns), (1, 4) if horizontal else (4, 1))
        with torch.no_grad():
            self.conv.weight.copy_(weight if horizontal else weight.transpose(2, 3))
            self.conv.bias.fill_(-3.0)

    def forward(self, q: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv(q))


@register_detector("residualnet", tiny={"size": 64, "trunc": 1})
class ResidualNet(Detector):
    """Residual-based descriptor recast as a CNN.

    Args:
        size: input size (LAE's crops: 256; the net itself runs at any size ≥ 7).
        step: quantisation step Δ.
        trunc: truncation T (2T+1 levels; (2T+1)^4 co-occurrence patterns per direction).
        beta: sharpness β of the soft quantiser at initialisation.
        train_residual: also train the high-pass filters (default: fixed).
        margin: input contract (face box margin).
        align: input contract.

    Shape:
        images (B, 3, S, S) in [0, 1] -> {"logits": (B, 2), "features": (B, 2·(2T+1)^4) histograms}
    """

    def __init__(
        self,
        size: int = 256,
        step: float = 1.0,
        trunc: int = 2,
        beta: float = 4.0,
        train_residual: bool = False,
        margin: float = 1.3,
        align: str = "box",
    ) -> None:
        super().__init__(InputSpec(size=size, margin=margin, align=align, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0)))
        self.residual = ResidualFilter(trainable=train_residual)
        self.quantize = SoftQuantizer(step, trunc, beta)
        n = self.quantize.n_levels
        self.cooc_h = CooccurrenceConv(n, horizontal=True)
        self.cooc_v = CooccurrenceConv(n, horizontal=False)
        self.fc = nn.Linear(2 * n**4, 2)

    def histograms(self, images: torch.Tensor) -> torch.Tensor:
        """Concatenated co-occurrence histograms (horizontal, vertical). Shape: (B, 3, H, W) -> (B, 2·L^4)."""
        q = self.quantize(self.residual(images))  # (B, 2, L, h, w)
        h = self.cooc_h(q[:, 0]).mean(dim=(2, 3))
        v = self.cooc_v(q[:, 1]).mean(dim=(2, 3))
        return torch.cat([h, v], dim=1)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images of shape (B, 3, H, W), got {tuple(images.shape)}")
        hist = self.histograms(images)
        # signed square root: the descriptor's power normalisation (hist ≥ 0 at init; relaxed weights may not be)
        feats = hist.sign() * (hist.abs() + 1e-8).sqrt()
        return {"logits": self.fc(feats), "features": hist}

    def compute_loss(self, batch: dict[str, Any], outputs: dict[str, torch.Tensor], **phase: Any) -> dict[str, Any]:
        ce = classification_loss(outputs["logits"], batch["label"])
        return {"loss": ce, "ce": ce.detach()}
