"""GenD (Yermakov, Čech, Matas, Fritz, WACV 2026, "Deepfake Detection that Generalizes Across Benchmarks",
arXiv:2508.06248; earlier LNCLIP-DF): a CLIP image encoder of which only the LayerNorm parameters are tuned, a
linear head on the L2-normalised class token, cross-entropy plus alignment and uniformity on the hypersphere.

* Encoder (§3): CLIP's vision tower; the feature is the post-LayerNorm class token (HF ``pooler_output``, not the
  512-d projection). Here OpenAI CLIP **ViT-B/16** (timm ``vit_base_patch16_clip_quickgelu_224``, weights
  ``model.pretrained: clip_vitb16:openai`` from :mod:`dflab.models.clip_torch`); the paper's best model is ViT-L/14,
  which is not available offline.
* Parameter-efficient tuning (§3): only the affine parameters of every LayerNorm (pre-LN, ``norm1``/``norm2`` of
  each block, post-LN; ≈ 0.03 % of the encoder) and the head train. ``tune`` also offers ``none`` (linear probe on
  the frozen encoder) and ``last_blocks:K`` (the last K blocks and the post-LN entirely, the rest frozen) — the two
  alternatives issue 11 names; they are dflab options, not the paper's.
* Hyperspherical head (§3): ``z = x / ||x||``, ``logits = W z + b`` (the official code's ``NLinear`` head).
* Loss (§3, the official ``LN+L2+UnAl`` configuration): ``CE + 0.5 · L_unif(z) + 0.1 · L_align(z, y)`` with
  Wang & Isola's uniformity (t = 2) and a label-aware alignment (α = 2) over same-class pairs of the batch
  (:mod:`dflab.losses.hypersphere`). The weights were confirmed in the authors' released code (yermandy/GenD,
  ``src/exp`` experiment table and ``src/loss.py``), which the paper's text describes only as "metric learning".
* Input: CLIP's normalisation (mean/std below), 224 px face crops. The paper stresses training on real/fake pairs
  from the same source (§5); in dflab that is the data recipe's job (self-blends from each real face).

Deviations: ViT-B/16 instead of ViT-L/14; the float weights are dequantised from an int8 export (cosine ≈ 0.98 to
the ONNX run), not OpenAI's float checkpoint; no latent-space augmentation (arXiv v1 only, dropped by the authors in
v3). With frozen leading blocks (``none``, ``last_blocks``) the frozen part runs without autograd, which changes
speed, not results.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dflab.losses import classification_loss
from dflab.losses.hypersphere import alignment_loss, uniformity_loss
from dflab.models.backbones import create_backbone
from dflab.models.base import Detector, InputSpec, register_detector
from dflab.models.clip import CLIP_MEAN, CLIP_SIZE, CLIP_STD

TUNE_MODES = ("ln", "none", "last_blocks:K")


def parse_tune(tune: str, depth: int) -> tuple[str, int]:
    """``"ln"`` / ``"none"`` / ``"last_blocks:K"`` -> (mode, K); K = 0 unless ``last_blocks``.

    Raises:
        ValueError: an unknown mode or K outside 1..depth.
    """
    if tune in ("ln", "none"):
        return tune, 0
    if tune.startswith("last_blocks:"):
        k = tune.split(":", 1)[1]
        if k.isdigit() and 1 <= int(k) <= depth:
            return "last_blocks", int(k)
        raise ValueError(f"tune={tune!r}: K must be an integer in 1..{depth}")
    raise ValueError(f"tune={tune!r}: expected one of {TUNE_MODES}")


@register_detector(
    "gend",
    tiny={
        "backbone_kwargs": {"img_size": 64, "embed_dim": 32, "depth": 2, "num_heads": 2},
        "size": 64,
    },
)
class GenD(Detector):
    """CLIP ViT with LayerNorm-only tuning and a linear head on the L2-normalised class token.

    Args:
        backbone: backbone name (``clip_vitb16`` = timm ``vit_base_patch16_clip_quickgelu_224``) or a timm ViT.
        backbone_kwargs: passed to timm (the tiny variant shrinks the ViT here).
        tune: which encoder parameters train: ``ln`` (GenD), ``none`` or ``last_blocks:K``; the head always trains.
        w_unif: weight of the uniformity term (GenD: 0.5; 0 turns it off).
        w_align: weight of the alignment term (GenD: 0.1; 0 turns it off).
        unif_t: t of the uniformity loss (Wang & Isola: 2).
        align_alpha: α of the alignment loss (Wang & Isola: 2).
        label_smoothing: of the cross-entropy (GenD: 0).
        size: input side (CLIP: 224 px).
        margin: face-box margin of the input contract.
        align: crop alignment of the input contract.
        mean: input normalisation mean (CLIP's).
        std: input normalisation std (CLIP's).

    Shape:
        images (B, 3, S, S) -> {"logits": (B, 2), "features": (B, D) unit-norm class token}.
    """

    def __init__(
        self,
        backbone: str = "clip_vitb16",
        backbone_kwargs: dict[str, Any] | None = None,
        tune: str = "ln",
        w_unif: float = 0.5,
        w_align: float = 0.1,
        unif_t: float = 2.0,
        align_alpha: float = 2.0,
        label_smoothing: float = 0.0,
        size: int = CLIP_SIZE,
        margin: float = 1.3,
        align: str = "box",
        mean: tuple[float, float, float] = CLIP_MEAN,
        std: tuple[float, float, float] = CLIP_STD,
    ) -> None:
        super().__init__(InputSpec(size=int(size), margin=margin, align=align, mean=tuple(mean), std=tuple(std)))
        self.backbone = create_backbone(backbone, **(backbone_kwargs or {}))
        if not hasattr(self.backbone, "blocks") or getattr(self.backbone, "global_pool", None) != "token":
            raise ValueError(f"GenD needs a class-token ViT backbone, got {backbone!r}")
        self.head = nn.Linear(self.backbone.num_features, 2)
        self.tune, self.tune_k = parse_tune(tune, len(self.backbone.blocks))
        self.w_unif, self.w_align, self.unif_t, self.align_alpha = w_unif, w_align, unif_t, align_alpha
        self.label_smoothing = label_smoothing
        self._freeze()

    def _freeze(self) -> None:
        bb = self.backbone
        bb.requires_grad_(False)
        if self.tune == "ln":
            for m in bb.modules():
                if isinstance(m, nn.LayerNorm):
                    m.requires_grad_(True)
        elif self.tune == "last_blocks":
            for blk in bb.blocks[len(bb.blocks) - self.tune_k :]:
                blk.requires_grad_(True)
            bb.norm.requires_grad_(True)
        # the engine re-enables every parameter per phase unless the detector lists it here (exact names)
        self.frozen_prefixes = tuple(n for n, p in self.named_parameters() if not p.requires_grad)
        # blocks before the first trainable parameter need no autograd (none: all of them; ln: none of them)
        self._frozen_blocks = {"ln": 0, "none": len(bb.blocks), "last_blocks": len(bb.blocks) - self.tune_k}[self.tune]

    def trainable_parameter_names(self) -> list[str]:
        """Names of the parameters that train (``requires_grad``)."""
        return [n for n, p in self.named_parameters() if p.requires_grad]

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Post-LayerNorm class token, the same computation as timm's ``forward_features`` + token pooling.

        Shape:
            (B, 3, S, S) -> (B, D).
        """
        bb = self.backbone
        expected = tuple(bb.patch_embed.img_size)
        if images.ndim != 4 or images.shape[1] != 3 or tuple(images.shape[-2:]) != expected:
            raise ValueError(
                f"expected images of shape (B, 3, {expected[0]}, {expected[1]}), got {tuple(images.shape)}"
            )
        k = self._frozen_blocks
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.tune == "ln"):
            x = bb.norm_pre(bb.patch_drop(bb._pos_embed(bb.patch_embed(images))))
            for blk in bb.blocks[:k]:
                x = blk(x)
        for blk in bb.blocks[k:]:
            x = blk(x)
        return bb.forward_head(bb.norm(x), pre_logits=True)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        z = F.normalize(self.encode(images), dim=1)
        return {"logits": self.head(z), "features": z}

    def compute_loss(self, batch: dict[str, Any], outputs: dict[str, torch.Tensor], **phase: Any) -> dict[str, Any]:
        labels = batch["label"]
        z = outputs["features"].float()
        ce = classification_loss(outputs["logits"], labels, label_smoothing=self.label_smoothing)
        unif = uniformity_loss(z, t=self.unif_t)
        align = alignment_loss(z, labels, alpha=self.align_alpha)
        loss = ce + self.w_unif * unif + self.w_align * align
        return {"loss": loss, "ce": ce.detach(), "uniformity": unif.detach(), "alignment": align.detach()}
