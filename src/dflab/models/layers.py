"""Shared building blocks, written once (see ../shared/STYLE.md §2).

* :class:`SqueezeExcitation` — SE block (Hu et al., CVPR 2018): global average pool, FC → ReLU → FC → sigmoid.
* :class:`SCSE` — concurrent spatial and channel squeeze & excitation (Roy et al., MICCAI 2018), as BiG-Arts §3.2
  describes it: channel branch = average pool + two FC layers, spatial branch = one 1×1 convolution.
* :class:`DecoderBlock` — U-Net style decoder block of BiG-Arts Fig. 3: upsample ×2, concatenate the backbone's
  residual-block feature, two 3×3 conv-BN-ReLU, SCSE.
* :class:`SeparableConv2d` — depthwise 3×3 + pointwise 1×1 (Chollet, CVPR 2017), the unit LiSiam §III-A uses.
* :class:`SpatialGather` + :class:`ObjectContext` — the OCR block (Yuan et al., ECCV 2020) LiSiam §III-E puts after
  its backbone: soft object regions from coarse class maps, object-region representations, pixel–region relation.

Others may append blocks at the end of this file; do not change the existing ones.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def conv_bn_relu(in_ch: int, out_ch: int, kernel_size: int = 3, stride: int = 1) -> nn.Sequential:
    """Conv (no bias) → BatchNorm → ReLU with "same" padding."""
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, kernel_size, stride=stride, padding=kernel_size // 2, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.ReLU(inplace=True),
    )


class SqueezeExcitation(nn.Module):
    """Channel re-weighting: ``x * sigmoid(FC(ReLU(FC(avgpool(x)))))``.

    Args:
        channels: input channels C.
        reduction: hidden width is ``max(1, C // reduction)`` (16 in SE-Net and in LiSiam's code).
        bias: whether the two FC layers have biases (LiSiam's official SE layer has none).

    Shape:
        x (B, C, H, W) → (B, C, H, W)
    """

    def __init__(self, channels: int, reduction: int = 16, bias: bool = False) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.fc = nn.Sequential(
            nn.Linear(channels, hidden, bias=bias),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, channels, bias=bias),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.fc(x.mean(dim=(2, 3)))
        return x * w[:, :, None, None]


class SCSE(nn.Module):
    """Concurrent spatial & channel squeeze-excitation: ``x·cSE(x) + x·sSE(x)``.

    Channel SE: average pool + two FC layers (as 1×1 convs) + sigmoid; spatial SE: one 1×1 conv to a single map +
    sigmoid (BiG-Arts §3.2 "Architecture"). The two recalibrated tensors are summed, as in Roy et al. and
    segmentation_models_pytorch.

    Shape:
        x (B, C, H, W) → (B, C, H, W)
    """

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.cse = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(channels, hidden, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, 1),
            nn.Sigmoid(),
        )
        self.sse = nn.Sequential(nn.Conv2d(channels, 1, 1), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.cse(x) + x * self.sse(x)


class DecoderBlock(nn.Module):
    """Upsample ×2, concatenate a skip feature (if any), two conv-BN-ReLU, SCSE.

    Args:
        in_ch: channels of the previous decoder output (or the deepest backbone feature).
        skip_ch: channels of the backbone residual-block feature joined at this scale (0 for none).
        out_ch: output channels.
        attention: apply :class:`SCSE` after the convolutions (BiG-Arts Fig. 3).

    Shape:
        x (B, in_ch, h, w), skip (B, skip_ch, ~2h, ~2w) or None → (B, out_ch, 2h, 2w) (or the skip's size).
    """

    def __init__(self, in_ch: int, skip_ch: int, out_ch: int, attention: bool = True) -> None:
        super().__init__()
        self.conv1 = conv_bn_relu(in_ch + skip_ch, out_ch)
        self.conv2 = conv_bn_relu(out_ch, out_ch)
        self.attention = SCSE(out_ch) if attention else nn.Identity()

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        if skip is not None:
            x = F.interpolate(x, size=skip.shape[-2:], mode="nearest")
            x = torch.cat([x, skip], dim=1)
        else:
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        return self.attention(self.conv2(self.conv1(x)))


class SeparableConv2d(nn.Module):
    """Depthwise k×k convolution followed by a pointwise 1×1 convolution (no activation in between).

    ``pointwise_padding`` pads the 1×1 convolution (each side grows by it), as LiSiam's official SCU does.

    Shape:
        x (B, in_ch, H, W) → (B, out_ch, ⌈H/stride⌉ + 2·pointwise_padding, ⌈W/stride⌉ + 2·pointwise_padding)
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel_size: int = 3,
        stride: int = 1,
        bias: bool = False,
        pointwise_padding: int = 0,
    ) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(
            in_ch, in_ch, kernel_size, stride=stride, padding=kernel_size // 2, groups=in_ch, bias=bias
        )
        self.pointwise = nn.Conv2d(in_ch, out_ch, 1, padding=pointwise_padding, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


class SpatialGather(nn.Module):
    """OCR step 1–2: object-region representations from soft object regions (Yuan et al., Eq. 2).

    Each of the K coarse class maps is softmax-normalised over the spatial positions and used to pool the pixel
    features into one vector per object region.

    Shape:
        feats (B, C, H, W), probs (B, K, H, W) class logits → (B, C, K, 1)
    """

    def __init__(self, scale: float = 1.0) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, feats: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
        b, c = feats.shape[:2]
        k = probs.shape[1]
        probs = F.softmax(self.scale * probs.reshape(b, k, -1), dim=2)  # (B, K, HW)
        context = torch.bmm(probs, feats.reshape(b, c, -1).transpose(1, 2))  # (B, K, C)
        return context.transpose(1, 2).unsqueeze(3)


class ObjectContext(nn.Module):
    """OCR step 3: pixel–region relation and the augmented representation (Yuan et al., Eqs. 3–4).

    Pixel queries (two 1×1 conv-BN-ReLU) attend over the K region keys with scaled dot-product similarity; the
    gathered region values are projected back to ``channels`` and fused with the pixel features by concatenation
    and a 1×1 conv-BN-ReLU (dropout-free, as in the OCRNet reference code).

    Args:
        channels: channels of the pixel features and of the output (512 in LiSiam).
        transform: key/query width (256 in LiSiam's code).

    Shape:
        feats (B, C, H, W), context (B, C, K, 1) → (B, C, H, W)
    """

    def __init__(self, channels: int, transform: int) -> None:
        super().__init__()
        self.query = nn.Sequential(conv_bn_relu(channels, transform, 1), conv_bn_relu(transform, transform, 1))
        self.key = nn.Sequential(conv_bn_relu(channels, transform, 1), conv_bn_relu(transform, transform, 1))
        self.value = conv_bn_relu(channels, transform, 1)
        self.up = conv_bn_relu(transform, channels, 1)
        self.fuse = conv_bn_relu(2 * channels, channels, 1)
        self.transform = transform

    def forward(self, feats: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        b, _, h, w = feats.shape
        q = self.query(feats).reshape(b, self.transform, -1).transpose(1, 2)  # (B, HW, T)
        k = self.key(context).reshape(b, self.transform, -1)  # (B, T, K)
        v = self.value(context).reshape(b, self.transform, -1).transpose(1, 2)  # (B, K, T)
        sim = F.softmax(torch.bmm(q, k) * self.transform**-0.5, dim=-1)  # (B, HW, K)
        out = torch.bmm(sim, v).transpose(1, 2).reshape(b, self.transform, h, w)
        return self.fuse(torch.cat([self.up(out), feats], dim=1))


#: ITU-R BT.601 luma weights (R, G, B)
LUMA_BT601 = (0.299, 0.587, 0.114)


def luma(images: torch.Tensor) -> torch.Tensor:
    """The BT.601 grey level of RGB images (the grey input of the hand-crafted-feature baselines).

    Shape:
        (B, 3, H, W) -> (B, 1, H, W), same dtype and device.
    """
    return (images * images.new_tensor(LUMA_BT601).view(1, 3, 1, 1)).sum(dim=1, keepdim=True)
