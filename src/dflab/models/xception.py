"""Xception in timm's ``legacy_xception`` layout and parameter names, run stage by stage.

Detectors that need Xception's stages separately, or a changed stem, build it here instead of through timm's model:
GSRM (:mod:`dflab.models.detectors.gsrm`) runs two of them side by side with attention modules between the stages;
SPSL (:mod:`dflab.models.detectors.spsl`) takes a 4-channel input and keeps none of the middle flow. The widths and
the number of middle blocks are configurable so a tiny variant keeps the structure. The blocks themselves are
timm's (``timm.models.xception.Block`` / ``SeparableConv2d``), so ImageNet weights of ``legacy_xception`` load by
name: ``conv1 … block1–3, block4–11 (middle), block12 (exit), conv3, bn3, conv4, bn4``. The exit block is
``block12`` whatever the middle depth, as in timm's file.

Shape (full widths, 256 px):
    stem_a (B, 32, 127, 127) -> stem_b (B, 64, 125, 125) -> entry (B, 728, 16, 16) -> middle (B, 728, 16, 16)
    -> exit (B, 2048, 8, 8)
"""

from __future__ import annotations

import torch
from torch import nn

#: widths of timm's legacy_xception: stem conv1, stem conv2, block1, block2, entry/middle, block12, conv3, conv4
XCEPTION_WIDTHS = (32, 64, 128, 256, 728, 1024, 1536, 2048)
#: Xception's middle flow: blocks 4..11
FULL_MIDDLE = 8


class XceptionTrunk(nn.Module):
    """Xception without its classifier, in stages (:meth:`stem_a`, :meth:`stem_b`, :meth:`entry`, :meth:`middle`,
    :meth:`exit`); ``forward`` runs them all.

    Args:
        in_chans: input channels of ``conv1``.
        widths: the eight widths of :data:`XCEPTION_WIDTHS`.
        middle_blocks: middle-flow blocks kept, 0 to 8 (blocks ``4 … 3 + middle_blocks``).

    Shape:
        (B, in_chans, H, W) -> (B, widths[7], H/32, W/32), the last BN's output (no final ReLU: callers differ).
    """

    def __init__(
        self, in_chans: int = 3, widths: tuple[int, ...] = XCEPTION_WIDTHS, middle_blocks: int = FULL_MIDDLE
    ) -> None:
        super().__init__()
        if len(widths) != 8 or not 0 <= middle_blocks <= FULL_MIDDLE:
            raise ValueError(f"need 8 widths and 0 <= middle_blocks <= 8, got {tuple(widths)}, {middle_blocks}")
        # timm's own Xception blocks (parameter names and all); imported here, after dflab.models.base made
        # torchvision importable (dflab.compat), as every timm import in dflab is
        from timm.models.xception import Block, SeparableConv2d

        c1, c2, b1, b2, mid, b12, c3, c4 = widths
        self.in_chans, self.n_middle, self.num_features, self.widths = in_chans, middle_blocks, c4, tuple(widths)
        self.conv1 = nn.Conv2d(in_chans, c1, 3, 2, 0, bias=False)
        self.bn1 = nn.BatchNorm2d(c1)
        self.act1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(c1, c2, 3, bias=False)
        self.bn2 = nn.BatchNorm2d(c2)
        self.act2 = nn.ReLU(inplace=True)
        self.block1 = Block(c2, b1, 2, 2, start_with_relu=False)
        self.block2 = Block(b1, b2, 2, 2)
        self.block3 = Block(b2, mid, 2, 2)
        for i in range(4, 4 + middle_blocks):
            setattr(self, f"block{i}", Block(mid, mid, 3, 1))
        self.block12 = Block(mid, b12, 2, 2, grow_first=False)
        self.conv3 = SeparableConv2d(b12, c3, 3, 1, 1)
        self.bn3 = nn.BatchNorm2d(c3)
        self.act3 = nn.ReLU(inplace=True)
        self.conv4 = SeparableConv2d(c3, c4, 3, 1, 1)
        self.bn4 = nn.BatchNorm2d(c4)

    def block_names(self) -> list[str]:
        """The residual blocks run, in order."""
        return ["block1", "block2", "block3", *(f"block{i}" for i in range(4, 4 + self.n_middle)), "block12"]

    def skipped_prefixes(self) -> tuple[str, ...]:
        """State-dict prefixes of a full Xception's middle blocks this trunk does not have."""
        return tuple(f"block{i}." for i in range(4 + self.n_middle, 4 + FULL_MIDDLE))

    def stem_a(self, x: torch.Tensor) -> torch.Tensor:
        return self.act1(self.bn1(self.conv1(x)))

    def stem_b(self, x: torch.Tensor) -> torch.Tensor:
        return self.act2(self.bn2(self.conv2(x)))

    def entry(self, x: torch.Tensor) -> torch.Tensor:
        for i in (1, 2, 3):
            x = getattr(self, f"block{i}")(x)
        return x

    def middle(self, x: torch.Tensor, start: int = 0, stop: int | None = None) -> torch.Tensor:
        """Middle blocks ``start … stop - 1`` (0-based within the middle flow; default: all of them)."""
        for i in range(start, self.n_middle if stop is None else stop):
            x = getattr(self, f"block{4 + i}")(x)
        return x

    def exit(self, x: torch.Tensor) -> torch.Tensor:
        """The exit block, conv3 + BN + ReLU, conv4 + BN (no final ReLU)."""
        x = self.block12(x)
        return self.bn4(self.conv4(self.act3(self.bn3(self.conv3(x)))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.exit(self.middle(self.entry(self.stem_b(self.stem_a(x)))))
