"""Binary real/fake classifiers on timm backbones (AlexNet: torchvision's layout): the seeds' data-driven baselines.

* ``xception`` — XceptionNet as used by FaceForensics++ (Rössler et al., ICCV 2019): ImageNet-style Xception
  (timm ``legacy_xception``), 299 px input, mean = std = 0.5, a new 2-way head.
* ``alexnet`` / ``vgg16`` / ``densenet121`` / ``resnet50`` / ``resnet18`` (+ ``resnet34``) — the "well-known base
  networks trained end to end" of BiG-Arts Table 1 (§4.2), at BiG-Arts' 256 px input with ImageNet normalisation
  (§4.1). AlexNet is :class:`dflab.models.alexnet.AlexNet` (timm has none), pooled at its fc7 like VGG16.
* ``efficientnet_lite0`` / ``efficientnet_lite2`` — EfficientNet-Lite0/Lite2 (ImageNet weights available locally,
  see :mod:`dflab.models.backbones`); light CPU-friendly baselines, not from the seed papers.

FWA and Face X-ray *data* baselines are these same classifiers trained on on-the-fly ``fwa`` / ``bi`` fakes (recipes
``fwa``, ``fwa_xception``, ``bi``, ``bi_xception``); Face X-ray itself (HRNet + X-ray map) is
:mod:`dflab.models.detectors.face_xray`.

Deviations: the heads are a dropout + linear layer on the pooled features (the papers' own training code is not
given). Tiny variants shrink depth/width for the contract test at 64 px; ``xception_tiny`` uses timm's aligned
Xception layout (``xception41`` family, 3 small entry blocks) because ``legacy_xception`` has no size knobs.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from dflab.losses import classification_loss
from dflab.models.backbones import create_backbone
from dflab.models.base import Detector, InputSpec, register_detector

_IMAGENET = {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}
_HALF = {"mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)}


class BinaryClassifier(Detector):
    """Backbone → global pooled features → dropout → linear(2).

    Args:
        backbone: backbone name (see :data:`dflab.models.backbones.TIMM_NAMES`) or any timm model.
        backbone_kwargs: passed to the timm constructor (tiny variants shrink the net here).
        dropout: dropout before the head.
        size: the input contract (written into checkpoints).
        margin: the input contract (written into checkpoints).
        align: the input contract (written into checkpoints).
        mean: the input contract (written into checkpoints).
        std: the input contract (written into checkpoints).

    Shape:
        images (B, 3, H, W) -> {"logits": (B, 2), "features": (B, C)}.
    """

    default_backbone = "resnet18"
    default_input: ClassVar[dict[str, Any]] = {"size": 256, **_IMAGENET}

    def __init__(
        self,
        backbone: str | None = None,
        backbone_kwargs: dict[str, Any] | None = None,
        dropout: float = 0.5,
        size: int | None = None,
        margin: float = 1.3,
        align: str = "box",
        mean: tuple[float, float, float] | None = None,
        std: tuple[float, float, float] | None = None,
        label_smoothing: float = 0.0,
    ) -> None:
        d = self.default_input
        spec = InputSpec(
            size=int(size or d["size"]),
            margin=margin,
            align=align,
            mean=tuple(mean or d["mean"]),
            std=tuple(std or d["std"]),
        )
        super().__init__(spec)
        self.backbone = create_backbone(backbone or self.default_backbone, **(backbone_kwargs or {}))
        self.dropout = nn.Dropout(dropout)
        # timm VGG pools after its fc6/fc7 pre-logits: the pooled width is head_hidden_size, not num_features
        width = getattr(self.backbone, "head_hidden_size", None) or self.backbone.num_features
        self.head = nn.Linear(width, 2)
        self.label_smoothing = label_smoothing

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images of shape (B, 3, H, W), got {tuple(images.shape)}")
        feats = self.backbone(images)
        return {"logits": self.head(self.dropout(feats)), "features": feats}

    def compute_loss(self, batch: dict[str, Any], outputs: dict[str, torch.Tensor], **phase: Any) -> dict[str, Any]:
        ce = classification_loss(outputs["logits"], batch["label"], label_smoothing=self.label_smoothing)
        return {"loss": ce, "ce": ce.detach()}


_TINY_RESNET = {"backbone_kwargs": {"layers": [1, 1, 1, 1]}, "dropout": 0.0}


@register_detector(
    "xception",
    tiny={
        "backbone": "xception41",
        "backbone_kwargs": {
            "block_cfg": [
                {"in_chs": 64, "out_chs": 64, "stride": 2},
                {"in_chs": 64, "out_chs": 128, "stride": 2},
                {"in_chs": 128, "out_chs": (128, 256, 256), "stride": 2},
            ]
        },
        "dropout": 0.0,
    },
)
class XceptionClassifier(BinaryClassifier):
    """FF++ XceptionNet baseline (Rössler et al. 2019), 299 px, mean = std = 0.5."""

    default_backbone = "xception"
    default_input: ClassVar[dict[str, Any]] = {"size": 299, **_HALF}


@register_detector("resnet18", tiny=_TINY_RESNET)
class ResNet18Classifier(BinaryClassifier):
    """ResNet-18 baseline (BiG-Arts Table 1)."""

    default_backbone = "resnet18"


@register_detector("resnet34", tiny=_TINY_RESNET)
class ResNet34Classifier(BinaryClassifier):
    """ResNet-34 baseline (BiG-Arts Table 1)."""

    default_backbone = "resnet34"


@register_detector("resnet50", tiny=_TINY_RESNET)
class ResNet50Classifier(BinaryClassifier):
    """ResNet-50 baseline (BiG-Arts Table 1)."""

    default_backbone = "resnet50"


@register_detector("vgg16", tiny={"backbone": "vgg11", "backbone_kwargs": {"mlp_ratio": 0.0625}, "dropout": 0.0})
class VGG16Classifier(BinaryClassifier):
    """VGG16 baseline (BiG-Arts Table 1); its fc6/fc7 are timm's convolutional pre-logits."""

    default_backbone = "vgg16"


@register_detector("alexnet", tiny={"backbone_kwargs": {"width": 0.125, "hidden": 64, "dropout": 0.0}, "dropout": 0.0})
class AlexNetClassifier(BinaryClassifier):
    """AlexNet baseline (BiG-Arts Table 1); fc6/fc7 kept from torchvision's AlexNet, fc8 replaced by the 2-way head."""

    default_backbone = "alexnet"


@register_detector(
    "densenet121", tiny={"backbone_kwargs": {"growth_rate": 8, "block_config": (1, 1, 1, 1)}, "dropout": 0.0}
)
class DenseNet121Classifier(BinaryClassifier):
    """DenseNet-121 baseline (BiG-Arts Table 1)."""

    default_backbone = "densenet121"


@register_detector("efficientnet_lite0", tiny={"dropout": 0.0})
class EfficientNetLite0Classifier(BinaryClassifier):
    """EfficientNet-Lite0 baseline; ``model.pretrained: efficientnet_lite0:imagenet`` gives local ImageNet weights."""

    default_backbone = "efficientnet_lite0"


@register_detector("efficientnet_lite2", tiny={"dropout": 0.0})
class EfficientNetLite2Classifier(BinaryClassifier):
    """EfficientNet-Lite2 baseline; ``model.pretrained: efficientnet_lite2:imagenet`` gives local ImageNet weights."""

    default_backbone = "efficientnet_lite2"
