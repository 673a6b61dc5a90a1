"""AlexNet (Krizhevsky et al., NeurIPS 2012) as a pooled feature extractor in torchvision's key layout.

BiG-Arts Table 1 (§4.2) lists AlexNet among the "well-known base networks trained end to end". timm has no AlexNet,
so this file rebuilds torchvision's ``alexnet`` (the single-tower "one weird trick" variant torchvision ships) without
its last linear layer: ``features.*`` (5 convs), ``avgpool`` (6 x 6) and ``classifier.1`` / ``classifier.4`` (fc6 /
fc7) keep torchvision's names and shapes, so torchvision's ImageNet state dict loads strictly except its 1000-way
``classifier.6`` (the new 2-way head replaces it). The weights come through the ``torchvision:`` spec of
:func:`dflab.models.backbones.resolve_pretrained`, never at construction.

Deviations from torchvision: ReLUs are not in place (Grad-CAM hooks read the conv outputs); ``width`` and
``hidden`` shrink the net for the tiny test variant only (1.0 / 4096 give torchvision's shapes).
"""

from __future__ import annotations

import torch
from torch import nn

#: torchvision AlexNet conv widths (conv1..conv5)
_WIDTHS = (64, 192, 384, 256, 256)


class AlexNet(nn.Module):
    """AlexNet conv features + fc6/fc7; ``forward`` returns the fc7 activations (``num_features`` wide).

    Args:
        in_chans: input channels.
        width: multiplier on the conv widths (1.0 = torchvision's).
        hidden: width of fc6/fc7 (4096 = torchvision's).
        dropout: dropout before fc6 and fc7, as torchvision's classifier.

    Shape:
        images (B, in_chans, H, W), H, W >= 63 -> (B, hidden).
    """

    def __init__(self, in_chans: int = 3, width: float = 1.0, hidden: int = 4096, dropout: float = 0.5) -> None:
        super().__init__()
        c1, c2, c3, c4, c5 = (max(1, round(c * width)) for c in _WIDTHS)
        self.features = nn.Sequential(
            nn.Conv2d(in_chans, c1, kernel_size=11, stride=4, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(c1, c2, kernel_size=5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(c2, c3, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(c3, c4, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(c4, c5, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2),
        )
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        # indices 0-5 of torchvision's classifier; its index 6 (the 1000-way fc8) is left out
        self.classifier = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(c5 * 6 * 6, hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
        )
        self.num_features = hidden

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(images))
        return self.classifier(torch.flatten(x, 1))
