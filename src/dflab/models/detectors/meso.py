"""MesoNet (Afchar et al., "MesoNet: a compact facial video forgery detection network", WIFS 2018): Meso-4 and
MesoInception-4.

* **MesoInception-4** — a baseline of BiG-Arts Table 1. Architecture as in the paper's §3.2 / official Keras code:
  two inception modules (1×1, 1×1→3×3, 1×1→3×3 dilation 2, 1×1→3×3 dilation 3; widths (1,4,4,2) then (2,4,4,2))
  each followed by batch norm and 2×2 max-pooling, two 5×5 conv(16) + BN + max-pool (2 and 4), then dropout 0.5 →
  FC 16 → LeakyReLU(0.1) → dropout 0.5 → output. Input 256×256.
* **Meso-4** — the "MesoNet" rows of LiSiam Table I and of the multi-metric-loss paper's Tables 1–2, "Meso4" in
  DADD Table 1. The paper's §3.1 / official Keras code: four conv + ReLU + batch norm + max-pool blocks — conv 3×3
  (8), conv 5×5 (8), conv 5×5 (16), conv 5×5 (16), "same" padding, pools 2, 2, 2, 4 (so a 256 px face becomes an
  8×8×16 map) — then the same head: dropout 0.5 → FC 16 → LeakyReLU(0.1) → dropout 0.5 → output.

Training (§4 of the paper, both networks; the recipes ``meso4`` / ``meso_inception4``): Adam, lr 1e-3 divided by
10 periodically (the paper does not say how often: every 10 epochs here), batch 75, from scratch, RGB in [0, 1].

Deviations (both networks): the output is a 2-way logit (softmax) rather than one sigmoid unit (equivalent up to
parameterisation, and the detector contract wants ``(B, 2)`` logits), trained with cross-entropy where the official
Keras code fits the sigmoid with mean squared error; an adaptive average pool before the flatten makes the FC input
size independent of the input size (it is the identity at the native size); batch norm keeps PyTorch's defaults
(momentum 0.1, eps 1e-5) rather than Keras' (0.99 ≙ 0.01, 1e-3). Meso-4 has the paper's 27,977 trainable
parameters plus the second output unit (17).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from dflab.losses import classification_loss
from dflab.models.base import Detector, InputSpec, register_detector


def conv_bn_pool(in_ch: int, out_ch: int, kernel: int, pool: int) -> list[nn.Module]:
    """MesoNet's block: conv (same padding) → ReLU → batch norm → max-pool, as flat modules of a ``Sequential``.

    Shape:
        (B, in_ch, H, W) -> (B, out_ch, H // pool, W // pool).
    """
    return [nn.Conv2d(in_ch, out_ch, kernel, padding=kernel // 2), nn.ReLU(inplace=True), nn.BatchNorm2d(out_ch),
            nn.MaxPool2d(pool)]  # fmt: skip


class InceptionLayer(nn.Module):
    """MesoInception's module: four parallel branches concatenated.

    Shape:
        (B, C, H, W) -> (B, a+b+c+d, H, W).
    """

    def __init__(self, in_ch: int, a: int, b: int, c: int, d: int) -> None:
        super().__init__()
        self.b1 = nn.Conv2d(in_ch, a, 1)
        self.b2 = nn.Sequential(nn.Conv2d(in_ch, b, 1), nn.ReLU(inplace=True), nn.Conv2d(b, b, 3, padding=1))
        self.b3 = nn.Sequential(
            nn.Conv2d(in_ch, c, 1), nn.ReLU(inplace=True), nn.Conv2d(c, c, 3, padding=2, dilation=2)
        )
        self.b4 = nn.Sequential(
            nn.Conv2d(in_ch, d, 1), nn.ReLU(inplace=True), nn.Conv2d(d, d, 3, padding=3, dilation=3)
        )
        self.act = nn.ReLU(inplace=True)
        self.out_ch = a + b + c + d

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(torch.cat([self.b1(x), self.b2(x), self.b3(x), self.b4(x)], dim=1))


class _MesoNet(Detector):
    """What both MesoNets share: the input contract, the head (dropout → FC → LeakyReLU(0.1) → dropout → 2 logits
    on the stride-32 map), forward and the cross-entropy loss. Subclasses build ``self.features``."""

    def __init__(
        self, size: int, width: int, dropout: float, margin: float, align: str, mean: tuple, std: tuple
    ) -> None:
        super().__init__(InputSpec(size=size, margin=margin, align=align, mean=tuple(mean), std=tuple(std)))
        grid = max(1, size // 32)
        self.pool = nn.AdaptiveAvgPool2d(grid)
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(width * grid * grid, width),
            nn.LeakyReLU(0.1),
            nn.Dropout(dropout),
            nn.Linear(width, 2),
        )

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images of shape (B, 3, H, W), got {tuple(images.shape)}")
        feats = self.pool(self.features(images))
        return {"logits": self.head(feats), "features": feats.flatten(1)}

    def compute_loss(self, batch: dict[str, Any], outputs: dict[str, torch.Tensor], **phase: Any) -> dict[str, Any]:
        ce = classification_loss(outputs["logits"], batch["label"])
        return {"loss": ce, "ce": ce.detach()}


@register_detector("meso_inception4", tiny={"size": 64, "width": 8})
class MesoInception4(_MesoNet):
    """MesoInception-4.

    Args:
        size: input size (paper: 256).
        width: channels of the two 5×5 convs and of the FC layer (paper: 16).
        dropout: dropout of the head (paper: 0.5).
        margin: input contract. The paper feeds RGB in [0, 1]: mean 0, std 1.
        align: input contract. The paper feeds RGB in [0, 1]: mean 0, std 1.
        mean: input contract. The paper feeds RGB in [0, 1]: mean 0, std 1.
        std: input contract. The paper feeds RGB in [0, 1]: mean 0, std 1.

    Shape:
        images (B, 3, size, size) -> {"logits": (B, 2)}.
    """

    def __init__(
        self,
        size: int = 256,
        width: int = 16,
        dropout: float = 0.5,
        margin: float = 1.3,
        align: str = "box",
        mean: tuple[float, float, float] = (0.0, 0.0, 0.0),
        std: tuple[float, float, float] = (1.0, 1.0, 1.0),
    ) -> None:
        super().__init__(size, width, dropout, margin, align, mean, std)
        inc1 = InceptionLayer(3, 1, 4, 4, 2)
        inc2 = InceptionLayer(inc1.out_ch, 2, 4, 4, 2)
        self.features = nn.Sequential(
            inc1,
            nn.BatchNorm2d(inc1.out_ch),
            nn.MaxPool2d(2),
            inc2,
            nn.BatchNorm2d(inc2.out_ch),
            nn.MaxPool2d(2),
            *conv_bn_pool(inc2.out_ch, width, 5, 2),
            *conv_bn_pool(width, width, 5, 4),
        )


@register_detector("meso4", tiny={"size": 64, "widths": (4, 4, 8, 8)})
class Meso4(_MesoNet):
    """Meso-4: four conv blocks, then the MesoNet head.

    Args:
        size: input size (paper: 256).
        widths: channels of the four convs (paper: 8, 8, 16, 16); the FC layer has ``widths[-1]`` units (paper: 16).
        dropout: dropout of the head (paper: 0.5).
        margin: input contract. The paper feeds RGB in [0, 1]: mean 0, std 1.
        align: input contract. The paper feeds RGB in [0, 1]: mean 0, std 1.
        mean: input contract. The paper feeds RGB in [0, 1]: mean 0, std 1.
        std: input contract. The paper feeds RGB in [0, 1]: mean 0, std 1.

    Shape:
        images (B, 3, size, size) -> {"logits": (B, 2), "features": (B, widths[-1]·(size//32)²)}.
    """

    #: kernel size and max-pool of the four blocks (paper §3.1)
    KERNELS = (3, 5, 5, 5)
    POOLS = (2, 2, 2, 4)

    def __init__(
        self,
        size: int = 256,
        widths: tuple[int, int, int, int] = (8, 8, 16, 16),
        dropout: float = 0.5,
        margin: float = 1.3,
        align: str = "box",
        mean: tuple[float, float, float] = (0.0, 0.0, 0.0),
        std: tuple[float, float, float] = (1.0, 1.0, 1.0),
    ) -> None:
        if len(widths) != 4:
            raise ValueError(f"Meso-4 has four conv blocks, got widths {tuple(widths)}")
        super().__init__(size, widths[-1], dropout, margin, align, mean, std)
        chans = (3, *widths)
        blocks = [conv_bn_pool(*a) for a in zip(chans[:-1], chans[1:], self.KERNELS, self.POOLS, strict=True)]
        self.features = nn.Sequential(*(m for block in blocks for m in block))
