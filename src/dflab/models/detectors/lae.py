"""LAE — Locality-Aware AutoEncoder (Du, Pentyala, Li, Hu, CIKM 2020, "Towards Generalizable Deepfake Detection
with Locality-aware AutoEncoder", Sec. 2.2–2.4, Table 2, Eqs. 2–12).

Encoder (Table 2): four stride-2 convs 64→128→256→512 (BN from the second), a 512→512 conv at 16×16, GAP, a linear
to the 128-d latent z. Decoder: seven transposed convs from z (256×4×4 … 3×256×256, Tanh). Loss of stage 1
(Eq. 2): ``α1·L_rec + α2·L_latent`` with ``L_rec = β1·pixel + β2·perceptual + β3·adversarial`` (Eq. 5); a DCGAN
discriminator trained alongside (Eq. 6). Stage 2 (Sec. 2.4, Eq. 12): encoder only, ``λ1·L_latent + λ2·L_attention``
(latent over the training data, attention over the actively selected fakes' masks). Prediction: fake iff
a_F ≥ a_T (Eq. 3); ``logits = [a_T, a_F]``.

Deviations / choices:
* The decoder reconstructs the image mapped to [−1, 1] (its Tanh range) from the ImageNet-normalised input.
* Gaussian noise (Sec. 3.1.4): σ ~ U[0, 5] grey levels (of 255) per batch, added in ``forward`` in training mode
  only; the reconstruction target is the clean image.
* Discriminator update without a second optimiser: ``compute_loss`` returns ``loss = L_AE + L_D`` where the
  adversarial term of L_AE evaluates D with *detached* parameters (``torch.func.functional_call``) and L_D sees a
  detached x̂, so one backward gives the autoencoder exactly ∂L_AE and the discriminator exactly ∂L_D. Any plain
  training loop (one optimiser, Adam in the paper for both) then trains both as in Eq. 6.
* Comparator C: VGG16's first ten convs (``features[:23]``, after the ReLU of conv4_3), frozen. Sec. 3.1.3 gives
  its output as [512, 28, 28], i.e. a 224 px input, while the crop is 256 px (Table 2): x and x̂ are resized
  (bilinear, antialiased) to ``round(comparator_scale·S)`` with ``comparator_scale = 224/256`` before C, so C sees
  what the paper's did (28×28 features at 256 px). ``comparator_scale=1`` compares at the crop's own size.
  The paper's perceptual loss needs its ImageNet weights: ``comparator_weights`` is a weights spec the *trainer*
  loads (:meth:`LAE.pretrained_parts`): ``timm:vgg16.tv_in1k`` (torchvision's VGG16 through timm: the hub when
  online, else timm's cache; the ``lae`` recipe) or a local file with torchvision-style ``features.N.*`` keys.
  Unset, training stops with a message naming both ways; ``"none"`` is the explicit opt-out to a random frozen
  comparator (a random-feature perceptual loss, not the paper's; the tiny recipe does this at
  ``comparator_width=0.125``). The constructor never fetches anything: a checkpoint rebuilds without network and its
  safetensors carry the comparator's tensors.
* Widths scale with ``width`` (1.0 = Table 2) and the number of up/down-sampling layers follows ``input_size``.
* Table 2 gives layer types and output shapes, not kernels: the stride-2 convs and transposed convs are DCGAN's
  4×4 / stride 2 / padding 1 (the decoder's first, z → 4×4, a 4×4 transposed conv on the 1×1 latent), the 512→512
  conv at 16×16 a 3×3 / padding 1. The DCGAN discriminator (Sec. 2.2, [28]) is defined for 64 px; at 256 px it
  keeps DCGAN's pattern (stride-2 4×4 convs, BN from the second, LeakyReLU 0.2, channels doubling from 64, capped at
  512) down to 4×4, then a 4×4 conv to one logit.
* λ1 = 0.5, λ2 = 1.0 (Eq. 12): Sec. 3.1.4 prints "λ1=0.5, λ1=1.0"; the second is λ2, as Table 6's best row
  (λ1 = 0.5, λ2 = 1.0: 96.80 / 68.06, the LAE_800 numbers of Table 3) shows.
* Early stopping (Sec. 3.1.2, for all compared models: "a maximum of 40 epochs with early stopping (patience=10).
  Validation loss is used as criteria for early stopping"; Algorithm 1 and Sec. 3.1.4 say nothing of it): read as
  stage 1's rule, since stage 2's length is given apart (Sec. 3.1.4: 4 epochs for 100 active images). The ``lae``
  schedule's ``stage1_patience`` ends stage 1 on the validation loss, which is LAE's own Eq. 2
  (:meth:`LAE.validation_loss`), not the engine's default cross-entropy of ``[a_T, a_F]``.
* Stage 2's data (Algorithm 1, lines 9–13) — two readings, selectable in the ``lae`` schedule
  (``dflab.train.schedules.lae``). **Default**: stage 2 reads the training data D exactly as stage 1 does (epochs
  of one pass over D); L_latent runs over every item, L_attention over the N_active fakes whose masks were requested
  (``batch["mask_valid"]``), each annotated fake weighted λ2 against each item's λ1 as in Eq. 12 — the literal
  reading of Algorithm 1, hence the default. **Mixed**: every stage-2 batch carries a fixed share of the annotated
  fakes (``stage2_stream`` = a ``data.mixes`` entry with ``active_stream``), for when the sparse literal attention
  term under-trains; the paper does not say how its batches were formed.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from dflab.losses.lae import (
    attention_loss,
    cam_attention,
    discriminator_loss,
    generator_adv_loss,
    latent_logits,
    latent_loss,
    perceptual_loss,
    pixel_loss,
)
from dflab.models.base import Detector, InputSpec, register_detector, register_variant

#: Logged loss parts, in order (NaN when not computed in a stage): Eq. 4, Eq. 9/11, the three terms of Eq. 5,
#: Eq. 6, and the autoencoder's total (Eq. 2, + attention when used).
LOSS_PARTS = ("latent", "attention", "pixel", "perceptual", "adversarial", "disc", "ae")
#: VGG16 configuration "D" up to conv4_3 (the 10th conv); "M" = max-pool.
_VGG16_TO_CONV10 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512)


def _ch(c: int, width: float) -> int:
    return max(4, round(c * width))


class Encoder(nn.Module):
    """Table 2 encoder.

    Shape:
        (B, 3, S, S) -> features (B, 512·width, S/16, S/16), pooled (B, 512·width), z (B, latent)
    """

    def __init__(self, width: float = 1.0, latent: int = 128) -> None:
        super().__init__()
        c1, c2, c3, c4 = (_ch(c, width) for c in (64, 128, 256, 512))
        self.convs = nn.Sequential(
            nn.Conv2d(3, c1, 4, 2, 1), nn.ReLU(inplace=True),
            nn.Conv2d(c1, c2, 4, 2, 1, bias=False), nn.BatchNorm2d(c2), nn.ReLU(inplace=True),
            nn.Conv2d(c2, c3, 4, 2, 1, bias=False), nn.BatchNorm2d(c3), nn.ReLU(inplace=True),
            nn.Conv2d(c3, c4, 4, 2, 1, bias=False), nn.BatchNorm2d(c4), nn.ReLU(inplace=True),
            nn.Conv2d(c4, c4, 3, 1, 1), nn.ReLU(inplace=True),
        )  # fmt: skip
        self.fc = nn.Linear(c4, latent)
        self.channels = c4

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        feat = self.convs(x)
        pooled = feat.mean(dim=(2, 3))  # GAP: the 512 channel activations u_i of Sec. 2.4
        return feat, pooled, self.fc(pooled)


class Decoder(nn.Module):
    """Table 2 decoder: z → 4×4 → … → S×S, channels halving from 256. Shape: (B, latent) -> (B, 3, S, S) in [−1, 1]."""

    def __init__(self, size: int = 256, width: float = 1.0, latent: int = 128) -> None:
        super().__init__()
        n_up = int(math.log2(size // 4))
        if 4 * 2**n_up != size:
            raise ValueError(f"LAE input size must be 4·2^n, got {size}")
        c = _ch(256, width)
        layers: list[nn.Module] = [nn.ConvTranspose2d(latent, c, 4, 1, 0, bias=False), nn.BatchNorm2d(c), nn.ReLU(True)]
        for i in range(n_up):
            last = i == n_up - 1
            out = 3 if last else max(4, c // 2)
            layers.append(nn.ConvTranspose2d(c, out, 4, 2, 1, bias=last))
            layers += [nn.Tanh()] if last else [nn.BatchNorm2d(out), nn.ReLU(True)]
            c = out
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z[:, :, None, None])


class Discriminator(nn.Module):
    """DCGAN discriminator (Radford et al.), stride-2 convs down to 4×4 then a 4×4 conv to one logit.

    Shape: (B, 3, S, S) in [−1, 1] -> (B,) logits
    """

    def __init__(self, size: int = 256, width: float = 1.0) -> None:
        super().__init__()
        n_down = int(math.log2(size // 4))
        layers: list[nn.Module] = []
        c_in, c = 3, _ch(64, width)
        for i in range(n_down):
            layers.append(nn.Conv2d(c_in, c, 4, 2, 1, bias=i == 0))
            if i > 0:
                layers.append(nn.BatchNorm2d(c))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            c_in, c = c, min(c * 2, _ch(512, width))
        layers.append(nn.Conv2d(c_in, 1, 4, 1, 0))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten()


class Comparator(nn.Module):
    """VGG16 up to the ReLU after its 10th conv (conv4_3), frozen. Keys match torchvision's ``features.N``.

    Shape: (B, 3, H, W) ImageNet-normalised -> (B, 512·width, H/8, W/8)
    """

    def __init__(self, width: float = 1.0, weights: str | None = None) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3
        for v in _VGG16_TO_CONV10:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                c = _ch(int(v), width)
                layers += [nn.Conv2d(c_in, c, 3, padding=1), nn.ReLU(inplace=True)]
                c_in = c
        self.features = nn.Sequential(*layers)
        for m in self.features.modules():
            if isinstance(m, nn.Conv2d):  # torchvision's VGG init: keeps random features at a usable scale
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
        self.weights_loaded = False  # True once ImageNet weights were loaded (never the case for a random C)
        if weights:
            self.load_weights(weights)
        self.requires_grad_(False)
        self.eval()

    def load_weights(self, spec: str) -> None:
        """Load ImageNet VGG16 weights from a spec (``timm:vgg16.tv_in1k`` or a local file; see
        :func:`dflab.models.backbones.resolve_pretrained`)."""
        from dflab.models.backbones import resolve_pretrained

        self.load_state(resolve_pretrained(spec), source=spec)

    def load_state(self, state: dict[str, torch.Tensor], source: str = "weights") -> dict[str, list[str]]:
        """Load VGG16 tensors (torchvision/timm ``features.N`` names); keys beyond conv4_3 and the classifier are
        dropped, a missing or mis-shaped conv fails. Returns a ``load_pretrained``-style report."""
        own = self.state_dict()
        sub = {k: v for k, v in state.items() if k in own}
        missing = sorted(set(own) - set(sub))
        if missing:
            raise KeyError(f"VGG16 weights {source} lack {missing}")
        bad = [k for k in sub if tuple(sub[k].shape) != tuple(own[k].shape)]
        if bad:
            raise KeyError(f"VGG16 weights {source} do not fit the comparator (width?): {bad[:4]}")
        self.load_state_dict(sub)
        self.weights_loaded = True
        return {"missing": [], "unexpected": sorted(set(state) - set(sub)), "loaded": sorted(sub)}

    def train(self, mode: bool = True) -> Comparator:
        return super().train(False)  # frozen: BN-free, but keep it out of training mode anyway

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


@register_detector(
    "lae",
    tiny={
        "input_size": 64, "width": 0.125, "latent": 16, "comparator_width": 0.125, "disc_width": 0.125,
        "comparator_weights": "none",  # no width-1/8 ImageNet VGG16 exists: a random frozen C, said explicitly
    },
)  # fmt: skip
class LAE(Detector):
    """Locality-aware autoencoder.

    Args:
        input_size: crop size S (paper: 256).
        width: channel multiplier of encoder/decoder (1.0 = Table 2).
        latent: d_z (paper: 128).
        alpha1: α1, weight of L_rec in stage 1 (Eq. 2; paper 1.0).
        alpha2: α2, weight of L_latent in stage 1 (Eq. 2; paper 1.0).
        beta1: β1, weight of the pixel term of L_rec (Eq. 5; paper 1.0).
        beta2: β2, weight of the perceptual term (Eq. 5; paper 1.0); 0 drops the comparator.
        beta3: β3, weight of the adversarial term (Eq. 5; paper 0.01); 0 drops the discriminator.
        lambda1: λ1, weight of L_latent in stage 2 (Eq. 12; paper 0.5).
        lambda2: λ2, weight of L_attention in stage 2 (Eq. 12; paper 1.0, see the module docstring).
        noise_sigma: maximum σ (grey levels of 255) of the training-time Gaussian input noise (Sec. 3.1.4: 5).
        comparator_weights: VGG16 ImageNet weights spec the trainer loads (``timm:vgg16.tv_in1k`` or a local
            file), or ``"none"`` for a random frozen comparator (see module docstring). Never loaded here.
        comparator_width: channel multiplier of the comparator C.
        disc_width: channel multiplier of the discriminator D.
        comparator_scale: side of C's input as a fraction of the crop's (224/256: Sec. 3.1.3's [512, 28, 28]).
        attention_in_stage1: also apply Eq. 9 in stage 1 on fakes that carry masks (off in the paper's LAE,
            which uses Eq. 11 on the active set in stage 2).
    """

    targets = frozenset({"mask"})
    validation_loss_name = "lae: stage-1 loss, Eq. 2 (alpha1*L_rec + alpha2*L_latent)"

    def __init__(
        self,
        input_size: int = 256,
        width: float = 1.0,
        latent: int = 128,
        alpha1: float = 1.0,
        alpha2: float = 1.0,
        beta1: float = 1.0,
        beta2: float = 1.0,
        beta3: float = 0.01,
        lambda1: float = 0.5,
        lambda2: float = 1.0,
        noise_sigma: float = 5.0,
        comparator_weights: str | None = None,
        comparator_width: float = 1.0,
        disc_width: float = 1.0,
        attention_in_stage1: bool = False,
        comparator_scale: float = 224 / 256,
    ) -> None:
        super().__init__(InputSpec(size=input_size))
        self.alpha1, self.alpha2 = alpha1, alpha2
        self.beta1, self.beta2, self.beta3 = beta1, beta2, beta3
        self.lambda1, self.lambda2 = lambda1, lambda2
        self.noise_sigma, self.attention_in_stage1 = noise_sigma, attention_in_stage1
        self.encoder = Encoder(width, latent)
        self.decoder = Decoder(input_size, width, latent)
        self.discriminator = Discriminator(input_size, disc_width) if beta3 > 0 else None
        self.comparator_weights = comparator_weights
        self.comparator = Comparator(comparator_width) if beta2 > 0 else None
        if not 0 < comparator_scale <= 4:
            raise ValueError(f"comparator_scale must be in (0, 4], got {comparator_scale}")
        self.comparator_input_size = max(8, round(input_size * comparator_scale))  # 224 at the paper's 256
        self.register_buffer("mean", torch.tensor(self.input_spec.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(self.input_spec.std).view(1, 3, 1, 1), persistent=False)

    # -- image space helpers -------------------------------------------------------------------------------------
    def to_tanh(self, x: torch.Tensor) -> torch.Tensor:
        """ImageNet-normalised → [−1, 1] (the decoder's range)."""
        return (x * self.std + self.mean) * 2.0 - 1.0

    def from_tanh(self, y: torch.Tensor) -> torch.Tensor:
        """[−1, 1] → ImageNet-normalised (the comparator's input)."""
        return ((y + 1.0) / 2.0 - self.mean) / self.std

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Shape: images (B, 3, S, S) -> z (B, d_z), logits (B, 2) = [a_T, a_F], recon (B, 3, S, S) in [−1, 1],
        cam (B, 1, S, S) in [0, 1], features (B, 512, S/16, S/16), pooled (B, 512)."""
        size = self.input_spec.size
        if tuple(images.shape[-2:]) != (size, size):
            raise ValueError(
                f"LAE expects (B, 3, {size}, {size}) images (its decoder's output), got {tuple(images.shape)}"
            )
        x = images
        if self.training and self.noise_sigma > 0:
            sigma = float(torch.rand(())) * self.noise_sigma / 255.0  # one σ per batch (Sec. 3.1.4)
            x = x + torch.randn_like(x) * sigma / self.std
        feat, pooled, z = self.encoder(x)
        cam = cam_attention(feat, self.encoder.fc.weight, z, size=tuple(images.shape[-2:]))
        return {
            "logits": latent_logits(z),
            "z": z,
            "recon": self.decoder(z),
            "cam": cam,
            "features": feat,
            "pooled": pooled,
        }

    def score(self, outputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """P(fake) = softmax over [a_T, a_F] scaled by 10 (monotone in a_F − a_T, so 0.5 is the paper's decision)."""
        return (outputs["logits"].float() * 10.0).softmax(dim=1)[:, 1]

    def explain_maps(self, outputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"cam": outputs["cam"]}

    def pretrained_parts(self) -> dict[str, tuple[str, str | None]]:
        """The perceptual comparator's ImageNet VGG16 (Eq. 5): required whenever it is used (β2 > 0)."""
        return {"comparator.": ("comparator_weights", self.comparator_weights)} if self.comparator is not None else {}

    def load_pretrained_part(self, prefix: str, state_dict: dict[str, torch.Tensor]) -> dict[str, list[str]]:
        if prefix != "comparator." or self.comparator is None:
            return super().load_pretrained_part(prefix, state_dict)
        return self.comparator.load_state(state_dict, source="comparator_weights")

    def _comparator_input(self, x: torch.Tensor) -> torch.Tensor:
        """Resize an ImageNet-normalised image to C's input side (Sec. 3.1.3; see the module docstring)."""
        size = self.comparator_input_size
        if tuple(x.shape[-2:]) == (size, size):
            return x
        return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)

    @staticmethod
    def _frozen(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """``module(x)`` with detached parameters: gradients reach ``x`` but never ``module``'s parameters, whatever
        their ``requires_grad`` (a loop that sets every parameter trainable cannot train C or, through L_AE, D)."""
        params = {k: v.detach() for k, v in module.named_parameters()}
        return functional_call(module, params, (x,), strict=False)

    def validation_loss(self, batch: dict[str, Any], outputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """The stage-1 autoencoder loss (Eq. 2, ``α1·L_rec + α2·L_latent``) on a validation batch: the "validation
        loss" whose plateau ends stage 1 (Sec. 3.1.2; ``dflab.train.schedules.lae``). Reported in both stages."""
        return self.compute_loss(batch, outputs, stage="stage1")["ae"]

    def compute_loss(self, batch: dict[str, Any], outputs: dict[str, torch.Tensor], **phase: Any) -> dict[str, Any]:
        """``stage="stage1"`` (default): Eq. 2 + Eq. 6; ``stage="stage2"``: Eq. 12 — L_latent over every item of the
        batch (the training data) plus L_attention over the fakes whose mask is an annotation: ``batch["mask_valid"]``
        (B,) bool, set by the data layer for the N_active annotated fakes (see ``dflab.train.schedules.lae``), else
        every fake with a non-empty mask. Both sums are divided by the batch size (``attention_loss(...,
        reduction="batch")``), so each annotated fake weighs λ2 against each item's λ1, as in Eq. 12.

        The logged parts are always the same keys in the same order (:data:`LOSS_PARTS`); a term not computed in
        this stage/configuration is NaN (the loss log is one CSV table).
        """
        stage = str(phase.get("stage", "stage1"))
        if stage not in ("stage1", "stage2"):
            raise ValueError(f"unknown LAE stage {stage!r}; expected 'stage1' or 'stage2'")
        label = batch["label"].long()
        z = outputs["z"]
        nan = torch.tensor(float("nan"), device=z.device)
        parts: dict[str, Any] = dict.fromkeys(LOSS_PARTS, nan)
        lat = latent_loss(z.float(), label)
        parts["latent"] = lat.detach()
        att = None
        if "mask" in batch and (stage == "stage2" or self.attention_in_stage1):
            mask = batch["mask"]
            valid = batch.get("mask_valid")
            if valid is None:
                valid = mask.flatten(1).amax(1) > 0
            att = attention_loss(outputs["cam"].float(), mask, label, valid, reduction="batch")
            parts["attention"] = att.detach()
        if stage == "stage2":
            loss = self.lambda1 * lat + self.lambda2 * (att if att is not None else 0.0)
            return {"loss": loss, **parts}
        target = self.to_tanh(batch["image"]).float()
        recon = outputs["recon"].float()
        rec = torch.zeros((), device=z.device)
        if self.beta1 > 0:
            pix = pixel_loss(target, recon)
            rec = rec + self.beta1 * pix
            parts["pixel"] = pix.detach()
        if self.comparator is not None:
            with torch.no_grad():
                feat_x = self.comparator(self._comparator_input(batch["image"].float()))
            per = perceptual_loss(feat_x, self._frozen(self.comparator, self._comparator_input(self.from_tanh(recon))))
            rec = rec + self.beta2 * per
            parts["perceptual"] = per.detach()
        loss_d = None
        if self.discriminator is not None:
            adv = generator_adv_loss(self._frozen(self.discriminator, recon))
            rec = rec + self.beta3 * adv
            loss_d = discriminator_loss(self.discriminator(target), self.discriminator(recon.detach()))
            parts.update(adversarial=adv.detach(), disc=loss_d.detach())
        loss = self.alpha1 * rec + self.alpha2 * lat
        if att is not None:
            loss = loss + self.lambda2 * att
        parts["ae"] = loss.detach()
        if loss_d is not None:
            loss = loss + loss_d  # only the discriminator's parameters receive this gradient (see module docstring)
        return {"loss": loss, **parts}


# Table 4 ablations (no attention loss / active learning in any of them; the schedule's ``active=False``).
register_variant("lae_ae_rec", "lae", alpha2=0.0)
register_variant("lae_ae_latent", "lae", alpha1=0.0, beta2=0.0, beta3=0.0)
register_variant("lae_ae_latent_pixel", "lae", beta2=0.0, beta3=0.0)
register_variant("lae_ae_latent_rec", "lae")
