"""Multi-metric loss detector (Zhang, Li, Ni, Zhao 2021, "Detecting Deepfakes with Multi-Metric Loss", Sec. 3).

ResNet-34 (ImageNet-pretrained in the paper) → linear projection g to an L2-normalised embedding z; a linear CE
head on z. Loss (Eq. 1): ``L_WC + β·L_Triplet + χ·L_CE`` with β = 2, χ = 1, α = 2, κ = 1.

Stages (Sec. 4.3.1, driven by ``dflab.train.schedules.mml.MMLSchedule`` through ``compute_loss(stage=…)``):
* ``early``  — β·L_Triplet + χ·L_CE;
* ``middle`` — + L_WC (Eq. 3) on the real embeddings with the iteratively updated centre;
* ``end``    — + L_WC, and the triplet term also uses the AHE synthetic negatives (Eq. 6) with η = exp(−1/L_CE):
  ``L_Triplet = ½ (L_Triplet(original) + L_Triplet(synthetic))``.

Choices the paper leaves open (see ``dflab.losses.metric``): embedding size 128; embeddings L2-normalised; triplets
mined as all valid batch triplets; λ = 0.5; centre ``c ← normalise(0.9 c + 0.1 mean_P)`` updated after every
training batch in every stage (so it is settled when L_WC switches on); η uses the batch's detached L_CE.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dflab.losses.metric import WeightCenter, ahe_eta, ahe_triplet_loss, triplet_loss
from dflab.models.base import Detector, InputSpec, register_detector, register_variant
from dflab.models.detectors.dadd import make_backbone

STAGES = ("early", "middle", "end")


@register_detector("mml", tiny={"backbone": "test_resnet", "embed_dim": 16, "input_size": 64})
class MultiMetric(Detector):
    """Embedding network trained with the multi-metric loss and AHE.

    Args:
        backbone: timm name (paper: ``resnet34``).
        embed_dim: embedding size D.
        beta: weights of the triplet and CE terms (Eq. 1).
        chi: weights of the triplet and CE terms (Eq. 1).
        alpha: α, λ of the weight-center loss (Eq. 3).
        lam: α, λ of the weight-center loss (Eq. 3).
        margin: κ of the triplet loss (Eq. 2).
        center_momentum: m of the centre update.
        use_wc: ablation switches (Table 3: triplet only / + CE / + WC).
        use_ahe: ablation switches (Table 3: triplet only / + CE / + WC).
        use_ce: ablation switches (Table 3: triplet only / + CE / + WC).
        mining: ``"all"`` or ``"hard"`` batch triplets.
        pretrained: optional local weights file for the backbone.
        input_size: crop size of the input contract (paper: 256).
    """

    def __init__(
        self,
        backbone: str = "resnet34",
        embed_dim: int = 128,
        beta: float = 2.0,
        chi: float = 1.0,
        alpha: float = 2.0,
        lam: float = 0.5,
        margin: float = 1.0,
        center_momentum: float = 0.1,
        use_wc: bool = True,
        use_ahe: bool = True,
        use_ce: bool = True,
        mining: str = "all",
        pretrained: str | None = None,
        input_size: int = 256,
    ) -> None:
        super().__init__(InputSpec(size=input_size))
        self.beta, self.chi, self.margin, self.mining = beta, chi, margin, mining
        self.use_wc, self.use_ahe, self.use_ce = use_wc, use_ahe, use_ce
        self.backbone = make_backbone(backbone, pretrained)
        self.embed = nn.Linear(self.backbone.num_features, embed_dim)
        self.classifier = nn.Linear(embed_dim, 2)
        self.wc = WeightCenter(embed_dim, alpha=alpha, lam=lam, momentum=center_momentum)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Shape: images (B, 3, H, W) -> embedding (B, D) unit norm, logits (B, 2)."""
        emb = F.normalize(self.embed(self.backbone(images)), dim=1)
        return {"embedding": emb, "logits": self.classifier(emb)}

    def compute_loss(self, batch: dict[str, Any], outputs: dict[str, torch.Tensor], **phase: Any) -> dict[str, Any]:
        """``stage`` ∈ {early, middle, end} (default ``end`` = the full loss)."""
        stage = str(phase.get("stage", "end"))
        if stage not in STAGES:
            raise ValueError(f"unknown MML stage {stage!r}; expected one of {STAGES}")
        label = batch["label"].long()
        emb = outputs["embedding"].float()
        ce = F.cross_entropy(outputs["logits"].float(), label)
        trip = triplet_loss(emb, label, self.margin, self.mining)
        # every term is computed for logging (same keys in every stage); the stage decides what enters the loss
        eta = ahe_eta(ce.detach())
        trip_syn = ahe_triplet_loss(emb, label, eta, self.margin)
        real = emb[label == 0]
        wc = self.wc(real) if bool(self.wc.initialised) else emb.sum() * 0.0
        use_ahe = stage == "end" and self.use_ahe
        loss = self.beta * (0.5 * (trip + trip_syn) if use_ahe else trip)
        if self.use_ce:
            loss = loss + self.chi * ce
        if self.use_wc and stage in ("middle", "end"):
            loss = loss + wc
        if self.training:
            self.wc.update(real)
        return {
            "loss": loss,
            "ce": ce.detach(),
            "triplet": trip.detach(),
            "triplet_ahe": trip_syn.detach(),
            "eta": torch.tensor(eta),
            "weight_center": wc.detach(),
        }


# Table 3 ablations.
register_variant("mml_triplet", "mml", use_ce=False, use_wc=False, use_ahe=False)
register_variant("mml_triplet_ce", "mml", use_wc=False, use_ahe=False)
register_variant("mml_no_ahe", "mml", use_ahe=False)
