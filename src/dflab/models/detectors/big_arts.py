"""BiG-Arts: Bi-granularity artifacts (Chen, Li, Lin, Li, Wu, "Watching the BiG artifacts: Exposing DeepFake videos
via Bi-granularity artifacts", Pattern Recognition, online 13 Nov. 2022).

Three branches on a shared ResNet-18 (§3.2 "Architecture", Fig. 3):

* classification: the deepest backbone feature → conv block (two 3×3 convs + max-pool) → FC → 2 logits;
* intrinsic branch: five SCSE decoder blocks, each taking the previous decoder output and the backbone's
  residual-block feature at that scale, then a 1×1 conv → pixel map ``O_In`` (probability of synthesis artifacts);
* extrinsic branch: same structure, its own weights → ``O_Ex`` (blending boundary).

Loss (Eq. 2–5): ``λ_In·L_In + λ_Ex·L_Ex + λ_Cls·L_Cls``; pixel BCE for both maps (Eqs. 3–4), CE for the label (Eq.
5); λ_In = λ_Ex = 15, λ_Cls = 1 (§4.1). Ground truth: ``mask_in`` = convex hull of ``|fake − original| > γ`` (§3.1)
and ``mask_ex`` = dilate(M_in) − erode(M_in); both come from the data layer (synthesis), all-zero for reals.

Ablations (Table 6) are configurations: ``branches=()`` ("None"), ``("in",)``, ``("ex",)`` (= the paper's
own stand-in for Face X-ray, §4.2: "we implement Face X-ray using our method by pruning the intrinsic branch";
variant ``big_arts_xray``; the real Face X-ray is :mod:`dflab.models.detectors.face_xray`) and
``("in", "ex")``. The augmentation ablations of Table 5 are data configurations (recipes), not model code.

Choices the paper leaves open (documented here, not hidden):

* Decoder widths (256, 128, 64, 32, 16) and nearest ×2 upsampling, as in the SCSE U-Net of
  segmentation_models_pytorch; the five blocks join the backbone features at strides 16, 8, 4, 2 and none, so the
  maps come out at the input resolution. ResNet-18 has four residual stages for five blocks: the fourth block's
  skip is the stride-2 stem feature, the fifth has none (the U-Net arrangement). One SCSE per block, after its two
  convolutions, reduction 16 (segmentation_models_pytorch's SCSE U-Net also re-weights the concatenated input; the
  paper says only that the block "contains SCSE modules").
* Conv block = two 3×3 conv-BN-ReLU at the backbone width (512) + 2×2 max-pool; the FC layer follows a global
  average pool (the paper's FC input size is not given; pooling keeps the head size-agnostic).
* The pixel losses are *means* over pixels (Eqs. 3–4 are sums, which only rescales λ by H·W); Eqs. 3–5 are written
  without the minus sign, we minimise the negative log-likelihood. A literal sum over 256² pixels would make each
  map term ~10⁶ times L_Cls at initialisation (65 536 pixels × λ = 15 × BCE ≈ 0.7), leaving the classifier no
  gradient worth the name — against §3.2, where the maps are the *auxiliary* tasks; with means, λ_In = λ_Ex = 15
  : λ_Cls = 1 weighs comparable terms.
* ``O_Cls`` (Eq. 5) is a probability; we output two logits and take their softmax CE, the same model and loss as a
  sigmoid on their difference. ``score`` is the softmax's fake column.
* Ground-truth masks (§3.1, §3.3; made by the data layer, :mod:`dflab.synthesis.big_arts_aug`): the paper gives no
  γ, no dilation/erosion sizes and no deformation strength. Ours: ``p_in`` = max over channels of ``|x' − x|`` on
  0–255 (a change in any channel counts), γ = 20; D and E with an elliptic 9 px element at 256 px (scaled with the
  crop), so M_Ex is a band of about ±4 px around the hull's edge; the (Fake, Real) expansion of ``M'`` a 15 px
  dilation; ``T`` a piecewise-affine warp of a 4×4 control grid displaced by up to ±4 % of the side; the target B
  of (Real, Real)/(Fake, Real) is the nearest other-identity real face by the Euclidean distance of its
  landmarks after removing translation and scale (the crops differ in both), moved onto A by a whole-pixel shift.
  JPEG (quality 75–100, the only augmentation, §4.1) is applied to every training image (p = 1; the paper gives no
  probability).
* The "connection" of the side branches to the main branch is the shared encoder: the decoders read the residual
  blocks' features, so their gradients shape the features the classifier sees (§3.2, Fig. 3). No extra fusion.
* Initialisation is not stated (§4.1 names the backbone only): the ``big_arts`` recipe starts from ImageNet
  ResNet-18 (``model.pretrained: timm:resnet18.tv_in1k``, ImageNet mean/std as this detector's input contract), the
  usual start of the Table 1 base networks; ``pretrained_path`` loads a local timm-format checkpoint instead.

Video score: mean of frame scores over every 10th frame (§4.1) — an evaluation setting (recipe), not model code.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dflab.models.backbones import feature_extractor
from dflab.models.base import Detector, InputSpec, register_detector, register_variant
from dflab.models.layers import DecoderBlock, conv_bn_relu

#: auxiliary branch name → batch key of its ground truth
BRANCH_TARGETS = {"in": "mask_in", "ex": "mask_ex"}


class _MapDecoder(nn.Module):
    """Five SCSE decoder blocks + 1×1 conv: backbone features → one pixel-logit map at input resolution.

    Shape:
        feats: list of 5 maps at strides 2, 4, 8, 16, 32 → (B, 1, H, W)
    """

    def __init__(self, enc_channels: list[int], widths: tuple[int, ...]) -> None:
        super().__init__()
        if len(widths) != 5:
            raise ValueError(f"BiG-Arts decoders have five blocks; got widths {widths}")
        # skips: stride 16, 8, 4, 2 features, none for the last block (it restores full resolution)
        skips = [enc_channels[3], enc_channels[2], enc_channels[1], enc_channels[0], 0]
        ins = [enc_channels[4], *widths[:-1]]
        self.blocks = nn.ModuleList(DecoderBlock(i, s, o) for i, s, o in zip(ins, skips, widths, strict=True))
        self.head = nn.Conv2d(widths[-1], 1, 1)

    def forward(self, feats: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        x = feats[4]
        for block, skip in zip(self.blocks, [feats[3], feats[2], feats[1], feats[0], None], strict=True):
            x = block(x, skip)
        x = self.head(x)
        if x.shape[-2:] != size:  # odd input sizes: the stride-2 stem rounds
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        return x


@register_detector(
    "big_arts",
    tiny={"backbone": "test_resnet", "decoder_widths": (16, 16, 8, 8, 8), "cls_width": 32, "input_size": 64},
)
class BiGArts(Detector):
    """BiG-Arts three-branch detector (module docstring has the paper mapping).

    Args:
        backbone: timm model name with five feature stages (ResNet-18 in the paper).
        branches: auxiliary map branches, a subset of ``("in", "ex")`` (Table 6 ablations).
        decoder_widths: output channels of the five decoder blocks.
        cls_width: channels of the classification conv block (``None``: the backbone's last width).
        lambda_in: loss weights of Eq. 2.
        lambda_ex: loss weights of Eq. 2.
        lambda_cls: loss weights of Eq. 2.
        pretrained_path: optional local backbone checkpoint.
        input_size: face crop side (256 in §4.1).

    Shape:
        images (B, 3, H, W) → logits (B, 2), map_in / map_ex (B, 1, H, W) pixel logits.
    """

    targets = frozenset({"mask_in", "mask_ex"})

    def __init__(
        self,
        backbone: str = "resnet18",
        branches: tuple[str, ...] | list[str] = ("in", "ex"),
        decoder_widths: tuple[int, ...] | list[int] = (256, 128, 64, 32, 16),
        cls_width: int | None = None,
        lambda_in: float = 15.0,
        lambda_ex: float = 15.0,
        lambda_cls: float = 1.0,
        pretrained_path: str | None = None,
        input_size: int = 256,
    ) -> None:
        super().__init__(InputSpec(size=input_size))
        branches = tuple(branches)
        unknown = set(branches) - set(BRANCH_TARGETS)
        if unknown:
            raise ValueError(f"unknown BiG-Arts branches {sorted(unknown)}; choose from {sorted(BRANCH_TARGETS)}")
        self.branches = branches
        self.targets = frozenset(BRANCH_TARGETS[b] for b in branches)  # what this configuration needs
        self.lambdas = {"in": lambda_in, "ex": lambda_ex, "cls": lambda_cls}
        self.backbone = feature_extractor(backbone, pretrained=pretrained_path)
        enc = list(self.backbone.feature_info.channels())
        if len(enc) != 5:
            raise ValueError(f"backbone {backbone!r} gives {len(enc)} feature stages; BiG-Arts needs 5")
        width = cls_width or enc[-1]
        self.cls_block = nn.Sequential(
            conv_bn_relu(enc[-1], width), conv_bn_relu(width, width), nn.MaxPool2d(2, ceil_mode=True)
        )
        self.fc = nn.Linear(width, 2)
        self.decoders = nn.ModuleDict({b: _MapDecoder(enc, tuple(decoder_widths)) for b in branches})

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        feats = self.backbone(images)
        x = self.cls_block(feats[-1])
        out = {"logits": self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))}
        for name, dec in self.decoders.items():
            out[f"map_{name}"] = dec(feats, images.shape[-2:])
        return out

    def compute_loss(self, batch: dict[str, Any], outputs: dict[str, torch.Tensor], **phase: Any) -> dict[str, Any]:
        """Eq. 2: λ_In·BCE(O_In, M_In) + λ_Ex·BCE(O_Ex, M_Ex) + λ_Cls·CE(O_Cls, y)."""
        parts: dict[str, torch.Tensor] = {"cls": F.cross_entropy(outputs["logits"], batch["label"])}
        loss = self.lambdas["cls"] * parts["cls"]
        for name in self.branches:
            pred = outputs[f"map_{name}"]
            target = batch[BRANCH_TARGETS[name]].to(pred.dtype)
            if target.shape != pred.shape:
                raise ValueError(
                    f"{BRANCH_TARGETS[name]} must be {tuple(pred.shape)} (B,1,H,W); got {tuple(target.shape)}"
                )
            parts[name] = F.binary_cross_entropy_with_logits(pred, target)
            loss = loss + self.lambdas[name] * parts[name]
        return {"loss": loss, **{k: v.detach() for k, v in parts.items()}}

    def explain_maps(self, outputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Predicted M_In / M_Ex as probabilities, each (B, 1, H, W)."""
        return {f"mask_{name}": outputs[f"map_{name}"].sigmoid() for name in self.branches}


# Table 6 ablations.
register_variant("big_arts_none", "big_arts", branches=())
register_variant("big_arts_in", "big_arts", branches=("in",))
register_variant("big_arts_ex", "big_arts", branches=("ex",))
# BiG-Arts' own "Face X-ray" row of Table 1 (§4.2: "we implement Face X-ray using our method by pruning the
# intrinsic-granularity artifacts branch") — not Face X-ray itself, which is dflab.models.detectors.face_xray.
register_variant("big_arts_xray", "big_arts", branches=("ex",))
register_variant(
    "big_arts_xray_tiny",
    "big_arts",
    branches=("ex",),
    backbone="test_resnet",
    decoder_widths=(16, 16, 8, 8, 8),
    cls_width=32,
    input_size=64,
)
