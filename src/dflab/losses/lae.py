"""LAE losses (Du, Pentyala, Li, Hu, CIKM 2020, "Towards Generalizable Deepfake Detection with Locality-aware
AutoEncoder", Sec. 2.2–2.4).

* :func:`latent_activations` / :func:`latent_loss` — Eqs. 3–4; the first half of z is the *true* part, the second
  half the *fake* part; prediction: real iff a_T > a_F.
* :func:`pixel_loss`, :func:`perceptual_loss`, :func:`generator_adv_loss`, :func:`discriminator_loss` — the three
  reconstruction terms of Eq. 5 and the DCGAN discriminator objective of Eq. 6.
* :func:`cam_attention` — the differentiable CAM map of Eqs. 7–8; :func:`attention_loss` — Eq. 9 / 11.

Choices: Eq. 5 writes squared norms but the text says MAE for both the pixel and the perceptual term; we follow the
text (L1). Eq. 4 and Eq. 9 sum over samples; we average over samples (and pixels for Eq. 9) so the scale does not
depend on the batch size; in Eq. 12 the attention sum runs over the annotated fakes only, so LAE divides it by the
batch size too (``attention_loss(..., reduction="batch")``) and each annotated fake weighs as much as in Eq. 12.
The CAM map is min–max normalised per image to [0, 1] before Eq. 9 compares it with the binary mask (Eq. 8's raw
scale is arbitrary); the normalisation is differentiable.

Label convention: Sec. 2.1 says "l_i ∈ [0, 1] denotes fake and true class label respectively", i.e. the paper's
l_i = 1 is *true*, and Eq. 4 drives a_T to l_i (the true part is "maximally activated if the input x_i is a true
image"). dflab's label is 1 = fake, so Eq. 4 uses ``1 − label``.

Eq. 8's sum runs over "c = 1 … d_F": read as the d_z/2 units of the fake part F (Eq. 3's F = {d_z/2 + 1, …, d_z}),
not over all of z: the attention map is regularised on fakes only (Eqs. 9/11), where the fake part is the one that
must fire (Eq. 4), and d_F names F's size the way Eq. 3's 2/d_z normalises by it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def latent_activations(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 3: ``a_T = 2/d_z ||z_T||_1``, ``a_F = 2/d_z ||z_F||_1`` (first half T, second half F).

    Shape:
        z (B, d_z) with d_z even -> (a_T (B,), a_F (B,))
    """
    d = z.shape[1]
    if d % 2:
        raise ValueError(f"latent size must be even, got {d}")
    half = d // 2
    return z[:, :half].abs().mean(1), z[:, half:].abs().mean(1)


def latent_loss(z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Eq. 4 averaged over the batch: ``|a_T − t| + |a_F − (1 − t)|`` with t = 1 for a *true* image.

    dflab's label is 1 = fake, so the paper's ``l_i`` (1 = true) is ``1 − label``.

    Shape:
        z (B, d_z), labels (B,) -> scalar
    """
    a_t, a_f = latent_activations(z)
    true = 1.0 - labels.to(z.dtype)
    return ((a_t - true).abs() + (a_f - (1.0 - true)).abs()).mean()


def latent_logits(z: torch.Tensor) -> torch.Tensor:
    """Two-class logits ``[a_T, a_F]``: argmax is the paper's decision (fake iff a_F ≥ a_T).

    Shape:
        z (B, d_z) -> (B, 2)
    """
    a_t, a_f = latent_activations(z)
    return torch.stack([a_t, a_f], dim=1)


def pixel_loss(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    """Eq. 5 pixel term (MAE). Shape: x, x_hat (B, 3, H, W) -> scalar."""
    return (x - x_hat).abs().mean()


def perceptual_loss(feat_x: torch.Tensor, feat_hat: torch.Tensor) -> torch.Tensor:
    """Eq. 5 perceptual term: MAE between comparator features C(x), C(x̂). Shape: (B, C, h, w) each -> scalar."""
    return (feat_x - feat_hat).abs().mean()


def generator_adv_loss(d_fake_logits: torch.Tensor) -> torch.Tensor:
    """Eq. 5 adversarial term ``−log D(x̂)`` from discriminator logits. Shape: (B,) or (B, 1) -> scalar."""
    return F.binary_cross_entropy_with_logits(d_fake_logits, torch.ones_like(d_fake_logits))


def discriminator_loss(d_real_logits: torch.Tensor, d_fake_logits: torch.Tensor) -> torch.Tensor:
    """Eq. 6: ``−[log D(x) + log(1 − D(x̂))]`` from logits (x̂ detached by the caller). Shape: (B,) each -> scalar."""
    real = F.binary_cross_entropy_with_logits(d_real_logits, torch.ones_like(d_real_logits))
    fake = F.binary_cross_entropy_with_logits(d_fake_logits, torch.zeros_like(d_fake_logits))
    return real + fake


def cam_attention(
    features: torch.Tensor,
    weight: torch.Tensor,
    z: torch.Tensor,
    size: tuple[int, int] | None = None,
    normalise: bool = True,
) -> torch.Tensor:
    """Differentiable CAM attention map, Eqs. 7–8: ``M̂ = Σ_{c∈F} |z_c| Σ_k w_k^c f_k``, upsampled bilinearly.

    Args:
        features: last-conv activations f_l (before GAP).
        weight: the GAP→z linear weight, (d_z, K) as stored by ``nn.Linear``.
        z: latent vector; the sum runs over the fake half F (units d_z/2 … d_z − 1).
        size: output (H, W); ``None`` keeps the feature resolution.
        normalise: min–max normalise each map to [0, 1].

    Shape:
        features (B, K, h, w), weight (d_z, K), z (B, d_z) -> (B, 1, H, W)
    """
    half = z.shape[1] // 2
    coeff = z[:, half:].abs() @ weight[half:]  # (B, K) = Σ_c |z_c| w_k^c
    cam = torch.einsum("bk,bkhw->bhw", coeff, features)[:, None]
    if size is not None and tuple(cam.shape[-2:]) != tuple(size):
        cam = F.interpolate(cam, size=size, mode="bilinear", align_corners=False)
    if normalise:
        lo = cam.amin(dim=(2, 3), keepdim=True)
        hi = cam.amax(dim=(2, 3), keepdim=True)
        cam = (cam - lo) / (hi - lo + 1e-6)
    return cam


def attention_loss(
    cam: torch.Tensor,
    mask: torch.Tensor,
    labels: torch.Tensor,
    valid: torch.Tensor | None = None,
    reduction: str = "valid",
) -> torch.Tensor:
    """Eq. 9 / 11: squared error between the attention map and the forgery mask over the fake images that have a
    mask (``valid``; Eq. 11 restricts it to the N_active actively selected fakes).

    Args:
        reduction: ``"valid"`` — mean over the selected fakes (and pixels); ``"batch"`` — their per-image means
            summed and divided by the batch size B, i.e. the batch's share of Eq. 11's sum on the scale of a
            batch-mean L_latent, as Eq. 12 adds the two sums (LAE's stage 2).

    Shape:
        cam (B, 1, H, W), mask (B, 1, H, W) or (B, H, W), labels (B,), valid (B,) bool or None -> scalar
    """
    if reduction not in ("valid", "batch"):
        raise ValueError(f"reduction must be 'valid' or 'batch', got {reduction!r}")
    if mask.dim() == 3:
        mask = mask[:, None]
    if mask.shape[-2:] != cam.shape[-2:]:
        mask = F.interpolate(mask.float(), size=cam.shape[-2:], mode="bilinear", align_corners=False)
    sel = labels == 1
    if valid is not None:
        sel = sel & valid.bool()
    if not sel.any():
        return cam.sum() * 0.0
    per_image = (cam[sel] - mask[sel].to(cam.dtype)).pow(2).flatten(1).mean(1)
    return per_image.mean() if reduction == "valid" else per_image.sum() / cam.shape[0]
