"""SPSL: Spatial-Phase Shallow Learning (Liu, Li, Zhou, Chen, He, Xue, Zhang, Yu, "Spatial-Phase Shallow Learning:
Rethinking Face Forgery Detection in Frequency Domain", CVPR 2021, pp. 772–781; "SPSL [53]" in LiSiam Tables I–II).

The method, as the paper describes it:

* **Phase spectrum**: up-sampling, a step of every face-swap pipeline, shows more in the *phase* spectrum than in
  the amplitude. The phase-only image (:func:`phase_only_image`) keeps it and drops the amplitude: 2-D DFT of the
  face → keep the phase ``φ`` → set the amplitude to a constant → inverse DFT → real part.
* **Spatial-phase input**: the phase-only image is concatenated to the RGB image as a 4th input channel
  (``[R, G, B, phase]``), so the network sees the spatial image and its phase image pixel-aligned.
* **Shallow learning**: the artefacts are local textures, so the receptive field is kept small: an Xception with
  its middle flow removed (:class:`~dflab.models.xception.XceptionTrunk` with ``middle_blocks=0``: stem, entry
  blocks 1–3, exit block 12, conv3/conv4 — 4 of Xception's 12 residual blocks), trained with cross-entropy on two
  logits.

Sources: the paper's method as summarised above (its full text with section and equation numbers could not be read
offline here, so nothing is cited by number), and DeepfakeBench's re-implementation (``training/detectors/
spsl_detector.py``, ``training/networks/xception.py`` mode ``shallow_xception``, ``training/config/detector/
spsl.yaml``), read for the exact computation; no code was taken from it.

Source check (2026-11-30). The paper is stored only as its abstract (arxiv.org/abs/2103.01856v2,
paperswithcode.com/paper/spatial-phase-shallow-learning-rethinking, tomesphere.com/paper/2103.01856), which
confirms the three points above: up-sampling shows "especially in the phase spectrum"; SPSL "combines spatial image
and phase spectrum"; "we reduce the receptive fields by shallowing the network". **Not checked against the paper
text**: how the phase image is formed (grey image, unit amplitude), that it is a 4th input channel, the depth of the
shallow network, the backbone being Xception, and every training value. No official code exists; DeepfakeBench was
re-read (``spsl_detector.py``: phase of ``torch.mean`` over the colour channels via ``fftn``/``ifftn``, conv1's
RGB mean repeated on all four channels, "we have opted not to utilize the shallow Xception architecture";
``spsl.yaml``: 256 px, mean/std 0.5, Adam 2e-4 (0.9, 0.999) weight decay 5e-4, batch 32, 10 epochs, no scheduler,
cross-entropy) and agrees with what is said of it here. LiSiam (Tables I-III) quotes SPSL's numbers and says
nothing of its training, so the recipe has no LiSiam setting to follow.

Choices where the paper is silent (or could not be checked here), and differences from DeepfakeBench:

* **Which channels**: the phase is taken of the *grey* image, the mean of the three (normalised) colour channels,
  as DeepfakeBench does; one phase channel, appended after RGB. Normalisation (mean = std = 0.5) only scales the
  grey image and shifts its DC term, so the phase image is the same as that of the raw image except possibly at
  the DC bin.
* **Per image**: the DFT runs over (H, W) of each image. DeepfakeBench calls ``torch.fft.fftn`` without ``dim``,
  which also transforms across the batch and channel axes, so one face's "phase image" depends on the other
  faces of its batch; we do not reproduce that.
* **The constant amplitude** is 1 with orthonormal transforms (``ifft2(exp(iφ), norm="ortho")``): the phase-only
  image then has unit RMS by Parseval, the scale of the normalised RGB channels, at every input size. DeepfakeBench
  uses amplitude 1 with the unnormalised inverse, which gives a channel ~1/√N as large (N = pixels × batch).
  Frequencies of zero magnitude get phase 0 (``angle(0)``). The channel is a fixed transform of the input: no
  gradient flows back to the image through the FFT.
* **Shallow configuration**: ``middle_blocks=0`` (DeepfakeBench's ``shallow_xception``: blocks 4–11 skipped);
  ``middle_blocks`` from 0 to 8 keeps that many middle blocks (8 = full Xception, DeepfakeBench's benchmark
  setting). Parameter names follow timm's ``legacy_xception``, so its ImageNet weights load by name; the exit
  block keeps the name ``block12`` whatever the depth.
* **Initialisation**: ImageNet Xception (``timm:legacy_xception.tf_in1k``), loaded by the trainer through
  :meth:`SPSL.pretrained_parts` (``model.kwargs.backbone_pretrained``: ``timm:…``, a local file in timm's key
  layout, or ``"none"``; unset, the run stops and names the ways out). The 4-channel ``conv1`` keeps the RGB
  filters for R, G, B and gets their mean over the colour channels for the phase channel (a filter that responds
  to the phase image as the RGB filters respond to a grey image); DeepfakeBench instead puts that mean on all four
  channels, dropping the colour filters. Skipped middle blocks and the ImageNet ``fc`` are dropped from the file
  and listed in the run log.
* **Head and input**: global average pool → dropout (0: DeepfakeBench uses none) → linear(2); 256 px,
  mean = std = 0.5 (the statistics of the Xception weights; DeepfakeBench's resolution). Optimiser and schedule:
  the ``spsl`` recipe.
* The tiny variant keeps the layout (stem, three entry blocks, exit block, conv3/conv4) at narrow widths.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from dflab.losses import classification_loss
from dflab.models.base import Detector, InputSpec, register_detector
from dflab.models.xception import XCEPTION_WIDTHS, XceptionTrunk


def phase_only_image(images: torch.Tensor) -> torch.Tensor:
    """The phase-only image of each image's grey version: ``real(ifft2(exp(i·angle(fft2(grey))), norm="ortho"))``.

    The amplitude spectrum is replaced by the constant 1 (orthonormal inverse: unit RMS output), so two images
    whose spectra differ only in amplitude give the same result. Computed in float32 without gradient.

    Args:
        images: (B, C, H, W); grey = mean over C.

    Returns:
        (B, 1, H, W) in the dtype of ``images``.
    """
    with torch.no_grad():
        grey = images.detach().float().mean(dim=1, keepdim=True)
        phase = torch.angle(torch.fft.fft2(grey))  # 2-D DFT over (H, W) of each image
        unit = torch.polar(torch.ones_like(phase), phase)
        # the spectrum of a real image is Hermitian, and so is exp(iφ): the inverse is real up to rounding
        return torch.fft.ifft2(unit, norm="ortho").real.to(images.dtype)


@register_detector(
    "spsl",
    tiny={"widths": (8, 16, 16, 24, 32, 48, 48, 64), "dropout": 0.0, "backbone_pretrained": "none", "size": 64},
)
class SPSL(Detector):
    """RGB + phase-only image → shallow Xception → pool → linear(2) (module docstring has the mapping and choices).

    Args:
        widths: Xception widths (conv1, conv2, block1, block2, entry/middle, block12, conv3, conv4).
        middle_blocks: middle-flow blocks kept (0: the shallow network; 8: full Xception).
        dropout: dropout before the linear classifier (0).
        backbone_pretrained: weights spec of the Xception the *trainer* loads (``timm:legacy_xception.tf_in1k``, a
            local file in timm's key layout, or ``"none"``); never loaded here.
        size: input side (256).
        margin: face-crop margin of the input contract.
        align: crop alignment of the input contract.

    Shape:
        images (B, 3, H, W) -> {"logits": (B, 2), "features": (B, widths[7]), "phase": (B, 1, H, W)}
    """

    def __init__(
        self,
        widths: tuple[int, ...] = XCEPTION_WIDTHS,
        middle_blocks: int = 0,
        dropout: float = 0.0,
        backbone_pretrained: str | None = None,
        size: int = 256,
        margin: float = 1.3,
        align: str = "box",
    ) -> None:
        super().__init__(InputSpec(size=size, margin=margin, align=align, mean=(0.5,) * 3, std=(0.5,) * 3))
        self.backbone = XceptionTrunk(4, tuple(widths), middle_blocks)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(self.backbone.num_features, 2)
        self.backbone_pretrained = backbone_pretrained

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images of shape (B, 3, H, W), got {tuple(images.shape)}")
        phase = phase_only_image(images)
        feats = torch.relu(self.backbone(torch.cat([images, phase], dim=1))).mean(dim=(2, 3))
        return {"logits": self.head(self.dropout(feats)), "features": feats, "phase": phase}

    def compute_loss(self, batch: dict[str, Any], outputs: dict[str, torch.Tensor], **phase: Any) -> dict[str, Any]:
        ce = classification_loss(outputs["logits"], batch["label"])
        return {"loss": ce, "ce": ce.detach()}

    def pretrained_parts(self) -> dict[str, tuple[str, str | None]]:
        """The ImageNet Xception of the backbone (its 3-channel ``conv1`` widened by :meth:`load_pretrained_part`)."""
        return {"backbone.": ("backbone_pretrained", self.backbone_pretrained)}

    def load_pretrained_part(self, prefix: str, state_dict: dict[str, torch.Tensor]) -> dict[str, list[str]]:
        """Load RGB Xception weights into the 4-channel shallow backbone: ``conv1``'s phase-channel filter is the
        mean of its RGB filters; skipped middle blocks and the ImageNet classifier are dropped (and reported)."""
        if prefix != "backbone.":
            return super().load_pretrained_part(prefix, state_dict)
        from dflab.models.backbones import load_pretrained

        sd = dict(state_dict)
        w = sd.get("conv1.weight")
        if w is not None and w.shape[1] == 3 and self.backbone.in_chans == 4:
            sd["conv1.weight"] = torch.cat([w, w.mean(dim=1, keepdim=True)], dim=1)
        skipped = self.backbone.skipped_prefixes()
        return load_pretrained(self.backbone, sd, allow_unexpected=("fc.", "classifier.", "head.", *skipped))
