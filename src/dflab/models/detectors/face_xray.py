"""Face X-ray (Li, Bao, Zhang, Yang, Chen, Wen, Guo, "Face X-ray for More General Face Forgery Detection", CVPR 2020).

The face X-ray of an image is the greyscale map ``B = 4 · M · (1 − M)`` of its blending mask ``M`` (§3.2, Eq. 2):
the blending boundary of a forged face, all zero for a real one. The method trains on *blended images* (BI, §3.3)
made from real faces only — the ``bi`` synthesizer (:mod:`dflab.synthesis.bi`): nearest-landmark donor of another
identity, landmark-hull mask randomly deformed and Gaussian-blurred, colour correction, ``I_M = M ⊙ I_F + (1 − M) ⊙
I_B`` (Eq. 1); the data layer delivers ``B`` as the ``boundary`` target (the synthesizer's own ``4·M·(1−M)``, all
zero for reals).

Framework (§3.4): a fully convolutional ``NN_b`` predicts the X-ray ``B̂ = NN_b(I)``; a classifier ``NN_c`` maps
``B̂`` to the probability ``ĉ`` that the face is blended. Losses: ``L_b = −Σ_{i,j} (B_ij log B̂_ij + (1 − B_ij)
log(1 − B̂_ij))`` (Eq. 3), ``L_c = −(c log ĉ + (1 − c) log(1 − ĉ))`` (Eq. 4), ``L = λ L_b + L_c`` with λ = 100
(Eq. 5). ``NN_b`` (§4, implementation): HRNet; the representations of its four resolutions are upsampled to the
finest (64 × 64 at 256 px) and concatenated, then a 1×1 conv with one output channel, bilinear upsampling to the
input size and a sigmoid. ``NN_c``: global average pooling, a fully connected layer, softmax.

Deviations and choices:

* Backbone: timm's HRNet (``hrnet_w18`` by default, its four branch outputs via ``feature_location=""``); the paper
  does not name the width. ImageNet weights come through the recipe's ``model.pretrained`` (a timm ``hrnet_w18``
  state dict, prefix ``backbone.``); none are available offline.
* ``cls_input="xray"`` (default) is the paper's ``NN_c : B̂ → ĉ``: pooling the predicted X-ray itself, the
  fully connected layer maps the mean boundary intensity to two logits, so the decision is exactly "is there a
  blending boundary". ``cls_input="features"`` pools the concatenated HRNet features instead (as public
  re-implementations do); it is an option, not the paper.
* ``L_b`` is the *mean* of the pixel BCE (Eq. 3 is a sum; as a sum at 256 × 256, λ = 100 would weigh the map
  6.5 million times the label). The map loss is computed on logits (``binary_cross_entropy_with_logits``), the
  numerically stable form of Eq. 3.
* The tiny variant uses ``hrnet_w18_small`` at 64 px (1.5 M parameters).

Shape:
    images (B, 3, H, W) → logits (B, 2), xray_logits (B, 1, H, W), xray (B, 1, H, W) in [0, 1].
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dflab.models.backbones import feature_extractor
from dflab.models.base import Detector, InputSpec, register_detector


@register_detector("face_xray", tiny={"backbone": "hrnet_w18_small", "input_size": 64})
class FaceXRay(Detector):
    """Face X-ray: HRNet → X-ray map B̂ (§3.4) → classifier on B̂.

    Args:
        backbone: timm HRNet name (``hrnet_w18``, ``hrnet_w32``, ``hrnet_w48``, ``hrnet_w18_small`` …).
        lambda_b: λ of Eq. 5 (100 in the paper).
        cls_input: ``"xray"`` (paper: NN_c reads B̂) or ``"features"`` (NN_c reads the pooled HRNet features).
        input_size: face crop side (256 in the paper).

    Shape:
        images (B, 3, H, W) → logits (B, 2), xray_logits / xray (B, 1, H, W).
    """

    targets = frozenset({"boundary"})

    def __init__(
        self,
        backbone: str = "hrnet_w18",
        lambda_b: float = 100.0,
        cls_input: str = "xray",
        input_size: int = 256,
    ) -> None:
        super().__init__(InputSpec(size=input_size))
        if cls_input not in ("xray", "features"):
            raise ValueError(f"cls_input must be 'xray' or 'features', got {cls_input!r}")
        self.lambda_b, self.cls_input = lambda_b, cls_input
        # the four HRNet branches (strides 4, 8, 16, 32), not the classification head's "incre" features
        self.backbone = feature_extractor(backbone, out_indices=(1, 2, 3, 4), feature_location="")
        width = sum(self.backbone.feature_info.channels())
        self.xray_head = nn.Conv2d(width, 1, 1)
        self.fc = nn.Linear(1 if cls_input == "xray" else width, 2)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        feats = self.backbone(images)
        size = feats[0].shape[-2:]  # the finest branch: 64 x 64 at 256 px
        cat = torch.cat([feats[0]] + [F.interpolate(f, size=size, mode="bilinear") for f in feats[1:]], dim=1)
        xray_logits = F.interpolate(self.xray_head(cat), size=images.shape[-2:], mode="bilinear")
        xray = xray_logits.sigmoid()
        pooled = xray if self.cls_input == "xray" else cat
        logits = self.fc(torch.flatten(F.adaptive_avg_pool2d(pooled, 1), 1))
        return {"logits": logits, "xray_logits": xray_logits, "xray": xray}

    def compute_loss(self, batch: dict[str, Any], outputs: dict[str, torch.Tensor], **phase: Any) -> dict[str, Any]:
        """Eq. 5: ``λ · L_b + L_c`` (``L_b`` as a mean over pixels, see the module docstring)."""
        pred = outputs["xray_logits"]
        target = batch["boundary"].to(pred.dtype)
        if target.shape != pred.shape:
            raise ValueError(f"boundary must be {tuple(pred.shape)} (B,1,H,W); got {tuple(target.shape)}")
        l_b = F.binary_cross_entropy_with_logits(pred, target)  # Eq. 3
        l_c = F.cross_entropy(outputs["logits"], batch["label"])  # Eq. 4
        return {"loss": self.lambda_b * l_b + l_c, "xray": l_b.detach(), "cls": l_c.detach()}

    def explain_maps(self, outputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The predicted face X-ray B̂, (B, 1, H, W) in [0, 1]."""
        return {"boundary": outputs["xray"]}
