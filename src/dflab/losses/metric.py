"""Multi-metric loss pieces (Zhang, Li, Ni, Zhao 2021, "Detecting Deepfakes with Multi-Metric Loss").

* :func:`triplet_loss` — Eq. 2, ``[S_an − S_ap + κ]_+`` on dot-product similarities, triplets mined in the batch.
* :func:`weight_center_loss` — Eq. 3, ``1/α · log(1 + Σ_{k∈P} exp(−α (S_kc − λ)))`` over the real embeddings P and
  an iteratively updated centre c (:class:`WeightCenter` keeps the centre).
* :func:`weight_center_weights` — Eq. 4, the per-sample penalty weight ``w_kc`` (= −∂L/∂S_kc, see its docstring).
* :func:`ahe_negatives` — Eq. 6, the Adaptive Hardness-aware Expander's synthetic negatives.

Choices the paper leaves open (documented here, used by ``dflab.models.detectors.mml``):

* Embeddings are L2-normalised, so similarities lie in [−1, 1] and the margin κ = 1 is meaningful.
* λ (Eq. 3) = 0.5 is **not from the paper** (it names λ a fixed hyperparameter without a value): the similarity to
  the centre above which a real sample is barely penalised (the value the Multi-Similarity loss [21] uses for its
  positive threshold, from which Eq. 3 is derived).
* γ (Eq. 6), the AHE pulling factor: named in the text, absent from the printed η = exp(−1/L_CE); read as
  η = exp(−γ/L_CE) as in HDML (Zheng et al. 2019), γ = 1 by default (= the printed formula), see :func:`ahe_eta`.
* Centre update: ``c ← normalise((1 − m)·c + m·mean_{k∈P} f(x_k))`` with m = 0.1 after every training batch
  with reals, initialised to the first batch's real mean. The centre is a constant inside the loss (no gradient).
  Eq. 3 writes the centre as an embedding ``f(x_c; θ)`` and calls it "the iterative center" that "is iterated
  continuously"; a running mean of the real embeddings is our reading (a single real sample as the centre would
  jump from batch to batch, and a learnt centre would let the loss move the centre instead of the embeddings).
* Eq. 6's text swaps d⁺ and d⁻ (it defines ``d⁺ = ||z⁻ − z||``); we implement the intended geometry of hardness-
  aware metric learning: ``d⁺ = ||z⁺ − z||``, ``d⁻ = ||z⁻ − z||``; when ``d⁻ > d⁺`` the negative is pulled towards the
  anchor to distance ``η d⁻ + (1 − η) d⁺ ∈ [d⁺, d⁻]``, so it never becomes closer than the positive.
* The synthetic negative is a differentiable function of the batch's embeddings (z, z⁺, z⁻; η is a detached
  number): the AHE triplet term trains the network through it, as the original triplets do. Sec. 3.2 does not say
  whether z̃⁻ is detached; a detached z̃⁻ would leave only the anchor's and positive's gradients. z̃⁻ lies on the
  segment from z to z⁻, inside the unit sphere (not re-normalised), and ⟨z, z̃⁻⟩ ≤ ⟨z, z⁺⟩ still holds for unit z, z⁺,
  z⁻ (the dot-product form of "will not cross the positive sample").
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def triplet_indices(labels: torch.Tensor) -> torch.Tensor:
    """All valid (anchor, positive, negative) index triplets of a batch: same label a≠p, different label n.

    Shape:
        labels (B,) -> (T, 3) long
    """
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    valid = (same & ~eye)[:, :, None] & (~same)[:, None, :]
    return valid.nonzero()


def triplet_loss_from_similarities(s_an: torch.Tensor, s_ap: torch.Tensor, margin: float = 1.0) -> torch.Tensor:
    """Eq. 2 per triplet, ``[S_an − S_ap + κ]_+``.

    Shape:
        s_an, s_ap (T,) -> (T,)
    """
    return F.relu(s_an - s_ap + margin)


def triplet_loss(emb: torch.Tensor, labels: torch.Tensor, margin: float = 1.0, mining: str = "all") -> torch.Tensor:
    """Batch triplet loss on dot-product similarities (Eq. 2).

    Args:
        emb: embeddings (normalised by the caller if wanted).
        labels: 0 real / 1 fake.
        margin: κ.
        mining: ``"all"`` — mean over every valid triplet in the batch; ``"hard"`` — for each anchor its
            least similar positive and most similar negative (batch-hard).

    Shape:
        emb (B, D), labels (B,) -> scalar (0 when the batch holds no valid triplet)
    """
    sims = emb @ emb.t()
    if mining == "all":
        idx = triplet_indices(labels)
        if len(idx) == 0:
            return emb.sum() * 0.0
        a, p, n = idx.unbind(1)
        return triplet_loss_from_similarities(sims[a, n], sims[a, p], margin).mean()
    if mining == "hard":
        same = labels[:, None] == labels[None, :]
        eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
        pos = same & ~eye
        neg = ~same
        ok = pos.any(1) & neg.any(1)
        if not ok.any():
            return emb.sum() * 0.0
        s_ap = sims.masked_fill(~pos, math.inf).min(1).values
        s_an = sims.masked_fill(~neg, -math.inf).max(1).values
        return triplet_loss_from_similarities(s_an[ok], s_ap[ok], margin).mean()
    raise ValueError(f"unknown triplet mining {mining!r}; expected 'all' or 'hard'")


def weight_center_loss(
    emb_real: torch.Tensor, center: torch.Tensor, alpha: float = 2.0, lam: float = 0.5
) -> torch.Tensor:
    """Eq. 3: ``1/α · log(1 + Σ_{k∈P} exp(−α (S_kc − λ)))`` with ``S_kc = <f(x_k), c>``.

    Shape:
        emb_real (P, D), center (D,) -> scalar (0 when P is empty)
    """
    if emb_real.shape[0] == 0:
        return emb_real.sum() * 0.0
    s = emb_real @ center
    # log(1 + Σ e^x) = logsumexp([0, x_1, …, x_P]), numerically stable
    x = torch.cat([s.new_zeros(1), -alpha * (s - lam)])
    return torch.logsumexp(x, dim=0) / alpha


def weight_center_weights(sims: torch.Tensor, alpha: float = 2.0, lam: float = 0.5) -> torch.Tensor:
    """Eq. 4 penalty weights ``w_kc = 1 / (e^{−α(λ−S_kc)} + Σ_{i∈P} e^{−α(S_ic−S_kc)})``.

    This is exactly ``−∂L_WC/∂S_kc``. The paper writes the sum over ``i ≠ k``; the derivative of Eq. 3 includes the
    ``i = k`` term (= 1), which we keep so the weights are the ones the optimiser actually applies.

    Shape:
        sims (P,) -> (P,)
    """
    diff = sims[None, :] - sims[:, None]  # [k, i] = S_ic − S_kc
    return 1.0 / (torch.exp(-alpha * (lam - sims)) + torch.exp(-alpha * diff).sum(1))


def ahe_negatives(z: torch.Tensor, z_pos: torch.Tensor, z_neg: torch.Tensor, eta: float | torch.Tensor) -> torch.Tensor:
    """Adaptive Hardness-aware Expander (Eq. 6, intended geometry): harder synthetic negatives.

    ``z̃⁻ = z + [η d⁻ + (1 − η) d⁺] (z⁻ − z)/d⁻`` if ``d⁻ > d⁺`` else ``z⁻``, with ``d⁺ = ||z⁺ − z||``,
    ``d⁻ = ||z⁻ − z||`` and η = exp(−γ/L_CE) ∈ (0, 1) (:func:`ahe_eta`). Small CE (well-trained model) → small η →
    the negative is moved close to the positive's distance (harder); it never comes closer to the anchor than the
    positive.

    Shape:
        z, z_pos, z_neg (T, D), eta scalar or (T,) -> (T, D)
    """
    d_pos = (z_pos - z).norm(dim=1, keepdim=True)
    d_neg = (z_neg - z).norm(dim=1, keepdim=True)
    eta_t = torch.as_tensor(eta, dtype=z.dtype, device=z.device)
    if eta_t.dim() == 1:
        eta_t = eta_t[:, None]
    target = eta_t * d_neg + (1.0 - eta_t) * d_pos
    moved = z + target * (z_neg - z) / d_neg.clamp_min(1e-12)
    return torch.where(d_neg > d_pos, moved, z_neg)


def ahe_eta(ce_loss: torch.Tensor | float, gamma: float = 1.0) -> float:
    """η = exp(−γ/L_CE) (Eq. 6) from a detached CE value; γ is the "pulling factor used to balance the scale of
    L_CE" that the text names but the printed formula omits (HDML's exp(−α/J_avg)); γ = 1 is the printed η."""
    ce = float(ce_loss)
    return math.exp(-gamma / ce) if ce > 0 else 0.0


def ahe_triplet_loss(emb: torch.Tensor, labels: torch.Tensor, eta: float, margin: float = 1.0) -> torch.Tensor:
    """Triplet loss (Eq. 2) on every batch triplet with its negative replaced by the AHE synthetic one (Eq. 6).

    Shape:
        emb (B, D), labels (B,) -> scalar
    """
    idx = triplet_indices(labels)
    if len(idx) == 0:
        return emb.sum() * 0.0
    a, p, n = idx.unbind(1)
    z, zp, zn = emb[a], emb[p], emb[n]
    zn_syn = ahe_negatives(z, zp, zn, eta)
    s_ap = (z * zp).sum(1)
    s_an = (z * zn_syn).sum(1)
    return triplet_loss_from_similarities(s_an, s_ap, margin).mean()


class WeightCenter(nn.Module):
    """Weight-center loss (Eq. 3) with its iteratively updated real-cluster centre (a buffer, saved in checkpoints).

    Args:
        dim: embedding size.
        alpha: α of Eq. 3 (paper: 2).
        lam: λ of Eq. 3 (paper: unspecified; 0.5 here, see module docstring).
        momentum: m of the centre update ``c ← normalise((1 − m) c + m · mean_P)``.
    """

    def __init__(self, dim: int, alpha: float = 2.0, lam: float = 0.5, momentum: float = 0.1) -> None:
        super().__init__()
        self.alpha, self.lam, self.momentum = alpha, lam, momentum
        self.register_buffer("center", torch.zeros(dim))
        self.register_buffer("initialised", torch.zeros((), dtype=torch.bool))

    @torch.no_grad()
    def update(self, emb_real: torch.Tensor) -> None:
        """Move the centre towards the batch's real mean (no gradient). Shape: emb_real (P, D)."""
        if emb_real.shape[0] == 0:
            return
        mean = emb_real.detach().float().mean(0)
        new = mean if not bool(self.initialised) else (1 - self.momentum) * self.center + self.momentum * mean
        self.center.copy_(F.normalize(new, dim=0))
        self.initialised.fill_(True)

    def forward(self, emb_real: torch.Tensor) -> torch.Tensor:
        # a copy: the in-place centre update after the loss must not invalidate the autograd graph
        return weight_center_loss(emb_real, self.center.clone().to(emb_real.dtype), self.alpha, self.lam)
