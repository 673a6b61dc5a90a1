"""LiSiam: Localization Invariance Siamese network (Wang, Sun, Tang, "LiSiam: Localization Invariance Siamese
Network for Deepfake Detection", IEEE TIFS 2022).

Branch (Eq. 1): ``α = f_mlp(f_mt(f_seg(f_cnn(I)), f_scu(f_cnn(I))))``.

* ``f_cnn`` (§III-E): Xception blocks 1–12 (entry + middle flow + first exit block; conv3/conv4 dropped) with the
  last max-pool removed, then an OCR block (Yuan et al.) → 512 channels. Output 37×37 at 299 px.
* ``f_seg``: Dropout2d(0.1) + 1×1 conv → ``X_s`` (2 × H0 × W0), class 1 = fake.
* ``f_scu`` (§III-A): separable convolutions, BN, ReLU, dropout → ``X_c``.
* ``f_mt`` (§III-B, Eqs. 5–14): soft attention splits ``X_c`` with the bilinearly resized softmax of ``X_s`` into
  real ``X_r = X_c ⊙ S[0]`` and fake ``X_f = X_c ⊙ S[1]`` parts (Eqs. 6–8); Q = f_q(X_f), K = f_k(X_r), V = f_v(X_r)
  by 1×1 convs (Eqs. 9–11); ``a_ij = softmax_j(q_iᵀ k_j)``, ``y_i = f_m(Σ_j a_ij v_j)`` (Eqs. 12–13);
  ``Z = SE(concat(Y + X_f, X_c))`` (Eq. 14).
* ``f_mlp``: adaptive average pool + two linear layers (Eq. 18).

Siamese training (§III-A, §III-C): the *same module* runs on the raw image (branch 1, ``forward``) and on its
quality-degraded copy (branch 2, run inside :meth:`LiSiam.compute_loss` on ``batch["degraded"]``, which the data
layer makes with the synthesis IQD: JPEG, resize, Gaussian blur, each p = 0.5). ``L_li = ‖X_s¹ − X_s²‖₁`` (Eq.
15); ``L = λ_li L_li + λ_cls L_cls + λ_seg L_seg`` (Eq. 19), all λ = 1. Inference uses branch 1 only: ``forward``
never sees a degraded view.

Facts from the authors' public code (h10666/LiSiam, ``ocrnet.py``/``ocrnetbase.py``) that the paper omits, followed
here: Xception block 3 at stride 1 (output stride 8 — this is what makes 37×37 at 299 px); an auxiliary decoder
(3×3 conv 728→512, BN, ReLU, 1×1 conv → 2) on block-4 features whose maps serve as OCR's soft object regions (the
official code also trains it with its own CE, weight 0.4: Eq. 19 has no such term, so ``aux_weight`` defaults to 0
and 0.4 is the official code's reading); OCR bottleneck 3×3 conv 1024→512, transform width 256; attention without
1/√d scaling, dropout 0.1 on the attention weights, ``f_m`` = 1×1 conv + BN, residual ``+ X_f``; SE reduction 16
without FC biases; MLP 1024→1024 (BN, ReLU)→2.

Deviations and open choices:

* ``f_scu``: the paper says separable convolutions and ``X_c`` of 512×13×13 at 299 px (§IV-A.2); the official code
  uses plain 3×3 stride-2 convs each followed by a 1×1 conv with padding 1 (37 → 19 → 21 → 11 → 13). We use two
  depthwise-separable convs — depthwise 3×3 stride 2, then the pointwise 1×1 with padding 1 (``scu_padding``) — +
  BN, ReLU between, Dropout2d(0.1) after each: separable as the paper says, 13×13 as the paper says.
  ``scu_padding=0`` gives the unpadded 10×10 reading.
* Seg and aux losses are 2-class CE on logits bilinearly upsampled to the mask's resolution, target
  ``mask > 0.5`` (the official code upsamples the same way). ``L_li`` is the *mean* absolute difference of the two
  branches' raw segmentation logits (Eq. 15's norm as a mean, so λ_li = 1 does not scale with H0·W0); gradients
  flow into both branches (no stop-gradient; the paper does not mention one).
* No ImageNet Xception weights exist offline (the paper initialises from ImageNet); ``pretrained_path`` loads a
  local timm ``legacy_xception`` checkpoint (strict) before the stride surgery. The backbone keeps timm's parameter
  names (``backbone.conv1…``, ``backbone.block1…block12``), so the engine's ``model.pretrained`` with prefix
  ``backbone.`` also works once the exit-flow keys (conv3/conv4/bn3/bn4/fc) are dropped from the file.
* Input normalisation (the paper gives none): mean = std = 0.5 per channel with the Xception backbone, the statistics
  its ImageNet weights were trained with (timm ``legacy_xception.tf_in1k``; the official code's ``XNormalize`` is the
  same); feeding those weights ImageNet-normalised inputs would shift every activation of the initialisation §IV-B
  relies on. Other backbones keep the ImageNet statistics of their timm weights.
* Ground truth (§III-E, :func:`dflab.synthesis.masks.ssim_mask`): the SSIM index of [40] itself (11×11 Gaussian
  window, σ = 1.5) on grey images, binarised as ``(1 − SSIM)·255 > 20`` — the paper's "SSIM map multiplied by 255
  … threshold of 20" must mark the *forged* (dissimilar) pixels; ``SSIM·255 < 20`` would keep only SSIM < 0.08.
* Poly learning rate (§IV-B): one decay ``(1 − step/total)^0.9`` over the three phases together (schedule
  ``lisiam``), not restarted per phase: the paper names one policy for one training run of 146k + 16k + 324k
  iterations.
* Model-F (no MT): Eqs. 5–13 and the concatenation go, the SE re-weighting of Eq. 14 stays on ``X_c`` (the paper
  does not say whether SE leaves with MT; keeping it isolates the attention, which is what Table VI credits).
* t-SNE (§IV-E, Fig. 5): ``features`` is the pooled ``Z`` the MLP reads (Eq. 18), which ``dflab eval`` embeds. The
  paper's Fig. 5 models were trained as five-class classifiers (real + four FF++ methods) for that figure only; the
  detector stays binary (the method of the paper), so our plots show the binary model's features.
* The tiny variant swaps Xception for a dilated timm ResNet-18 (output stride 8) and narrows every width; the
  structure (aux decoder, OCR, seg head, SCU, MT, SE, MLP) is unchanged.

Ablations (Table VI) are configurations of ``seg_branches`` / ``cls_branches`` / ``lambda_li`` / ``use_mt``:
A = LiSiam; B = + seg² + cls²; C = no seg supervision; D = seg and cls on branch 2 instead of branch 1 (text of
§IV-F; the extracted table row disagrees, we follow the text); E = branch 2 only, no L_li; F = no MT; G = one branch
trained on both raw and degraded images (seg + cls on both views, no L_li). DIFF-mask training (Table VII) is a data
option (the mask kind of the recipe), not model code.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dflab.models.backbones import create_backbone, feature_extractor, load_pretrained
from dflab.models.base import Detector, InputSpec, register_detector, register_variant
from dflab.models.layers import ObjectContext, SeparableConv2d, SpatialGather, SqueezeExcitation, conv_bn_relu

#: parameter-name prefixes of the segmentation modules (feature extractor + decoders), §IV-B phase 1
SEG_MODULES = ("backbone.", "aux_head.", "bottleneck.", "gather.", "ocr.", "seg_head.")
#: parameter-name prefixes of the classification modules (SCU, MT, SE, MLP), §IV-B phase 2
CLS_MODULES = ("scu.", "mt.", "se.", "head.")
#: per-channel mean and std of the Xception ImageNet weights (timm ``legacy_xception.tf_in1k``): inputs in [-1, 1]
XCEPTION_NORM = (0.5, 0.5, 0.5)


class XceptionFeatures(nn.Module):
    """Xception (timm ``legacy_xception``) blocks 1–12, block 3 at stride 1, block 12's max-pool removed.

    Shape:
        images (B, 3, 299, 299) → (block-4 features (B, 728, 37, 37), block-12 features (B, 1024, 37, 37))
    """

    channels = (728, 1024)

    def __init__(self, pretrained_path: str | None = None) -> None:
        super().__init__()
        net = create_backbone("legacy_xception")
        if pretrained_path:
            load_pretrained(net, pretrained_path, allow_unexpected=("fc.",))  # ImageNet head: unused here
        for name in ("block3", "block12"):  # output stride 8 (official code) and no last max-pool (§III-E)
            block = getattr(net, name)
            block.skip.stride = (1, 1)
            block.rep[-1] = nn.Identity()
        # keep timm's attribute names so a timm legacy_xception state dict loads under the "backbone." prefix
        for name in ("conv1", "bn1", "act1", "conv2", "bn2", "act2", *(f"block{i}" for i in range(1, 13))):
            setattr(self, name, getattr(net, name))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.act2(self.bn2(self.conv2(self.act1(self.bn1(self.conv1(x))))))
        for i in range(1, 5):
            x = getattr(self, f"block{i}")(x)
        low = x
        for i in range(5, 13):
            x = getattr(self, f"block{i}")(x)
        return low, x


class TimmOS8Features(nn.Module):
    """Last two stages of a dilated timm CNN at output stride 8 (tiny stand-in for Xception).

    Shape:
        images (B, 3, H, W) → ((B, C3, H/8, W/8), (B, C4, H/8, W/8))
    """

    def __init__(self, name: str, pretrained_path: str | None = None) -> None:
        super().__init__()
        self.net = feature_extractor(name, pretrained=pretrained_path, out_indices=(3, 4), output_stride=8)
        self.channels = tuple(self.net.feature_info.channels())

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        low, high = self.net(x)
        return low, high


def split_features(xc: torch.Tensor, seg_logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Soft attention split ``f_att`` (Eqs. 6–8): real and fake parts of ``xc``.

    Because the two softmax channels sum to one and bilinear interpolation is linear, ``x_r + x_f == xc``.

    Shape:
        xc (B, C, H1, W1), seg_logits (B, 2, H0, W0) → x_r, x_f each (B, C, H1, W1)
    """
    attn = F.interpolate(seg_logits.softmax(dim=1), size=xc.shape[-2:], mode="bilinear", align_corners=False)
    return xc * attn[:, 0:1], xc * attn[:, 1:2]


class MaskGuidedTransformer(nn.Module):
    """Mask-guided transformer f_mt (§III-B, Fig. 2, Eqs. 5–14).

    Shape:
        xc (B, C, H1, W1), seg_logits (B, 2, H0, W0) → Z (B, 2C, H1, W1)
    """

    def __init__(self, channels: int, dropout: float = 0.1, se_reduction: int = 16) -> None:
        super().__init__()
        self.q = nn.Conv2d(channels, channels, 1, bias=False)
        self.k = nn.Conv2d(channels, channels, 1, bias=False)
        self.v = nn.Conv2d(channels, channels, 1, bias=False)
        self.m = nn.Sequential(nn.Conv2d(channels, channels, 1, bias=False), nn.BatchNorm2d(channels))
        self.dropout = nn.Dropout(dropout)
        self.se = SqueezeExcitation(2 * channels, se_reduction)

    def forward(self, xc: torch.Tensor, seg_logits: torch.Tensor) -> torch.Tensor:
        b, c, h, w = xc.shape
        x_r, x_f = split_features(xc, seg_logits)
        q = self.q(x_f).reshape(b, c, -1).transpose(1, 2)  # (B, N, C), Eq. 9
        k = self.k(x_r).reshape(b, c, -1)  # (B, C, N), Eq. 10
        v = self.v(x_r).reshape(b, c, -1).transpose(1, 2)  # (B, N, C), Eq. 11
        a = self.dropout(torch.bmm(q, k).softmax(dim=-1))  # Eq. 12 (no 1/sqrt(d), as in the official code)
        y = self.m(torch.bmm(a, v).transpose(1, 2).reshape(b, c, h, w))  # Eq. 13
        return self.se(torch.cat([y + x_f, xc], dim=1))  # Eq. 14


@register_detector(
    "lisiam",
    tiny={"backbone": "test_resnet", "width": 32, "ocr_transform": 16, "mlp_hidden": 32, "input_size": 64},
)
class LiSiam(Detector):
    """LiSiam (module docstring has the paper mapping, official-code facts and deviations).

    Args:
        backbone: ``"xception"`` (paper) or a timm CNN name used dilated at output stride 8.
        width: OCR / segmentation feature width (512).
        ocr_transform: OCR key/query width (256).
        mlp_hidden: hidden width of the MLP head (1024).
        use_mt: use the mask-guided transformer (False = Model-F: SE + MLP on X_c alone).
        seg_branches: branches (1 raw, 2 degraded) with segmentation loss.
        cls_branches: branches with classification loss.
        lambda_li: loss weight of L_LI in Eq. 19.
        lambda_cls: loss weight of the classification terms in Eq. 19.
        lambda_seg: loss weight of the segmentation terms in Eq. 19.
        aux_weight: weight of the auxiliary decoder's CE on branches with seg loss; 0 = Eq. 19 (default), 0.4 =
            the official code.
        scu_padding: padding of the SCU's pointwise convs (1: X_c 13×13 at 299 px as §IV-A.2; 0: 10×10).
        dropout: dropout of seg head, SCU and attention (0.1).
        pretrained_path: optional local Xception checkpoint.
        input_size: face crop side (299, §IV-A).

    Shape:
        images (B, 3, H, W) → logits (B, 2), features (B, 2C) (C without MT), seg (B, 2, H0, W0),
        seg_aux (B, 2, H0, W0), mask (B, 1, H, W).
    """

    targets = frozenset({"mask", "degraded"})

    def __init__(
        self,
        backbone: str = "xception",
        width: int = 512,
        ocr_transform: int = 256,
        mlp_hidden: int = 1024,
        use_mt: bool = True,
        seg_branches: tuple[int, ...] | list[int] = (1,),
        cls_branches: tuple[int, ...] | list[int] = (1,),
        lambda_li: float = 1.0,
        lambda_cls: float = 1.0,
        lambda_seg: float = 1.0,
        aux_weight: float = 0.0,
        scu_padding: int = 1,
        dropout: float = 0.1,
        pretrained_path: str | None = None,
        input_size: int = 299,
    ) -> None:
        # Xception's ImageNet weights take [-1, 1] inputs (timm ``legacy_xception`` mean = std = 0.5; the official
        # code's ``XNormalize`` too); other backbones keep the ImageNet statistics of their timm weights
        norm = {"mean": XCEPTION_NORM, "std": XCEPTION_NORM} if backbone == "xception" else {}
        super().__init__(InputSpec(size=input_size, **norm))
        self.seg_branches = tuple(sorted(seg_branches))
        self.cls_branches = tuple(sorted(cls_branches))
        if not set(self.seg_branches) | set(self.cls_branches) <= {1, 2} or not self.cls_branches:
            raise ValueError(
                f"branches must be subsets of (1, 2) with a classified one; got {seg_branches}, {cls_branches}"
            )
        self.lambdas = {"li": lambda_li, "cls": lambda_cls, "seg": lambda_seg, "aux": aux_weight}
        needs = {"degraded"} if (lambda_li > 0 or 2 in self.seg_branches + self.cls_branches) else set()
        self.targets = frozenset(needs | ({"mask"} if self.seg_branches else set()))
        self.use_mt = use_mt

        if backbone == "xception":
            self.backbone: nn.Module = XceptionFeatures(pretrained_path)
        else:
            self.backbone = TimmOS8Features(backbone, pretrained_path)
        low_ch, high_ch = self.backbone.channels
        self.aux_head = nn.Sequential(conv_bn_relu(low_ch, width), nn.Conv2d(width, 2, 1))
        self.bottleneck = conv_bn_relu(high_ch, width)
        self.gather = SpatialGather()
        self.ocr = ObjectContext(width, ocr_transform)
        self.seg_head = nn.Sequential(nn.Dropout2d(dropout), nn.Conv2d(width, 2, 1))
        self.scu = nn.Sequential(
            SeparableConv2d(width, width, 3, stride=2, pointwise_padding=scu_padding),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.Dropout2d(dropout),
            SeparableConv2d(width, width, 3, stride=2, pointwise_padding=scu_padding),
            nn.BatchNorm2d(width),
            nn.Dropout2d(dropout),
        )
        self.mt = MaskGuidedTransformer(width, dropout) if use_mt else None
        self.se = None if use_mt else SqueezeExcitation(width, 16)
        feat = 2 * width if use_mt else width
        self.head = nn.Sequential(
            nn.Linear(feat, mlp_hidden), nn.BatchNorm1d(mlp_hidden), nn.ReLU(inplace=True), nn.Linear(mlp_hidden, 2)
        )

    def branch(self, images: torch.Tensor, *, classify: bool = True) -> dict[str, torch.Tensor]:
        """One Siamese branch (Eqs. 2–4, 14, 18); ``classify=False`` stops after the segmentation maps."""
        low, high = self.backbone(images)
        aux = self.aux_head(low)
        feats = self.bottleneck(high)
        feats = self.ocr(feats, self.gather(feats, aux))
        seg = self.seg_head(feats)
        out = {"seg": seg, "seg_aux": aux}
        if classify:
            xc = self.scu(feats)
            z = self.mt(xc, seg) if self.mt is not None else self.se(xc)
            out["features"] = torch.flatten(F.adaptive_avg_pool2d(z, 1), 1)  # f_aap(Z), Eq. 18: the t-SNE features
            out["logits"] = self.head(out["features"])
        return out

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Branch 1 only (inference path of Eq. 1)."""
        out = self.branch(images)
        fake = out["seg"].softmax(dim=1)[:, 1:2]
        out["mask"] = F.interpolate(fake, size=images.shape[-2:], mode="bilinear", align_corners=False)
        return out

    def _seg_loss(self, out: dict[str, torch.Tensor], mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        target = (mask[:, 0] > 0.5).long()
        size = target.shape[-2:]
        seg = F.interpolate(out["seg"], size=size, mode="bilinear", align_corners=False)
        aux = F.interpolate(out["seg_aux"], size=size, mode="bilinear", align_corners=False)
        return F.cross_entropy(seg, target), F.cross_entropy(aux, target)

    def compute_loss(self, batch: dict[str, Any], outputs: dict[str, torch.Tensor], **phase: Any) -> dict[str, Any]:
        """Eq. 19 over the configured branches; branch 2 runs here on ``batch["degraded"]`` with shared weights.

        ``phase["stage"]`` (set by the ``lisiam`` schedule, §IV-B): ``"seg"`` computes only segmentation + L_li
        (classification modules are frozen), ``"cls"`` only the classification loss (segmentation modules are
        frozen, branch 2 is skipped), ``"all"`` (default) everything.
        """
        stage = phase.get("stage", "all")
        if stage not in ("seg", "cls", "all"):
            raise ValueError(f"unknown LiSiam stage {stage!r}; expected seg, cls or all")
        do_seg, do_cls = stage != "cls", stage != "seg"
        seg_br = self.seg_branches if do_seg else ()
        cls_br = self.cls_branches if do_cls else ()
        use_li = do_seg and self.lambdas["li"] > 0
        outs = {1: outputs}
        if use_li or 2 in seg_br or 2 in cls_br:
            if "degraded" not in batch:
                raise KeyError("LiSiam needs batch['degraded'] (the IQD copy of each image) for branch 2")
            outs[2] = self.branch(batch["degraded"], classify=2 in cls_br)

        zero = outputs["logits"].sum() * 0.0
        parts: dict[str, torch.Tensor] = {}
        loss = zero
        for n in cls_br:
            parts[f"cls{n}"] = F.cross_entropy(outs[n]["logits"], batch["label"])
            loss = loss + self.lambdas["cls"] * parts[f"cls{n}"]
        for n in seg_br:
            seg, aux = self._seg_loss(outs[n], batch["mask"])
            parts[f"seg{n}"] = seg
            loss = loss + self.lambdas["seg"] * seg
            if self.lambdas["aux"] > 0:  # not in Eq. 19; the official code's auxiliary CE
                parts[f"aux{n}"] = aux
                loss = loss + self.lambdas["seg"] * self.lambdas["aux"] * aux
        if use_li:
            parts["li"] = localization_invariance_loss(outs[1]["seg"], outs[2]["seg"])
            loss = loss + self.lambdas["li"] * parts["li"]
        return {"loss": loss, **{k: v.detach() for k, v in parts.items()}}

    def explain_maps(self, outputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Predicted manipulation mask P(fake pixel) at input resolution, (B, 1, H, W)."""
        return {"mask": outputs["mask"]}


def localization_invariance_loss(seg1: torch.Tensor, seg2: torch.Tensor) -> torch.Tensor:
    """Eq. 15, ``‖X_s¹ − X_s²‖₁`` as a mean over elements.

    Shape:
        seg1, seg2 (B, 2, H0, W0) → scalar
    """
    if seg1.shape != seg2.shape:
        raise ValueError(f"both branches' maps must have one shape; got {tuple(seg1.shape)} and {tuple(seg2.shape)}")
    return (seg1 - seg2).abs().mean()


# Table VI ablations (Model-A is "lisiam").
register_variant("lisiam_model_b", "lisiam", seg_branches=(1, 2), cls_branches=(1, 2))
register_variant("lisiam_model_c", "lisiam", seg_branches=())
register_variant("lisiam_model_d", "lisiam", seg_branches=(2,), cls_branches=(2,))
register_variant("lisiam_model_e", "lisiam", seg_branches=(2,), cls_branches=(2,), lambda_li=0.0)
register_variant("lisiam_model_f", "lisiam", use_mt=False)
register_variant("lisiam_model_g", "lisiam", seg_branches=(1, 2), cls_branches=(1, 2), lambda_li=0.0)
register_variant("lisiam_official", "lisiam", aux_weight=0.4)  # + the official code's auxiliary CE (not in Eq. 19)
