"""GSRM: two-stream high-frequency detector (Luo, Zhang, Yan, Liu, "Generalizing Face Forgery Detection with
High-frequency Features", CVPR 2021, pp. 16317–16326; cited by BiG-Arts as "GSRM [27]", the baseline that "targets the
high-frequency features extracted by SRM filters", Tables 1–4).

Sources: the paper's abstract and method description (its three modules, named below), and the authors' released
*model* code (github.com/crywang/face-forgery-detection, ``model_core.py`` / ``attention.py`` / ``srm_conv.py``;
no training code was released). The paper's full text with section and equation numbers could not be read offline
here, so modules are cited by the paper's own names and every fact taken from the released code says so.

Architecture (the paper's overview figure: an RGB stream and a high-frequency stream, both ImageNet Xception):

* **SRM filters** (:class:`SRMFilter`): three fixed 5×5 kernels of Fridrich & Kodovský's rich model — KB (3×3
  second-order "square", /4), KV (5×5 "square", /12) and the horizontal second-order edge ``[1, −2, 1]`` (/2) —
  followed by truncation to [−3, 3] (Hardtanh). They are constants (buffers): never trained, never in a state dict.
  On the image the three kernels act on the sum of the colour channels (one map per kernel, 3 channels out: the
  released code's kernel is the same 5×5 repeated over the input channels).
* **Multi-scale high-frequency feature extraction**: the high-frequency stream reads ``SRM(image)``; after the
  Xception stem's first and second convolutions the SRM kernels are also applied, depthwise, to the *RGB* stream's
  feature maps (:class:`FeatureSRM`: every channel × three kernels → truncation → 1×1 conv + BN + ReLU back to the
  channel count) and added to the high-frequency stream's features at the same scale, then ReLU.
* **Residual guided spatial attention** (RSA, :class:`ResidualGuidedAttention`): ``SRM(image)`` → conv 3×3 /2
  (3→32) + BN + ReLU → conv 3×3 (32→64) + BN + ReLU → CBAM-style spatial attention (channel mean and max → 7×7
  conv → sigmoid) gives a map ``A`` at the stem's output size; the RGB stem features become ``x·A + x``, then BN +
  ReLU. ``A`` is the detector's ``attention`` output (and its ``explain_maps``).
* **Dual cross-modality attention** (DCMA, :class:`DualCrossModalityAttention`): keys of each modality (1×1 conv
  C → C/8, then a 1×1 conv shared by both), ``E = K_rgbᵀ K_hf`` (N × N over positions); ``softmax`` of ``E``'s rows
  weights the high-frequency values for the RGB stream, ``softmax`` of ``Eᵀ``'s rows the RGB values for the
  high-frequency stream; each stream adds the result scaled by its own learnable γ, initialised to 0 (so training
  starts from the plain two-stream net, as in the released code).
* **Fusion and classifier**: the two exit-flow outputs (2048 ch each, before their last ReLU) are concatenated,
  1×1 conv → 2048 + BN + ReLU, re-weighted by CBAM channel attention (average- and max-pooled, shared MLP, ratio
  16) as ``f + f·CA(f)``, then ReLU, global average pool, dropout 0.5 and a linear layer to 2 logits.
  ``compute_loss`` is cross-entropy. Grad-CAM (``dflab explain``) hooks the fused map (``cam_layer``).

Choices where the paper is silent or unreadable here (taken from the released model code unless said otherwise):

* **Where the modules sit**: feature-level SRM after Xception's ``conv1`` (32 ch, stride 2) and ``conv2`` (64 ch);
  RSA on the stem output (after ``conv2``); DCMA twice — after the entry flow (``block3``, 728 ch, stride 16) and
  after the first half of the middle flow (``block7``); fusion after the exit flow. The paper names the modules and
  draws them in its overview figure; the block indices are the released code's.
* **Fixed kernels on features**: the released code builds the depthwise kernel with ``np.repeat(filters, C,
  axis=0)``, which hands channel ``c`` the kernels at positions ``3c, 3c+1, 3c+2`` of ``[KB]*C + [KV]*C + [H]*C``
  — most channels get one kernel three times. We give *every* channel all three kernels, which is what the
  module's description (three SRM filters at every scale) says; the output width (3·C) is unchanged.
* **DCMA without position mixing**: the released code inserts learned ``Linear(N, N)`` layers on ``E`` (N = 16·16),
  which ties the network to one input size (256 px). We leave them out so the detector runs at any size (the tiny
  variant at 64 px); the attention is otherwise the same (no 1/√d scaling, zero-initialised γ).
* **Input**: mean = std = 0.5 (the statistics of the ImageNet Xception weights, timm ``legacy_xception.tf_in1k``)
  and 256 px (the released DCMA's ``N = 16·16`` is Xception's stride-16 map of a 256 px crop). The SRM filters act
  on this normalised input, as in the released code (the truncation at ±3 then rarely bites).
* **Loss**: cross-entropy on the 2 logits by default (BiG-Arts compares every baseline as a binary classifier).
  ``loss="am_softmax"`` switches to a cosine head (``logits = s·cos θ``, so ``score`` stays a softmax) trained
  with AM-Softmax (Wang et al. 2018) at m = 0.45, s = 30: the loss and the values of DeepfakeBench's
  re-implementation (``training/detectors/srm_detector.py``: ``am_softmax`` with ``m=0.45, s=30``, commented
  "params are specified by the author"; it applies them to an unnormalised linear head). Whether the paper itself
  trains with AM-Softmax could not be checked against its text (see "Source check" below).

Source check (2026-11-30). The paper's full text is stored here only as page openings (title, abstract,
introduction: pdfslide.us/documents/generalizing-face-forgery-detection-with-high-frequency-generalizing-face.html,
tomesphere.com/paper/2103.12376); its method and implementation sections could not be read, so no module, layer or
training value above is checked against the paper's text. The abstract confirms the three modules by name. The
released model code (crywang/face-forgery-detection, README: "we will not release the training and testing codes")
was re-read for the architecture values marked as its own; the training values come from DeepfakeBench
(``training/config/detector/srm.yaml``: Adam lr 2e-4, betas (0.9, 0.999), weight decay 5e-4, batch 32, 10 epochs,
no scheduler, no augmentation; ``srm_detector.py``: AM-Softmax m = 0.45, s = 30). Fixed after this check: the
AM-Softmax margin default (was 0.35, Wang et al.'s general recommendation) and the ``gsrm`` recipe's missing
weight decay.
* **Initialisation**: both streams start from ImageNet Xception. The RGB stream loads ``model.pretrained`` with
  ``model.pretrained_prefix: rgb.`` (the same mechanism and timm key layout as the ``xception`` detector); the
  high-frequency stream loads ``hf_pretrained`` through :meth:`GSRM.pretrained_parts` (``timm:…``, a local file,
  or ``"none"``; unset, training stops and names the ways out). The constructor never fetches anything.
* New layers are initialised as in the released code: attention convolutions (RSA's and the fusion's CBAM, DCMA)
  Xavier-normal with gain 0.02, so the attention maps start near-uniform; other new convolutions Kaiming-normal.
* The tiny variant keeps every module and Xception's layout (stem, entry blocks, two middle halves, exit) at
  narrow widths with two middle blocks.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dflab.losses import classification_loss
from dflab.losses.margin import am_softmax_loss
from dflab.models.base import Detector, InputSpec, register_detector
from dflab.models.xception import XCEPTION_WIDTHS, XceptionTrunk

#: the three SRM kernels (Fridrich & Kodovský 2012) with the normalisation of the released code
SRM_KB = [[0, 0, 0, 0, 0], [0, -1, 2, -1, 0], [0, 2, -4, 2, 0], [0, -1, 2, -1, 0], [0, 0, 0, 0, 0]]
SRM_KV = [[-1, 2, -2, 2, -1], [2, -6, 8, -6, 2], [-2, 8, -12, 8, -2], [2, -6, 8, -6, 2], [-1, 2, -2, 2, -1]]
SRM_H2 = [[0, 0, 0, 0, 0], [0, 0, 0, 0, 0], [0, 1, -2, 1, 0], [0, 0, 0, 0, 0], [0, 0, 0, 0, 0]]
SRM_SCALES = (4.0, 12.0, 2.0)
#: truncation threshold of the residuals
SRM_TRUNCATION = 3.0


def _init_convs(module: nn.Module, attention: bool) -> None:
    """Initialisation of the released code: attention convs (and DCMA's) Xavier-normal with gain 0.02, so the maps
    start near-uniform (sigmoid ≈ 0.5); the other new convs Kaiming-normal with ``a = 1``."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            if attention:
                nn.init.xavier_normal_(m.weight, gain=0.02)
            else:
                nn.init.kaiming_normal_(m.weight, a=1)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def srm_kernels() -> torch.Tensor:
    """The three normalised SRM kernels, (3, 5, 5): KB/4, KV/12, horizontal second order/2."""
    k = torch.tensor([SRM_KB, SRM_KV, SRM_H2], dtype=torch.float32)
    return k / torch.tensor(SRM_SCALES).view(3, 1, 1)


class SRMFilter(nn.Module):
    """Fixed SRM residuals of an image: each kernel on the sum of the input channels, truncated to ±3.

    Shape:
        (B, C, H, W) -> (B, 3, H, W)
    """

    def __init__(self, in_channels: int = 3) -> None:
        super().__init__()
        weight = srm_kernels().unsqueeze(1).repeat(1, in_channels, 1, 1)  # (3, C, 5, 5)
        self.register_buffer("weight", weight, persistent=False)  # constants: not trained, not checkpointed

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight, padding=2).clamp(-SRM_TRUNCATION, SRM_TRUNCATION)


class FeatureSRM(nn.Module):
    """SRM on feature maps: all three kernels on every channel (depthwise), truncation, 1×1 conv + BN + ReLU.

    Shape:
        (B, C, H, W) -> (B, out_channels, H, W)
    """

    def __init__(self, channels: int, out_channels: int) -> None:
        super().__init__()
        self.channels = channels
        weight = srm_kernels().unsqueeze(1).repeat(channels, 1, 1, 1)  # (3C, 1, 5, 5): channel c -> KB, KV, H2
        self.register_buffer("weight", weight, persistent=False)
        self.proj = nn.Sequential(
            nn.Conv2d(3 * channels, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True)
        )
        _init_convs(self.proj, attention=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        res = F.conv2d(x, self.weight, padding=2, groups=self.channels).clamp(-SRM_TRUNCATION, SRM_TRUNCATION)
        return self.proj(res)


class SpatialAttention(nn.Module):
    """CBAM spatial attention (Woo et al., ECCV 2018): channel mean and max → 7×7 conv → sigmoid.

    Shape:
        (B, C, H, W) -> (B, 1, H, W) in (0, 1)
    """

    def __init__(self, kernel_size: int = 7) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)
        _init_convs(self, attention=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return torch.sigmoid(self.conv(pooled))


class ChannelAttention(nn.Module):
    """CBAM channel attention: average- and max-pooled descriptors through a shared MLP, summed, sigmoid.

    Shape:
        (B, C, H, W) -> (B, C, 1, 1) in (0, 1)
    """

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.mlp = nn.Sequential(
            nn.Conv2d(channels, hidden, 1, bias=False),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, 1, bias=False),
        )
        _init_convs(self, attention=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.mlp(x.mean(dim=(2, 3), keepdim=True)) + self.mlp(x.amax(dim=(2, 3), keepdim=True)))


class ResidualGuidedAttention(nn.Module):
    """RSA: spatial attention computed from the image's SRM residuals, at the Xception stem's output size.

    The two convolutions mirror the stem's geometry (3×3 stride 2 and 3×3, no padding), so the map aligns with
    the stem features it re-weights.

    Shape:
        srm (B, 3, H, W) -> (B, 1, h, w) with (h, w) the stem output size
    """

    def __init__(self, hidden: tuple[int, int] = (32, 64)) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(3, hidden[0], 3, stride=2, bias=False),
            nn.BatchNorm2d(hidden[0]),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden[0], hidden[1], 3, bias=False),
            nn.BatchNorm2d(hidden[1]),
            nn.ReLU(inplace=True),
        )
        _init_convs(self.conv, attention=False)
        self.attention = SpatialAttention()

    def forward(self, srm: torch.Tensor) -> torch.Tensor:
        return self.attention(self.conv(srm))


class DualCrossModalityAttention(nn.Module):
    """DCMA: each modality attends over the other's positions; residual with zero-initialised γ.

    Shape:
        x (B, C, H, W), y (B, C, H, W) -> (x', y') of the same shapes
    """

    def __init__(self, channels: int, reduction: int = 8) -> None:
        super().__init__()
        inner = max(1, channels // reduction)
        self.key_x = nn.Conv2d(channels, inner, 1)
        self.key_y = nn.Conv2d(channels, inner, 1)
        self.key_shared = nn.Conv2d(inner, inner, 1)
        self.value_x = nn.Conv2d(channels, channels, 1)
        self.value_y = nn.Conv2d(channels, channels, 1)
        self.gamma_x = nn.Parameter(torch.zeros(1))
        self.gamma_y = nn.Parameter(torch.zeros(1))
        _init_convs(self, attention=True)

    def attention(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Row-stochastic maps (B, N, N): ``a_yx[i, j]`` = weight of y's position j for x's position i, and the
        converse ``a_xy``."""
        kx = self.key_shared(self.key_x(x)).flatten(2)  # (B, C', N)
        ky = self.key_shared(self.key_y(y)).flatten(2)
        energy = torch.bmm(kx.transpose(1, 2), ky)  # (B, N_x, N_y)
        return energy.softmax(dim=-1), energy.transpose(1, 2).softmax(dim=-1)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if x.shape != y.shape:
            raise ValueError(f"DCMA expects two maps of one shape, got {tuple(x.shape)} and {tuple(y.shape)}")
        b, c, h, w = x.shape
        a_yx, a_xy = self.attention(x, y)
        from_y = torch.bmm(self.value_y(y).flatten(2), a_yx.transpose(1, 2)).view(b, c, h, w)
        from_x = torch.bmm(self.value_x(x).flatten(2), a_xy.transpose(1, 2)).view(b, c, h, w)
        return x + self.gamma_x * from_y, y + self.gamma_y * from_x


class FusionHead(nn.Module):
    """Concatenate the streams, 1×1 conv + BN + ReLU, ``f + f·CA(f)``, ReLU, pool, dropout, linear(2).

    Shape:
        x (B, C, h, w), y (B, C, h, w) -> (logits (B, 2), pooled features (B, C))
    """

    def __init__(self, channels: int, dropout: float = 0.5, reduction: int = 16, cosine_scale: float = 0.0) -> None:
        super().__init__()
        self.cosine_scale = cosine_scale  # > 0: logits = scale · cos(feature, class weight) (AM-Softmax head)
        self.reduce = nn.Sequential(
            nn.Conv2d(2 * channels, channels, 1, bias=False), nn.BatchNorm2d(channels), nn.ReLU(inplace=True)
        )
        _init_convs(self.reduce, attention=False)
        self.ca = ChannelAttention(channels, reduction)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(channels, 2, bias=cosine_scale <= 0)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.reduce(torch.cat([x, y], dim=1))
        f = F.relu(f + f * self.ca(f))
        feats = f.mean(dim=(2, 3))
        if self.cosine_scale > 0:
            cos = F.linear(F.normalize(self.dropout(feats), dim=1), F.normalize(self.fc.weight, dim=1))
            return self.cosine_scale * cos, feats
        return self.fc(self.dropout(feats)), feats


@register_detector(
    "gsrm",
    tiny={"widths": (8, 16, 16, 24, 32, 48, 48, 64), "middle_blocks": 2, "rsa_hidden": (8, 16), "dropout": 0.0,
          "hf_pretrained": "none", "size": 64},
)  # fmt: skip
class GSRM(Detector):
    """Two-stream Xception with multi-scale SRM, RSA and DCMA (module docstring has the mapping and choices).

    Args:
        widths: Xception widths (conv1, conv2, block1, block2, entry/middle, block12, conv3, conv4).
        middle_blocks: middle-flow blocks (8 in Xception, even); DCMA follows the entry flow and the first half.
        rsa_hidden: widths of RSA's two convolutions (32, 64 in the released code).
        dcma_reduction: key width divisor of DCMA (8).
        dropout: dropout before the linear classifier (0.5 in the released code).
        loss: ``"ce"`` (cross-entropy on a linear head) or ``"am_softmax"`` (cosine head, logits = ``am_scale``·cos θ,
            trained with :func:`dflab.losses.margin.am_softmax_loss`).
        am_margin: AM-Softmax margin m (0.45, DeepfakeBench's ``srm_detector.py``, "specified by the author").
        am_scale: AM-Softmax scale s (30, the same source).
        hf_pretrained: weights spec of the high-frequency stream the *trainer* loads (``timm:legacy_xception.
            tf_in1k``, a local file in timm's key layout, or ``"none"``); never loaded here.
        size: input side (256).
        margin: face-crop margin of the input contract.
        align: crop alignment of the input contract.

    Shape:
        images (B, 3, H, W) -> {"logits": (B, 2), "features": (B, C), "attention": (B, 1, h, w)}
    """

    #: Grad-CAM on the fused map of both streams (what the classifier reads), not on one stream's exit flow
    cam_layer = "head.reduce"

    def __init__(
        self,
        widths: tuple[int, ...] = XCEPTION_WIDTHS,
        middle_blocks: int = 8,
        rsa_hidden: tuple[int, int] = (32, 64),
        dcma_reduction: int = 8,
        dropout: float = 0.5,
        loss: str = "ce",
        am_margin: float = 0.45,
        am_scale: float = 30.0,
        hf_pretrained: str | None = None,
        size: int = 256,
        margin: float = 1.3,
        align: str = "box",
    ) -> None:
        super().__init__(InputSpec(size=size, margin=margin, align=align, mean=(0.5,) * 3, std=(0.5,) * 3))
        widths = tuple(widths)
        if middle_blocks < 2 or middle_blocks % 2:
            raise ValueError(f"GSRM needs an even middle_blocks >= 2 (DCMA follows half of them), got {middle_blocks}")
        self.rgb = XceptionTrunk(3, widths, middle_blocks)
        self.hf = XceptionTrunk(3, widths, middle_blocks)
        self.srm = SRMFilter(3)
        self.srm_stem_a = FeatureSRM(widths[0], widths[0])
        self.srm_stem_b = FeatureSRM(widths[1], widths[1])
        self.rsa = ResidualGuidedAttention(tuple(rsa_hidden))
        self.rsa_post = nn.Sequential(nn.BatchNorm2d(widths[1]), nn.ReLU(inplace=True))
        self.dcma_entry = DualCrossModalityAttention(widths[4], dcma_reduction)
        self.dcma_middle = DualCrossModalityAttention(widths[4], dcma_reduction)
        if loss not in ("ce", "am_softmax"):
            raise ValueError(f"loss must be 'ce' or 'am_softmax', got {loss!r}")
        self.loss_name, self.am_margin, self.am_scale = loss, am_margin, am_scale
        self.head = FusionHead(widths[7], dropout, cosine_scale=am_scale if loss == "am_softmax" else 0.0)
        self.hf_pretrained = hf_pretrained

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images of shape (B, 3, H, W), got {tuple(images.shape)}")
        srm = self.srm(images)
        # multi-scale high-frequency features: SRM of the image, plus SRM of the RGB stem features at two scales
        x = self.rgb.stem_a(images)
        y = F.relu(self.hf.stem_a(srm) + self.srm_stem_a(x))
        x = self.rgb.stem_b(x)
        y = F.relu(self.hf.stem_b(y) + self.srm_stem_b(x))
        # residual guided spatial attention on the RGB stem output
        attn = self.rsa(srm)
        x = self.rsa_post(x * attn + x)
        x, y = self.dcma_entry(self.rgb.entry(x), self.hf.entry(y))
        half = self.rgb.n_middle // 2
        x, y = self.dcma_middle(self.rgb.middle(x, 0, half), self.hf.middle(y, 0, half))
        x, y = self.rgb.exit(self.rgb.middle(x, half)), self.hf.exit(self.hf.middle(y, half))
        logits, feats = self.head(x, y)
        return {"logits": logits, "features": feats, "attention": attn}

    def compute_loss(self, batch: dict[str, Any], outputs: dict[str, torch.Tensor], **phase: Any) -> dict[str, Any]:
        if self.loss_name == "am_softmax":
            am = am_softmax_loss(outputs["logits"] / self.am_scale, batch["label"], margin=self.am_margin,
                                 scale=self.am_scale)  # fmt: skip
            return {"loss": am, "am_softmax": am.detach()}
        ce = classification_loss(outputs["logits"], batch["label"])
        return {"loss": ce, "ce": ce.detach()}

    def explain_maps(self, outputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The RSA map (where the SRM residuals steer the RGB stream), in (0, 1)."""
        return {"rsa": outputs["attention"]}

    def pretrained_parts(self) -> dict[str, tuple[str, str | None]]:
        """The high-frequency stream's ImageNet Xception (the RGB stream takes ``model.pretrained``)."""
        return {"hf.": ("hf_pretrained", self.hf_pretrained)}
