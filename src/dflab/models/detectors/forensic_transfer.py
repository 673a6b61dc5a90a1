"""ForensicTransfer (Cozzolino, Thies, Rössler, Riess, Nießner, Verdoliva, "ForensicTransfer: Weakly-supervised
Domain Adaptation for Forgery Detection", arXiv:1812.02510, §3), a baseline of LAE Table 3 (LAE §3.1.2, ref [8]).

Architecture (FT §3, as summarised by LAE §3.1.2): an encoder of 5 convolutions and a decoder of 5 convolutions;
the decoder upsamples 2×2 (nearest neighbour) before each of its convolutions except the last. The latent h (the
encoder's output) has 128 feature maps: the first 64 (h_0) belong to the real class, the last 64 (h_1) to the fake
class.

* Activation of a class (FT §3, "activation loss"): ``a_c(x) = ||h_c(x)||_1 / K_c`` with K_c the number of elements
  of h_c; loss ``L_act = |a_1 − y| + |a_0 − (1 − y)|`` (y = 1 for a fake), so the half of the true class is pushed
  to 1 and the other half to 0. Averaged over the batch. It is exactly LAE's Eq. 4 (LAE took it from FT), computed
  here by :func:`dflab.losses.lae.latent_loss` on the flattened latent (channel-major, so the first half of the
  flattened vector is h_0).
* Selection block (FT §3): before decoding, the half of the *other* class is set to zero: in training by the label,
  at evaluation by the predicted class; the decoder reconstructs from the selected half only.
* Reconstruction loss: L1 between x and x̂ (mean over pixels); total ``L = γ·L_act + L_rec`` with γ = 1
  (FT §3 weights the two terms equally).
* Early stopping and the best checkpoint (LAE §3.1.2, for every compared model: "We train the models for a maximum
  of 40 epochs with early stopping (patience=10). Validation loss is used as criteria for early stopping."): the
  ``forensic_transfer`` recipe watches the validation loss (``select_metric: -loss``, patience 10, 40 epochs), and
  that loss is FT's own ``γ·L_act + L_rec`` (:meth:`ForensicTransfer.validation_loss`, the reconstruction decoded
  from the true class's half as in training), not the engine's default cross-entropy of the logits.
* Decision (FT §3): the class of the more active half, fake iff a_1 > a_0. ``logits = [a_0, a_1]``, so
  ``softmax(logits)[:, 1] = sigmoid(a_1 − a_0)`` is P(fake): monotone in the margin of the decision and ≥ 0.5 exactly
  when the paper calls the image fake (``logit_scale`` multiplies both, a temperature; 1 = the raw activations).

Source check (2026-11-30). Checked against LAE's full text: §3.1.2 (5 convs per sub-network, 2×2 nearest-neighbour
upsampling before each decoder conv except the last, 128 latent maps split 64 real / 64 fake, lr 1e-3, batch 64,
the version not fine-tuned on unseen data, 40 epochs at most, early stopping with patience 10 on the validation
loss) and Eqs. 3-4 (``a = (2/d_z)·||z_half||_1``; ``Σ_i |a_T − l_i| + |a_F − (1 − l_i)|`` with l = 1 for a real
image; decision "true if a_T > a_F"), which LAE attributes to FT (ref [8]) — all as here (the batch mean instead
of LAE's sum only rescales the loss). FT's own text is stored only as its opening (arxiv-vanity.com/papers/
1812.02510, dokumen.tips copy of arXiv v2, niessnerlab.org project page): its abstract and Fig. 1 caption confirm
the autoencoder, that "only specific components of the hidden vector are activated for the pristine and forged
classes", and, on the project page, "the constraint of correct reconstruction". **Not checked against FT's text;
source: our reading written offline**: FT §3 as the section number, γ = 1, the L1 reconstruction, Adam, the
selection block at evaluation, and every value in the list below.

Choices where the papers are silent (or where the text could not be read offline; see docs/papers/
baseline_forensic_transfer.md):
* Kernels 3×3, padding 1; the first four encoder convs have stride 2 and the fifth stride 1, so a 256 px crop gives
  a 128×16×16 latent and the decoder's four 2×2 upsamplings return to 256 px. Encoder widths 16, 32, 64, 128, 128;
  decoder 64, 32, 16, 16, 3 (mirrored). BatchNorm + ReLU after every conv but the decoder's last (Tanh); the
  latent's ReLU makes h ≥ 0, so ||h_c||_1 is its sum.
* Input in [−1, 1] (mean = std = 0.5), the decoder's Tanh range, so x̂ is compared with the input itself.
* LAE §3.1.2: lr 1e-3, batch 64, the version *not* fine-tuned on the unseen data (no few-shot adaptation here);
  Adam as in FT's training (recipe ``forensic_transfer``).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dflab.losses.lae import latent_activations, latent_loss, pixel_loss
from dflab.models.base import Detector, InputSpec, register_detector


def _conv_bn_relu(c_in: int, c_out: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]


class FTEncoder(nn.Module):
    """Five 3×3 convs, the first four with stride 2.

    Shape:
        (B, 3, S, S) -> (B, 2·half, S/16, S/16), ≥ 0
    """

    def __init__(self, widths: tuple[int, int, int, int, int] = (16, 32, 64, 128, 128)) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3
        for i, c in enumerate(widths):
            layers += _conv_bn_relu(c_in, c, stride=2 if i < 4 else 1)
            c_in = c
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class FTDecoder(nn.Module):
    """Five 3×3 convs; a 2×2 nearest-neighbour upsampling before each but the last; Tanh output.

    Shape:
        (B, latent, s, s) -> (B, 3, 16·s, 16·s) in [−1, 1]
    """

    def __init__(self, latent: int = 128, widths: tuple[int, int, int, int] = (64, 32, 16, 16)) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = latent
        for c in widths:
            layers += [nn.Upsample(scale_factor=2, mode="nearest"), *_conv_bn_relu(c_in, c)]
            c_in = c
        layers += [nn.Conv2d(c_in, 3, 3, 1, 1), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.net(h)


def select_half(h: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """FT's selection block: zero the latent half of the class *not* selected (``fake`` (B,) bool/0-1).

    Shape:
        h (B, 2·half, s, s), fake (B,) -> (B, 2·half, s, s)
    """
    half = h.shape[1] // 2
    keep_fake = fake.to(h.dtype).view(-1, 1, 1, 1)
    mask = torch.cat([(1 - keep_fake).expand(-1, half, 1, 1), keep_fake.expand(-1, half, 1, 1)], dim=1)
    return h * mask


@register_detector("forensic_transfer", tiny={"size": 64, "enc_widths": (4, 8, 8, 16, 16), "dec_widths": (8, 8, 4, 4)})
class ForensicTransfer(Detector):
    """ForensicTransfer autoencoder detector.

    Args:
        size: input size (LAE's crops: 256).
        enc_widths: channels of the five encoder convs; the last is the latent's (128: 64 real + 64 fake).
        dec_widths: channels of the decoder's first four convs (the fifth outputs RGB).
        gamma: γ, weight of the activation loss against the reconstruction loss (FT: 1).
        logit_scale: temperature of ``logits = logit_scale·[a_0, a_1]`` (does not change the decision).
        margin: input contract (face box margin).
        align: input contract.

    Shape:
        images (B, 3, S, S) in [−1, 1] -> {"logits": (B, 2), "latent": (B, 128, S/16, S/16),
        "activations": (B, 2) = [a_0, a_1], "reconstruction": (B, 3, S, S)}
    """

    validation_loss_name = "forensic_transfer: gamma*L_act + L_rec"

    def __init__(
        self,
        size: int = 256,
        enc_widths: tuple[int, int, int, int, int] = (16, 32, 64, 128, 128),
        dec_widths: tuple[int, int, int, int] = (64, 32, 16, 16),
        gamma: float = 1.0,
        logit_scale: float = 1.0,
        margin: float = 1.3,
        align: str = "box",
    ) -> None:
        super().__init__(InputSpec(size=size, margin=margin, align=align, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)))
        if len(enc_widths) != 5 or len(dec_widths) != 4:
            raise ValueError(f"ForensicTransfer has 5 encoder and 4+1 decoder convs, got {enc_widths}, {dec_widths}")
        if enc_widths[-1] % 2:
            raise ValueError(f"the latent splits into a real and a fake half: even width needed, got {enc_widths[-1]}")
        if size % 16:
            raise ValueError(f"input size must be a multiple of 16 (four stride-2 convs), got {size}")
        self.gamma = gamma
        self.logit_scale = logit_scale
        self.encoder = FTEncoder(tuple(enc_widths))
        self.decoder = FTDecoder(enc_widths[-1], tuple(dec_widths))

    def activations(self, h: torch.Tensor) -> torch.Tensor:
        """``[a_0, a_1]``: mean |h_c| of the real half (channels :half) and the fake half. Shape: (B, C, s, s) ->
        (B, 2)."""
        return torch.stack(latent_activations(h.flatten(1)), dim=1)

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Encode, classify by the more active half, decode from the selected half.

        ``labels`` (B,) selects the half to decode (the training selection block); without it (or in eval mode)
        the predicted class does.
        """
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images of shape (B, 3, H, W), got {tuple(images.shape)}")
        h = self.encoder(images)
        act = self.activations(h)
        fake = labels.bool() if (labels is not None and self.training) else act[:, 1] > act[:, 0]
        rec = self.decoder(select_half(h, fake))
        return {"logits": self.logit_scale * act, "activations": act, "latent": h, "reconstruction": rec}

    def compute_loss(self, batch: dict[str, Any], outputs: dict[str, torch.Tensor], **phase: Any) -> dict[str, Any]:
        """``γ·L_act + L_rec`` (FT §3). The engine's forward has no labels, so the training selection block (decode
        the half of the true class) is applied here by decoding the latent again when the selection differs."""
        return self._loss(batch, outputs, by_label=self.training)

    def validation_loss(self, batch: dict[str, Any], outputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """FT's own loss ``γ·L_act + L_rec`` on a validation batch (LAE §3.1.2: "Validation loss is used as criteria
        for early stopping"), not the engine's default cross-entropy. The reconstruction is decoded from the half of
        the true class, as in training, so the validation loss is the training objective on held-out data."""
        return self._loss(batch, outputs, by_label=True)["loss"]

    def _loss(self, batch: dict[str, Any], outputs: dict[str, torch.Tensor], *, by_label: bool) -> dict[str, Any]:
        """The loss and its parts; ``by_label``: score the reconstruction from the label's half (re-decoding where
        the forward selected the predicted half and the prediction is wrong), else the forward's own."""
        label = batch["label"]
        h = outputs["latent"]
        rec = outputs["reconstruction"]
        predicted = outputs["activations"][:, 1] > outputs["activations"][:, 0]
        if by_label and bool((predicted != label.bool()).any()):
            rec = self.decoder(select_half(h, label.bool()))
        target = batch["image"].to(rec.dtype)
        if target.shape[-2:] != rec.shape[-2:]:
            target = F.interpolate(target, size=rec.shape[-2:], mode="bilinear", align_corners=False)
        act = latent_loss(h.flatten(1).float(), label)  # first half -> 1 − y (real), second half -> y (fake)
        rec_l = pixel_loss(target.float(), rec.float())
        return {"loss": self.gamma * act + rec_l, "act": act.detach(), "rec": rec_l.detach()}
