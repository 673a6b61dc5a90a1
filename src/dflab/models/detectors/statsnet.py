"""StatsNet: Rahmouni, Nozick, Yamagishi & Echizen, "Distinguishing computer graphics from natural images using
convolution neural networks" (IEEE WIFS 2017), the Stats-2L network; a baseline of LAE Table 3 (Du et al., CIKM 2020,
§3.1.2 and ref. [29]: "CNN framework with a global pooling layer that computes four statistics (mean, variance,
maximum, minimum). We consider the Stats-2L network"; lr 1e-4, batch 64).

Rahmouni et al. §III: a filtering stage of convolution layers, a *statistical pooling* layer that reduces each of the
last layer's :math:`K` feature maps :math:`F_k` to four numbers

.. math:: \\mu_k = \\overline{F_k}, \\quad \\sigma^2_k = \\overline{(F_k - \\mu_k)^2}, \\quad
          \\max_k = \\max F_k, \\quad \\min_k = \\min F_k,

and a classifier (one hidden fully-connected layer with dropout, then the output). Stats-2L, as in the authors'
released code (``CGvsPhoto/model.py``): two 3×3 convolutions, 32 then 64 filters, stride 1, zero ("same") padding,
ReLU, no spatial pooling; statistics over the whole map (the variance is the population variance, divided by
:math:`HW`); FC 1024 → ReLU → dropout (keep probability 0.65 there: ``p = 0.35``) → FC; softmax cross-entropy, Adam
1e-4; 100 × 100 patches of the green channel.

Source check (2026-11-30). Re-read the released code in full (NicoRahm/CGvsPhoto, ``CGvsPhoto/model.py``): every
value above matches it — ``filters = [32, 64]``, ``filter_size = 3``, ``padding='SAME'``, stride 1, ReLU, statistics
mean / min / max / population variance over each map, ``Dense1`` of 1024 + ReLU, ``keep_prob`` 0.65 in training,
readout to 2 classes, ``AdamOptimizer(1e-4)``, ``batch_size = 50``, ``only_green=True``; weights
``truncated_normal(stddev = sqrt(2 / n_in))``, biases ``truncated_normal(mean = 0.5, stddev = 0.1)``. Checked against
LAE §3.1.2: Stats-2L, lr 1e-4, batch 64. The paper's own text is stored only as its opening (docslib.org/doc/8325302,
vdocument.in/distinguishing-computer-graphics-from-natural-images-using-vnozickpublicationsrahmouni.html): it
confirms a CNN "with a custom pooling layer" whose local (patch) estimates are aggregated over the picture; the
section number (§III) and the 100 px patch size are **not checked against the paper text** (source: recollection;
the released ``Model`` takes the patch size as an argument, its histogram helper defaults to 100). The released
training also flips and rotates the patches at random (``get_next_train_batch(…, random_flip_flop=True,
random_rotate=True)``); the recipe uses no augmentation (LAE names none for its baselines).

Deviations and choices:

* input: dflab's images are RGB in [0, 1] (mean 0, std 1); ``channels="green"`` (default) takes the green channel
  as the released code does, ``"gray"`` the BT.601 luma, ``"rgb"`` all three;
* initialisation as the released code: weights truncated normal with std :math:`\\sqrt{2/\\mathrm{fan\\_in}}` (cut at
  2 std), biases truncated normal with mean 0.5 and std 0.1 (so the ReLU maps start active and their statistics
  informative);
* the paper classifies patches and aggregates them over the full image; a face crop is one patch here (LAE scores
  frames), so there is no aggregation;
* the output is a 2-way logit (class 1 = fake), as every dflab detector.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
from torch import nn

from dflab.losses import classification_loss
from dflab.models.base import Detector, InputSpec, register_detector
from dflab.models.layers import luma


def statistical_pooling(x: torch.Tensor) -> torch.Tensor:
    """Rahmouni et al.'s statistics layer: mean, variance (population), maximum and minimum of every feature map.

    Shape:
        (B, K, H, W) -> (B, K, 4), the last axis ordered (mean, variance, max, min).
    """
    if x.ndim != 4:
        raise ValueError(f"expected feature maps of shape (B, K, H, W), got {tuple(x.shape)}")
    flat = x.flatten(2)
    mean = flat.mean(dim=2)
    var = flat.var(dim=2, unbiased=False)
    return torch.stack([mean, var, flat.amax(dim=2), flat.amin(dim=2)], dim=2)


def _init_released(m: nn.Module) -> None:
    """The released code's initialisation: He-scaled truncated-normal weights, biases around 0.5."""
    if isinstance(m, (nn.Conv2d, nn.Linear)):
        fan_in = m.weight[0].numel()
        std = math.sqrt(2.0 / fan_in)
        nn.init.trunc_normal_(m.weight, std=std, a=-2 * std, b=2 * std)
        nn.init.trunc_normal_(m.bias, mean=0.5, std=0.1, a=0.3, b=0.7)


@register_detector("statsnet", tiny={"size": 64, "filters": (4, 8), "hidden": 32})
class StatsNet(Detector):
    """StatsNet, the Stats-2L network of Rahmouni et al. 2017.

    Args:
        size: input side (paper: 100 × 100 patches; the statistics are global, so any side works).
        channels: ``"green"`` (released code), ``"gray"`` or ``"rgb"``.
        filters: output channels of the 3×3 convolutions; their number is the "L" (Stats-2L: 32, 64).
        hidden: width of the hidden FC layer (paper: 1024).
        dropout: dropout of the hidden FC layer (released code: keep 0.65, i.e. 0.35).
        margin: input contract (face crop margin, dflab's default box crop).
        align: input contract.
        mean: input contract. RGB in [0, 1]: mean 0, std 1 (the released code scales pixels to [0, 1]).
        std: input contract.

    Shape:
        images (B, 3, H, W) -> {"logits": (B, 2), "stats": (B, filters[-1], 4), "features": (B, hidden)}.
    """

    def __init__(
        self,
        size: int = 100,
        channels: Literal["green", "gray", "rgb"] = "green",
        filters: tuple[int, ...] = (32, 64),
        hidden: int = 1024,
        dropout: float = 0.35,
        margin: float = 1.3,
        align: str = "box",
        mean: tuple[float, float, float] = (0.0, 0.0, 0.0),
        std: tuple[float, float, float] = (1.0, 1.0, 1.0),
    ) -> None:
        super().__init__(InputSpec(size=size, margin=margin, align=align, mean=tuple(mean), std=tuple(std)))
        if channels not in ("green", "gray", "rgb"):
            raise ValueError(f"channels must be 'green', 'gray' or 'rgb', got {channels!r}")
        if not filters:
            raise ValueError("StatsNet needs at least one convolution layer")
        self.channels = channels
        layers: list[nn.Module] = []
        in_ch = 3 if channels == "rgb" else 1
        for out_ch in filters:
            layers += [nn.Conv2d(in_ch, out_ch, 3, padding=1), nn.ReLU(inplace=True)]
            in_ch = out_ch
        self.filtering = nn.Sequential(*layers)
        self.fc = nn.Sequential(nn.Linear(4 * in_ch, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout))
        self.head = nn.Linear(hidden, 2)
        self.apply(_init_released)

    def _select(self, images: torch.Tensor) -> torch.Tensor:
        if self.channels == "green":
            return images[:, 1:2]
        if self.channels == "gray":
            return luma(images)
        return images

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images of shape (B, 3, H, W), got {tuple(images.shape)}")
        maps = self.filtering(self._select(images))
        stats = statistical_pooling(maps)
        feats = self.fc(stats.flatten(1))
        return {"logits": self.head(feats), "stats": stats, "features": feats}

    def compute_loss(self, batch: dict[str, Any], outputs: dict[str, torch.Tensor], **phase: Any) -> dict[str, Any]:
        ce = classification_loss(outputs["logits"], batch["label"])
        return {"loss": ce, "ce": ce.detach()}
