"""Multi-metric loss detector (Zhang, Li, Ni, Zhao 2021, "Detecting Deepfakes with Multi-Metric Loss", Sec. 3).

ResNet-34 (ImageNet-pretrained in the paper, Sec. 4.1: the ``mml`` recipe asks for ``timm:resnet34.tv_in1k``) →
linear projection g to an L2-normalised embedding z; a linear CE head on z. Loss (Eq. 1):
``L_WC + β·L_Triplet + χ·L_CE`` with β = 2, χ = 1 (Sec. 4.1), α = 2 (Sec. 4.1), κ = 1 (Sec. 4.1).

Stages (Sec. 4.3.1, driven by ``dflab.train.schedules.mml.MMLSchedule`` through ``compute_loss(stage=…)``):
* ``early``  — β·L_Triplet + χ·L_CE;
* ``middle`` — + L_WC (Eq. 3) on the real embeddings with the iteratively updated centre;
* ``end``    — + L_WC, and the triplet term also uses the AHE synthetic negatives (Eq. 6) with
  η = exp(−γ/L_CE): ``L_Triplet = ½ (L_Triplet(original) + L_Triplet(synthetic))``.

What the paper gives and what is ours, equation by equation:

* Eq. 3, λ = 0.5 — **ours, not the paper's**: Sec. 3.1.3 calls α and λ "fixed hyperparameters" and Sec. 4.1 sets α = 2
  only. 0.5 is the Multi-Similarity loss's positive threshold (Eq. 3 is derived from it, ref. [21]); ``lam`` changes it.
* Eq. 6, the pulling factor γ — the text defines "γ, the pulling factor used to balance the scale of L_CE", but the
  printed η = exp(−1/L_CE) has no γ. Its source, hardness-aware metric learning (HDML, Zheng et al. CVPR 2019),
  writes η = exp(−α/J_avg) with α the "pulling factor"; we read Eq. 6 the same way: η = exp(−γ/L_CE)
  (``ahe_gamma``). The paper gives no value: γ = 1 (default) is exactly the printed formula; a larger γ gives
  smaller η, i.e. harder synthetic negatives at the same L_CE.
* Stage boundaries — **ours**: Sec. 4.3.1 says only that L_WC works "in the middle and end stages" and AHE "in the
  end-stage"; the schedule switches at 30 % and 60 % of the 10 000 iterations (the first two ÷10 lr drops of
  Sec. 4.1), see ``dflab.train.schedules.mml``.
* The ½ mix of the original and AHE triplet terms in the end stage — **ours**: Sec. 3.2 does not say how the
  synthetic triplets enter Eq. 1; ½·(original + synthetic) keeps L_Triplet's scale (β = 2 unchanged).
* Also ours (the paper leaves them open, see ``dflab.losses.metric``): embedding size 128; embeddings
  L2-normalised; triplets mined as all valid batch triplets; centre ``c ← normalise(0.9 c + 0.1 mean_P)`` updated
  after every training batch in every stage (so it is settled when L_WC switches on); η uses the batch's detached
  L_CE.
* The CE term — ours: Sec. 3.1.2 and Fig. 2 put L_CE on "all original embedding vectors" without naming a head; a
  linear layer on the (unit) embedding z gives the two logits. The synthetic AHE negatives do not enter L_CE (Sec. 3.2
  builds hardness-aware *triplets* from them).
* Table 3's rows — read as: its last row ("+ Weight-center Loss": ACC .985/.974/.995/.938) is the full method, since
  those are exactly Table 1's "Ours" ACCs, trained "with Multi-metric Loss and AHE" (Sec. 4.2): ``mml``. Its first
  two rows are ``mml_triplet`` and ``mml_triplet_ce``, without AHE — the paper does not say whether they used it;
  η needs L_CE, which row 1 does not have, and for row 2 ``model.kwargs.use_ahe=true`` gives the other reading.
  ``mml_no_ahe`` is Fig. 6's "without AHE" (the paper gives it no number).
* Batch 16 (Sec. 4.1, "on 4 RTX 2080Ti GPUs with batch size 16"): read as the total batch, the recipe's
  ``batch_size`` — with 8 reals and 8 fakes per batch every anchor has positives and negatives.
* Training data (Sec. 4.1–4.3): "we train the model on FF++ (c23)" — the recipe trains one model on the manifest's
  training split (all its FF++ manipulations) and ``dflab eval --protocol cross_manipulation_ffpp`` reports Table 1's
  per-method columns; one model per manipulation is ``data.streams.default.methods=[real, <method>]``.

Scoring (``score_by``): with the CE term (Eq. 1) P(fake) is the CE head's softmax. A model trained *without* CE —
``mml_triplet``, Table 3's first row — never trains that head, so it scores the way a triplet-only embedding can:
by its similarity to the two class centres (the real centre of Eq. 3 and a fake centre kept the same way, both
updated from the training batches), ``logits = s·[⟨z, c_real⟩, ⟨z, c_fake⟩]`` with s = :data:`CENTRE_SCALE`
(unit vectors: the larger dot product is the nearer centre, so P(fake) > 0.5 iff z is nearer the fake centre).
The default is ``"head"`` when ``use_ce`` else ``"centres"``; the centre buffers exist only in ``"centres"`` mode,
so checkpoints of the head-scored models are unchanged.
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
#: similarity → logit scale of centre scoring (cosine similarities lie in [−1, 1]; only the ranking matters for AUC)
CENTRE_SCALE = 10.0


@register_detector("mml", tiny={"backbone": "test_resnet", "embed_dim": 16, "input_size": 64})
class MultiMetric(Detector):
    """Embedding network trained with the multi-metric loss and AHE.

    Args:
        backbone: timm name (paper: ``resnet34``).
        embed_dim: embedding size D.
        beta: β, weight of the triplet term (Eq. 1; paper 2.0).
        chi: χ, weight of the CE term (Eq. 1; paper 1.0).
        alpha: α of the weight-center loss (Eq. 3; paper 2.0).
        lam: λ of the weight-center loss (Eq. 3; not given by the paper, 0.5 here — module docstring).
        margin: κ of the triplet loss (Eq. 2; paper 1.0).
        center_momentum: m of the centre update (ours).
        use_wc: the weight-center term in the middle and end stages (off in Table 3's first two rows).
        use_ahe: the AHE synthetic triplets in the end stage (Sec. 3.2; off = Fig. 6's "without AHE").
        use_ce: the CE term (Table 3's second row; off = its first row, triplet only).
        mining: ``"all"`` or ``"hard"`` batch triplets.
        pretrained: optional local weights file for the backbone.
        input_size: crop size of the input contract (paper: 256).
        ahe_gamma: γ, the AHE pulling factor in η = exp(−γ/L_CE) (Eq. 6; see the module docstring).
        score_by: ``"head"`` (CE head) or ``"centres"`` (similarity to the class centres); ``None`` = ``"head"``
            when ``use_ce`` else ``"centres"``.
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
        ahe_gamma: float = 1.0,
        score_by: str | None = None,
    ) -> None:
        super().__init__(InputSpec(size=input_size))
        score_by = score_by or ("head" if use_ce else "centres")
        if score_by not in ("head", "centres"):
            raise ValueError(f"score_by must be 'head' or 'centres', got {score_by!r}")
        if ahe_gamma <= 0:
            raise ValueError(f"ahe_gamma must be positive, got {ahe_gamma}")
        self.beta, self.chi, self.margin, self.mining = beta, chi, margin, mining
        self.use_wc, self.use_ahe, self.use_ce = use_wc, use_ahe, use_ce
        self.ahe_gamma, self.score_by = ahe_gamma, score_by
        self.backbone = make_backbone(backbone, pretrained)
        self.embed = nn.Linear(self.backbone.num_features, embed_dim)
        self.classifier = nn.Linear(embed_dim, 2)
        self.wc = WeightCenter(embed_dim, alpha=alpha, lam=lam, momentum=center_momentum)
        # the fake class's centre, kept like the real one (only its centre and update are used)
        self.fake_centre = WeightCenter(embed_dim, momentum=center_momentum) if score_by == "centres" else None

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Shape: images (B, 3, H, W) -> embedding (B, D) unit norm, logits (B, 2) (CE head or centre similarity)."""
        emb = F.normalize(self.embed(self.backbone(images)), dim=1)
        if self.fake_centre is None:
            return {"embedding": emb, "logits": self.classifier(emb)}
        centres = torch.stack([self.wc.center, self.fake_centre.center], dim=1).to(emb.dtype)  # (D, 2)
        return {"embedding": emb, "logits": CENTRE_SCALE * emb @ centres}

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
        eta = ahe_eta(ce.detach(), self.ahe_gamma)
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
            if self.fake_centre is not None:
                self.fake_centre.update(emb[label == 1])
        return {
            "loss": loss,
            "ce": ce.detach(),
            "triplet": trip.detach(),
            "triplet_ahe": trip_syn.detach(),
            "eta": torch.tensor(eta),
            "weight_center": wc.detach(),
        }


# Table 3's first two rows (its last row is the full ``mml``) and Fig. 6's "without AHE"; see the module docstring.
# mml_triplet never trains the CE head: it scores by the class centres.
register_variant("mml_triplet", "mml", use_ce=False, use_wc=False, use_ahe=False)
register_variant("mml_triplet_ce", "mml", use_wc=False, use_ahe=False)
register_variant("mml_no_ahe", "mml", use_ahe=False)
