"""DADD — Deepfake Artifact Discrepancy Detector (Hong & Du 2021, "Self-supervised deepfake detection by
discovering artifact discrepancies", Sec. 3.2–3.3, Algorithm 1, Eqs. 2–4).

A shared CNN (Xception in the paper) gives a common feature Z; one private projection of size F per sub-task (one
sub-task per ADDG category, 9 in the paper); a 2-way head per sub-task; a final task on the concatenation of all
private features. Training (Algorithm 1, driven by ``dflab.train.schedules.dadd.DADDSchedule``) alternates the
sub-tasks (``task="sub:k"``, each fed its own category's negatives with reals) and the final task
(``task="final"``, all categories), with ``L = L_F + λ·ℓ2,1(W)`` on the final task's weights (Eq. 4, λ = 0.1).

Deviations / choices (the paper gives no implementation details):
* Private projection = Linear(C, F) + BN + ReLU, F = 256; sub-task heads Linear(F, 2); final head Linear(N·F, 2).
* ℓ2,1 rows (Eq. 3) = the sub-tasks: "each row's parameters represent the weights corresponding to the feature
  vectors extracted by each sub-task" (Sec. 3.3), so row n of W holds all 2·F weights of the final head that read
  sub-task n's private feature (d = N rows; Fig. 4 has one row per ST_n). ``l21_groups="unit"`` is the other
  reading (one row per private feature unit, d = N·F). Default ``"subtask"``: the paper's text, and its scale —
  at initialisation (Xception, N = 9, F = 256) λ·ℓ2,1 ≈ 0.25 next to a cross-entropy of ≈ 0.69, where the
  per-unit reading gives ≈ 3.6 and the regulariser would dominate L_F from the first step.
  :meth:`DADD.group_norms` gives the N row norms; :meth:`DADD.row_norm_map` the per-unit (N, F) norms.
* Eq. 2's binary cross-entropy with p_i = softmax of a 2-way head (the same loss as a sigmoid on the logit
  difference); ``score`` is the final task's P(fake) ("in the test process, the prediction is the output of the
  final task", Sec. 3.2).
* ``multitask=False`` gives the "Xception on ADDG" baseline of Table 2: a single head on Z, ``task`` ignored. Its
  variants ``dadd_xception`` / ``dadd_xception_tiny`` set λ = 0: the baseline is a plain Xception and Eq. 4's ℓ2,1
  acts on the concatenated private features, which it does not have.
* Algorithm 1's "for i = 0 to k" is read as k rounds over the sub-tasks (the recipe's k = 1, t = 9; the paper gives
  no values). A sub-task step trains the backbone, that sub-task's projection and head; a final step the backbone,
  all projections and the final head ("the common and private features could both retain the significant
  features", Sec. 3.2).
* Sub-task batches come from the sub-task's own stream; when the schedule also names the category id
  (``compute_loss(task="sub:k", category=c)``) the loss keeps only reals (category −1) and category c.
* Left as is: ``forward`` computes all N projections, so a sub-task step also moves the BatchNorm running
  statistics of the other projections (not their weights) with its batch. Every stream is half reals, half ADDG,
  and the final task that scores sees all of them, so the statistics stay those of the training mix.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dflab.losses.l21 import grouped_l21_norm, l21_norm, row_norms
from dflab.models.base import Detector, InputSpec, register_detector, register_variant
from dflab.synthesis.addg import CATEGORIES

#: The nine ADDG categories (Sec. 3.1), in sub-task order: the synthesizer's own list, written once.
ADDG_CATEGORIES = CATEGORIES


def make_backbone(name: str, pretrained: str | None = None) -> nn.Module:
    """A timm feature extractor returning pooled features (B, C); ``pretrained`` = a local weights file."""
    from dflab.compat import ensure_torchvision

    ensure_torchvision()
    import timm

    model = timm.create_model(name, pretrained=False, num_classes=0)
    if pretrained:
        from dflab.models.backbones import load_pretrained  # strict: reports missing/unexpected keys

        load_pretrained(model, pretrained)
    return model


@register_detector("dadd", tiny={"backbone": "test_resnet", "feat_dim": 16, "n_tasks": 3, "input_size": 64})
class DADD(Detector):
    """Shared CNN → N private projections (sub-tasks) → final task on their concatenation.

    Args:
        backbone: timm model name for the common feature Z (paper: Xception → ``legacy_xception``).
        n_tasks: number of sub-tasks N (= ADDG categories).
        feat_dim: private feature size F.
        l21_lambda: λ of Eq. 4 (0 = DADD without ℓ2,1).
        l21_groups: rows of Eq. 3: ``"subtask"`` (paper, one row per sub-task) or ``"unit"`` (per feature unit).
        multitask: False = plain backbone + one head (the "Xception on ADDG" baseline).
        pretrained: optional local weights file for the backbone.
        input_size: crop size of the input contract.
    """

    targets = frozenset({"category"})

    def __init__(
        self,
        backbone: str = "legacy_xception",
        n_tasks: int = len(ADDG_CATEGORIES),
        feat_dim: int = 256,
        l21_lambda: float = 0.1,
        l21_groups: str = "subtask",
        multitask: bool = True,
        pretrained: str | None = None,
        input_size: int = 299,
    ) -> None:
        super().__init__(InputSpec(size=input_size, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)))
        if l21_groups not in ("subtask", "unit"):
            raise ValueError(f"l21_groups must be 'subtask' or 'unit', got {l21_groups!r}")
        self.n_tasks, self.feat_dim, self.l21_lambda, self.multitask = n_tasks, feat_dim, l21_lambda, multitask
        self.l21_groups = l21_groups
        self.backbone = make_backbone(backbone, pretrained)
        c = self.backbone.num_features
        if multitask:
            self.private = nn.ModuleList(
                nn.Sequential(nn.Linear(c, feat_dim), nn.BatchNorm1d(feat_dim), nn.ReLU(inplace=True))
                for _ in range(n_tasks)
            )
            self.sub_heads = nn.ModuleList(nn.Linear(feat_dim, 2) for _ in range(n_tasks))
            self.final_head = nn.Linear(n_tasks * feat_dim, 2)
        else:
            self.final_head = nn.Linear(c, 2)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Shape: images (B, 3, H, W) -> logits (B, 2), sub_logits (B, N, 2), sub_probs (B, N), private (B, N, F)."""
        z = self.backbone(images)
        if not self.multitask:
            return {"logits": self.final_head(z), "features": z}
        priv = torch.stack([p(z) for p in self.private], dim=1)
        sub = torch.stack([h(priv[:, k]) for k, h in enumerate(self.sub_heads)], dim=1)
        logits = self.final_head(priv.flatten(1))
        return {
            "logits": logits,
            "sub_logits": sub,
            "sub_probs": sub.float().softmax(-1)[..., 1],  # per-sub-task P(fake), Fig. 6
            "private": priv,
            "features": z,
        }

    def l21(self) -> torch.Tensor:
        """ℓ2,1 of the final task's weights over the concatenated private features (Eq. 3), rows per ``l21_groups``."""
        w = self.final_head.weight.t()  # (N·F, 2): rows = inputs
        if self.multitask and self.l21_groups == "subtask":
            return grouped_l21_norm(w, self.n_tasks)
        return l21_norm(w)

    @torch.no_grad()
    def group_norms(self) -> torch.Tensor:
        """Norm of each sub-task's block of final weights, the rows of Eq. 3 (Fig. 4). Shape: (N,)."""
        w = self.final_head.weight.t()
        return row_norms(w.reshape(self.n_tasks if self.multitask else 1, -1))

    @torch.no_grad()
    def row_norm_map(self) -> torch.Tensor:
        """Row norms of the final weights reshaped per sub-task (Fig. 4). Shape: (N, F) ((1, C) if not multitask)."""
        rn = row_norms(self.final_head.weight.t())
        return rn.view(self.n_tasks, self.feat_dim) if self.multitask else rn[None]

    def compute_loss(self, batch: dict[str, Any], outputs: dict[str, torch.Tensor], **phase: Any) -> dict[str, Any]:
        """``task="sub:k"`` → L_S of sub-task k (Eq. 2); ``task="final"`` (default) → L_F + λ·ℓ2,1 (Eq. 4).

        Parts: ``ce`` (of the trained head) and ``l21`` (the current ℓ2,1 norm, added to the loss only in ``final``).
        """
        label = batch["label"].long()
        task = str(phase.get("task", "final"))
        if self.multitask and task.startswith("sub:"):
            k = int(task.split(":", 1)[1])
            if not 0 <= k < self.n_tasks:
                raise ValueError(f"sub-task index {k} out of range for {self.n_tasks} sub-tasks")
            logits, lab = outputs["sub_logits"][:, k], label
            if "category" in batch and phase.get("category") is not None:
                cat = batch["category"].to(label.device)
                keep = (cat == -1) | (cat == int(phase["category"]))
                logits, lab = logits[keep], lab[keep]
            loss = F.cross_entropy(logits, lab) if len(lab) else logits.sum() * 0.0
            return {"loss": loss, "ce": loss.detach(), "l21": self.l21().detach()}
        if task not in ("final", "train") and not task.startswith("sub:"):
            raise ValueError(f"unknown DADD task {task!r}; expected 'sub:<k>' or 'final'")
        ce = F.cross_entropy(outputs["logits"], label)
        reg = self.l21()
        loss = ce + self.l21_lambda * reg if self.l21_lambda > 0 else ce
        # same keys in every phase (one CSV log); the phase name says which head ``ce`` belongs to
        return {"loss": loss, "ce": ce.detach(), "l21": reg.detach()}


# Table 2 ablations and the λ sweep of Fig. 7, as configurations.
# Table 2's "Xcep-ADDG" is a plain Xception: no private features, so no ℓ2,1 (Eq. 4 regularises the concatenated
# private features). The constructor's λ = 0.1 would otherwise put a per-input ℓ2,1 on the 2048 inputs of its head
# (λ·ℓ2,1 ≈ 3.4 at initialisation against a cross-entropy of 0.69).
register_variant("dadd_xception", "dadd", multitask=False, l21_lambda=0.0)
register_variant("dadd_no_l21", "dadd", l21_lambda=0.0)
for _lam in (0.001, 0.01, 0.1, 1.0, 10.0):
    register_variant(f"dadd_l21_{_lam:g}".replace(".", "p"), "dadd", l21_lambda=_lam)
register_variant("dadd_xception_tiny", "dadd", backbone="test_resnet", multitask=False, l21_lambda=0.0, input_size=64)
register_variant(
    "dadd_no_l21_tiny", "dadd", backbone="test_resnet", feat_dim=16, n_tasks=3, l21_lambda=0.0, input_size=64
)
