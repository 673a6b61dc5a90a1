"""RFM — Representative Forgery Mining (Wang & Deng, CVPR 2021, "Representative Forgery Mining for Fake Face
Detection"; the RFM [39] baseline of BiG-Arts Table 1, retrained there with the released code).

An XceptionNet classifier trained on images from which the regions it currently relies on most are erased, so it
must find forgery evidence elsewhere ("tracks and occludes the Top-N sensitive facial regions", abstract):

* **Forgery Attention Map (FAM)** — :func:`forgery_attention_map`: the absolute gradient of the fake-minus-real logit
  difference with respect to the input image, maximum over the colour channels,
  ``FAM(I) = max_c |∂(O_fake(I) − O_real(I)) / ∂I_c|``, computed with the current model in eval mode.
* **Suspicious Forgery Erasing (SFE)** — :func:`sample_erasing` + :func:`apply_erasing`: for each image, take the
  highest-FAM location not yet erased, erase a block of random height/width in ``[1, max]`` placed at a random offset
  around it, repeat until ``top_n`` blocks; erased pixels become uniform noise.
* **Training** (:meth:`RFM.prepare_batch`, called by the engine before the training forward): FAM of the clean batch
  (eval mode, no parameter or gradient touched) → SFE → train-mode forward on the erased batch → cross-entropy with
  flooding. Inference is a plain forward of the classifier; nothing is erased.

Numbers and choices. The paper text available here is its abstract; every number below is the released code's
(crywang/RFM ``train.py`` / ``utils/utils.py`` / ``utils/datasets_profiles.py`` defaults), which BiG-Arts §4.2 says it
retrained with:

* Top-N = 3 blocks per image; block height and width each uniform in ``[1, 120]`` at 224 px: here a fraction
  ``erase_max_frac = 120/224`` of the image side, so a 64 px tiny run erases proportionally (≤ 34 px).
* Every training image is erased, real and fake alike (the code has no erasing probability; ``erase_prob = 1``).
* Fill: uniform noise in ``[−1, 1]`` in the code's normalised space (mean 0.5, std 0.25), i.e. pixel values uniform
  in ``[0.25, 0.75]``; here drawn in pixel space and normalised with the detector's own mean/std, so the same
  pixels result whatever the normalisation.
* The next location is the highest-FAM pixel outside every block erased so far (the code walks the FAM in
  descending order and skips already-erased pixels; ties resolve to the first pixel in row-major order here).
* Flooding (Ishida et al., ICML 2020) with level b = 0.04 on the batch cross-entropy: ``|CE − b| + b`` (the code's
  ``flood``); ``flood_level = 0`` gives plain cross-entropy. The logged ``ce`` is the unflooded loss.
* Input 224 px, mean 0.5, std 0.25 (the code's ``Normalize([0.5]*3, [0.25]*3)``); Adam lr 2e-4, no weight decay,
  batch 16 (8 real + 8 fake) — the recipe ``rfm``.

Source check (2026-11-30). The paper is stored only as its opening (vdocuments.us/representative-forgery-mining-
for-fake-face-detection-the-difference-between.html, paperswithcode.com/paper/representative-forgery-mining-for-
fake-face): abstract and first lines of the introduction, which confirm the "attention-based data augmentation
framework" that "tracks and occludes the Top-N sensitive facial regions", and point to the code. The FAM/SFE
definitions and every number here are therefore **not checked against the paper text** but were re-read in the
release (crywang/RFM ``train.py``, ``utils/utils.py``) and agree with it: ``cal_fam`` = max over channels of
|∂(out[:, 1] − out[:, 0]) / ∂input| in eval mode; 3 blocks per image, ``eH = eW = 120`` at 224 px, offsets
``randint(1, maskh)``, fill ``rand·2 − 1``; ``flood = |loss − 0.04| + 0.04``; Adam lr 2e-4, weight decay 0;
batch 16 as 8 real + 8 fake; ``max_batch`` 500 000; validation every ``logbatch`` = 3000 batches;
``xception(pretrained=False)``.

Deviations:

* Block placement: the code draws the offset above/left of the point in ``[1, h]``, so when it draws ``h`` the block
  ends just before the point and leaves the point itself intact. Here the offset is in ``[0, h − 1]``: every block
  covers its FAM location, as the method describes.
* The FAM is ``torch.autograd.grad`` with respect to the input only: no parameter ``.grad`` is written (the code
  backpropagates into the parameters too and clears them with ``zero_grad`` before the training backward; the
  training update is the same). Train/eval flags are restored per module, so a phase's frozen batch-norm stays so.
* The code trains ``pretrainedmodels``' Xception with ``pretrained=False`` and BiG-Arts §4.2 retrains RFM "using
  their released codes", so the ``rfm`` recipe starts from random weights too (``model.pretrained=none``; until the
  2026-11-30 source check it started from ImageNet like the ``xception`` baseline, which
  ``model.pretrained=timm:legacy_xception.tf_in1k`` still gives). Its 256 → random 224 crop is not
  reproduced (crops are resized to 224; horizontal flip kept). Checkpoints are chosen on the validation split, never
  on test data as the code's TPR@FPR=1e-4 selection does.
* The FAM is not an ``explain_maps`` output: it needs a gradient, and the scan scores under ``inference_mode``; the
  scan's Grad-CAM fallback applies, and :meth:`RFM.fam` gives the map on demand.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from dflab.losses import classification_loss
from dflab.models.base import VARIANTS, register_detector
from dflab.models.detectors.classifier import XceptionClassifier


def forgery_attention_map(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """FAM: ``max_c |∂(logit_fake − logit_real) / ∂image_c|`` with ``model`` in eval mode.

    Parameters, their ``.grad`` and every module's train/eval flag are left as they were (gradients are taken with
    respect to the input only).

    Args:
        model: returns ``{"logits": (B, 2)}`` for images (class 1 = fake).
        images: the batch, normalised as the model expects.

    Shape:
        images (B, 3, H, W) -> (B, 1, H, W), non-negative.
    """
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with torch.enable_grad():
            x = images.detach().clone().requires_grad_(True)
            logits = model(x)["logits"].float()
            # samples are independent in eval mode, so the gradient of the sum is each sample's own gradient
            (grad,) = torch.autograd.grad((logits[:, 1] - logits[:, 0]).sum(), x)
    finally:
        for m, mode in modes:
            m.training = mode
    return grad.abs().amax(dim=1, keepdim=True)


@dataclass(frozen=True)
class ErasingParams:
    """Sampled SFE blocks: ``boxes[b, n] = (top, bottom, left, right)``, half-open pixel ranges; an empty box
    (``bottom == top``) erases nothing. ``points[b, n] = (row, col)`` is the FAM location each block covers.

    Shape:
        boxes (B, N, 4) long, points (B, N, 2) long.
    """

    boxes: torch.Tensor
    points: torch.Tensor


def sample_erasing(
    fam: torch.Tensor,
    top_n: int = 3,
    max_size: tuple[int, int] = (120, 120),
    prob: float = 1.0,
    generator: torch.Generator | None = None,
) -> ErasingParams:
    """Sample SFE blocks around the Top-N FAM locations (see the module docstring).

    For each image (erased with probability ``prob``): ``top_n`` times, take the highest-FAM pixel outside the blocks
    drawn so far, draw a block height in ``[1, max_size[0]]``, width in ``[1, max_size[1]]`` and an offset so the block
    covers the pixel, clip it to the image.

    Shape:
        fam (B, 1, H, W) -> :class:`ErasingParams` with N = ``top_n``.
    """
    if fam.ndim != 4 or fam.shape[1] != 1:
        raise ValueError(f"expected a FAM of shape (B, 1, H, W), got {tuple(fam.shape)}")
    b, _, h, w = fam.shape
    mh, mw = max(1, int(max_size[0])), max(1, int(max_size[1]))
    dev = {"device": "cpu"}
    # all random draws up front, on the CPU generator: the same generator state gives the same blocks anywhere
    sizes_h = torch.randint(1, mh + 1, (b, top_n), generator=generator, **dev)
    sizes_w = torch.randint(1, mw + 1, (b, top_n), generator=generator, **dev)
    off_h = (torch.rand((b, top_n), generator=generator, **dev) * sizes_h).long()  # rows above the point, [0, h-1]
    off_w = (torch.rand((b, top_n), generator=generator, **dev) * sizes_w).long()
    erase = torch.rand((b,), generator=generator, **dev) < prob
    boxes = torch.zeros(b, top_n, 4, dtype=torch.long)
    points = torch.full((b, top_n, 2), -1, dtype=torch.long)
    score = fam[:, 0].detach().float().cpu().clone()
    for i in range(b):
        if not erase[i]:
            continue
        for n in range(top_n):
            flat = int(score[i].argmax())
            r, c = divmod(flat, w)
            if score[i, r, c] == float("-inf"):  # the whole image is erased already
                break
            top, left = max(r - int(off_h[i, n]), 0), max(c - int(off_w[i, n]), 0)
            bottom = min(r - int(off_h[i, n]) + int(sizes_h[i, n]), h)
            right = min(c - int(off_w[i, n]) + int(sizes_w[i, n]), w)
            boxes[i, n] = torch.tensor([top, bottom, left, right])
            points[i, n] = torch.tensor([r, c])
            score[i, top:bottom, left:right] = float("-inf")
    return ErasingParams(boxes=boxes, points=points)


def erasing_mask(params: ErasingParams, size: tuple[int, int]) -> torch.Tensor:
    """1 where any block erases, else 0. Shape: -> (B, 1, H, W) bool."""
    b, n = params.boxes.shape[:2]
    h, w = size
    rows = torch.arange(h).view(1, 1, h, 1)
    cols = torch.arange(w).view(1, 1, 1, w)
    t, bt, lf, rt = (params.boxes[..., k].view(b, n, 1, 1) for k in range(4))
    inside = (rows >= t) & (rows < bt) & (cols >= lf) & (cols < rt)
    return inside.any(dim=1, keepdim=True)


def apply_erasing(images: torch.Tensor, params: ErasingParams, fill: torch.Tensor) -> torch.Tensor:
    """Replace the erased blocks of ``images`` by ``fill``; every other pixel is returned unchanged.

    Shape:
        images (B, C, H, W), fill broadcastable to it -> (B, C, H, W).
    """
    mask = erasing_mask(params, tuple(images.shape[-2:])).to(images.device)
    return torch.where(mask, fill.to(images.dtype), images)


# the xception_tiny backbone (build_detector hands each build its own copy of these kwargs)
@register_detector("rfm", tiny=VARIANTS.get("xception_tiny")[1])
class RFM(XceptionClassifier):
    """XceptionNet trained with FAM-guided Suspicious Forgery Erasing (see the module docstring).

    Args:
        top_n: blocks erased per image (code: 3).
        erase_max_frac: largest block side as a fraction of the image side (code: 120 px of 224).
        erase_prob: probability that an image is erased (code: every image, 1.0).
        fill_range: the erased pixels' uniform noise range, in [0, 1] pixel units (code: [0.25, 0.75]).
        flood_level: flooding level b of the loss ``|CE − b| + b`` (code: 0.04; 0 = plain cross-entropy).
        **kwargs: :class:`~dflab.models.detectors.classifier.BinaryClassifier`'s (backbone, dropout, input contract).

    Shape:
        images (B, 3, H, W) -> {"logits": (B, 2), "features": (B, C)}.
    """

    default_input: ClassVar[dict[str, Any]] = {"size": 224, "mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25)}

    def __init__(
        self,
        top_n: int = 3,
        erase_max_frac: float = 120 / 224,
        erase_prob: float = 1.0,
        fill_range: tuple[float, float] = (0.25, 0.75),
        flood_level: float = 0.04,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if top_n < 0 or not 0 < erase_max_frac <= 1 or not 0 <= erase_prob <= 1 or flood_level < 0:
            raise ValueError(
                f"RFM needs top_n >= 0, 0 < erase_max_frac <= 1, 0 <= erase_prob <= 1, flood_level >= 0; got "
                f"{top_n}, {erase_max_frac}, {erase_prob}, {flood_level}"
            )
        self.top_n, self.erase_max_frac, self.erase_prob = int(top_n), float(erase_max_frac), float(erase_prob)
        self.fill_range = (float(fill_range[0]), float(fill_range[1]))
        self.flood_level = float(flood_level)

    def fam(self, images: torch.Tensor) -> torch.Tensor:
        """The Forgery Attention Map of ``images`` under the current weights. Shape: (B, 3, H, W) -> (B, 1, H, W)."""
        return forgery_attention_map(self, images)

    def prepare_batch(self, batch: dict[str, Any], **phase: Any) -> dict[str, Any]:
        """SFE on the training batch: FAM with the current model, Top-N blocks erased with uniform noise."""
        images = batch["image"]
        if self.top_n == 0 or self.erase_prob == 0:
            return batch
        h, w = images.shape[-2:]
        max_size = (round(self.erase_max_frac * h), round(self.erase_max_frac * w))
        params = sample_erasing(self.fam(images), self.top_n, max_size, self.erase_prob)
        lo, hi = self.fill_range
        mean = torch.tensor(self.input_spec.mean, device=images.device).view(1, 3, 1, 1)
        std = torch.tensor(self.input_spec.std, device=images.device).view(1, 3, 1, 1)
        fill = (lo + (hi - lo) * torch.rand(images.shape, device=images.device) - mean) / std
        return {**batch, "image": apply_erasing(images, params, fill)}

    def compute_loss(self, batch: dict[str, Any], outputs: dict[str, torch.Tensor], **phase: Any) -> dict[str, Any]:
        ce = classification_loss(outputs["logits"], batch["label"], label_smoothing=self.label_smoothing)
        b = self.flood_level
        loss = (ce - b).abs() + b if b > 0 else ce  # flooding: gradient ascent once CE < b
        return {"loss": loss, "ce": ce.detach()}
