"""CLIP probe — a frozen foundation-model encoder and a small head on features of several of its blocks.

Papers: Ojha, Li & Lee, "Towards Universal Fake Image Detectors that Generalize Across Generative Models", CVPR 2023
(UnivFD: a linear probe on frozen CLIP ViT features generalises to unseen generators where trained CNNs do not);
Koutlis & Papadopoulos, "Leveraging Representations from Intermediate Encoder-blocks for Synthetic Image
Detection", ECCV 2024 (RINE: the intermediate blocks of CLIP carry the low-level traces, and a head reading several
blocks beats the last layer alone).

Architecture: CLIP ViT-B/16 (frozen; ONNX Runtime, :mod:`dflab.models.clip`) → for each block in ``blocks`` the
class token and the mean of the 196 patch tokens (``tokens``) → concatenation → standardisation (a non-affine
BatchNorm whose statistics are the training set's) → dropout → linear layer (``hidden = 0``) or a one-hidden-layer
MLP → 2 logits (class 1 = fake).

Choices (ours; the papers differ and leave these open):

* **Blocks and tokens.** RINE weighs the class tokens of all blocks with learned importance; on faces the block
  that serves videos best is not the one that serves stills best (``../shared/notes/clip-probe.md``), and the mean
  patch token adds to the class token. The blocks, the tokens and the head are chosen by leave-one-source-out
  validation in ``scripts/train_default.py`` (its report is in the shipped card); a linear head on standardised
  features of several blocks equals a learned per-block weighting followed by a linear probe, which is what RINE's
  importance estimator learns, without its contrastive term.
* **Training data.** Reals and fakes synthesised from those same reals (SBI, ADDG) — "pairs from one source" — so
  the head cannot learn a dataset's encoding or framing instead of the manipulation (see the default detector's
  docs page).
* **Head fitting.** The default is fitted on cached features (``scripts/train_default.py``: each face is encoded
  once per run); ``dflab train`` also trains it like any detector, the frozen encoder then running on every batch,
  with a bounded per-run feature cache (``cache_size`` crops) so that unaugmented crops are encoded once per run.
* **Explanation.** ``explain_maps`` gives each patch's contribution to the fake logit through the mean-patch-token
  features (exact for a linear head: the mean over patches is linear), a 14 × 14 map of where the evidence is.
* **Input.** The face crop (square box × ``margin``) resized whole to 224 px, CLIP's mean/std.

The ``clip_probe_tiny`` variant replaces CLIP by a 2-block random ViT at 64 px for the contract test.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from dflab.losses import classification_loss
from dflab.models.base import Detector, InputSpec, register_detector
from dflab.models.clip import CLIP_MEAN, CLIP_SIZE, CLIP_STD, WIDTH, clip_onnx_path, shared_encoder

TOKENS = ("cls", "mean")


class _TinyViT(nn.Module):
    """A random 2-block ViT standing in for CLIP in tests (same token layout: class token + patch tokens)."""

    def __init__(self, size: int = 64, width: int = 32, depth: int = 2) -> None:
        super().__init__()
        from dflab.models.backbones import _timm

        g = torch.random.get_rng_state()
        torch.manual_seed(0)  # a fixed random encoder: checkpoints of the tiny variant rebuild the same features
        self.vit = _timm().create_model("vit_tiny_patch16_224", pretrained=False, img_size=size, embed_dim=width,
                                        depth=depth, num_heads=2, num_classes=0)  # fmt: skip
        torch.random.set_rng_state(g)
        self.width, self.depth = width, depth
        for p in self.parameters():
            p.requires_grad_(False)

    def forward(self, images: torch.Tensor, blocks: Sequence[int]) -> dict[int, torch.Tensor]:
        x = self.vit.patch_embed(images)
        x = self.vit._pos_embed(x)
        x = self.vit.norm_pre(x)
        out = {}
        for k, blk in enumerate(self.vit.blocks, start=1):
            x = blk(x)
            if k in blocks:
                out[k] = x
        return out


@register_detector(
    "clip_probe", tiny={"encoder": "tiny_vit", "blocks": [1, 2], "size": 64, "hidden": 16, "cache_size": 0}
)
class ClipProbe(Detector):
    """Frozen CLIP ViT-B/16 features of several blocks → standardisation → linear or MLP head.

    Args:
        blocks: 1-based ViT blocks whose tokens are read.
        tokens: which tokens per block: ``"cls"`` and/or ``"mean"`` (mean of the patch tokens).
        hidden: width of the head's hidden layer (0 = a linear head).
        dropout: dropout on the standardised features.
        encoder: ``"clip_onnx"`` (CLIP ViT-B/16 via ONNX Runtime) or ``"tiny_vit"`` (tests).
        threads: ONNX Runtime threads (``None`` = its default).
        cache_size: crops whose features are kept per run during training (0 = no cache).
        size: input side of the crop contract (CLIP reads 224 px).
        margin: face-box margin of the crop contract.
        align: crop alignment of the crop contract.

    Shape:
        images (B, 3, S, S) normalised with CLIP's mean/std -> {"logits": (B, 2), "features": (B, D),
        "patch_map": (B, 1, 14, 14) (only for a linear head reading mean tokens)}.
    """

    frozen_prefixes = ("tiny.",)
    #: no gradient reaches the image (CLIP runs in ONNX Runtime): maps come from ``explain_maps``, never Grad-CAM
    gradcam = False  # the encoder is frozen (CLIP runs outside torch; the tiny test ViT is a module)

    def __init__(
        self,
        blocks: Sequence[int] = (8, 9, 10, 11, 12),
        tokens: Sequence[str] = TOKENS,
        hidden: int = 0,
        dropout: float = 0.0,
        encoder: str = "clip_onnx",
        threads: int | None = None,
        cache_size: int = 50_000,
        size: int = CLIP_SIZE,
        margin: float = 1.3,
        align: str = "box",
    ) -> None:
        super().__init__(InputSpec(size=int(size), margin=margin, align=align, mean=CLIP_MEAN, std=CLIP_STD))
        self.blocks = tuple(int(b) for b in blocks)
        self.tokens = tuple(tokens)
        if not self.tokens or set(self.tokens) - set(TOKENS):
            raise ValueError(f"tokens must be a non-empty subset of {TOKENS}, got {tokens}")
        self.encoder_name, self.threads = encoder, threads
        if encoder == "tiny_vit":
            self.tiny = _TinyViT(size=int(size), depth=max(self.blocks))
            width = self.tiny.width
        elif encoder == "clip_onnx":
            clip_onnx_path()  # fail at build/load time, with the install command, not at the first scored face
            self.tiny = None
            width = WIDTH
        else:
            raise ValueError(f"unknown encoder {encoder!r}: 'clip_onnx' or 'tiny_vit'")
        self.width = width
        dim = len(self.blocks) * len(self.tokens) * width
        # the training set's feature statistics (momentum=None: a cumulative average when trained by dflab train)
        self.norm = nn.BatchNorm1d(dim, affine=False, momentum=None)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(dim, 2) if hidden <= 0 else nn.Sequential(nn.Linear(dim, hidden), nn.GELU(),
                                                                           nn.Linear(hidden, 2))  # fmt: skip
        self.cache_size = int(cache_size)
        self._cache: OrderedDict[bytes, torch.Tensor] = OrderedDict()

    # ---------------------------------------------------------------------------------------------- encoder
    def _hidden(self, images: torch.Tensor) -> dict[int, torch.Tensor]:
        """Hidden states of the chosen blocks, (B, 1 + P, W) each; the encoder is frozen (no gradient)."""
        with torch.no_grad():
            if self.tiny is not None:
                return self.tiny(images.float(), self.blocks)
            if images.shape[-1] != CLIP_SIZE or images.shape[-2] != CLIP_SIZE:
                images = nn.functional.interpolate(images.float(), size=(CLIP_SIZE, CLIP_SIZE), mode="bilinear",
                                                   align_corners=False, antialias=True)  # fmt: skip
            enc = shared_encoder(self.blocks, self.threads)
            out = enc(images.detach().float().cpu().numpy())
            return {b: torch.from_numpy(out[b]) for b in self.blocks}

    def _tokens(self, hidden: dict[int, torch.Tensor]) -> torch.Tensor:
        """(B, len(blocks) * len(tokens) * W): per block the class token and/or the mean patch token."""
        parts = []
        for b in self.blocks:
            h = hidden[b]
            for t in self.tokens:
                parts.append(h[:, 0] if t == "cls" else h[:, 1:].mean(1))
        return torch.cat(parts, dim=1).float()

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Frozen features of a batch (through the per-run cache while training). Shape: (B, 3, S, S) -> (B, D)."""
        if not (self.training and self.cache_size > 0):
            return self._tokens(self._hidden(images))
        keys = [hashlib.blake2b(x.detach().float().cpu().numpy().tobytes(), digest_size=16).digest() for x in images]
        todo = [i for i, k in enumerate(keys) if k not in self._cache]
        if todo:
            feats = self._tokens(self._hidden(images[todo]))
            for i, f in zip(todo, feats, strict=True):
                self._cache[keys[i]] = f
                if len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
        return torch.stack([self._cache[k] for k in keys])

    # ---------------------------------------------------------------------------------------------- contract
    def head_forward(self, feats: torch.Tensor) -> torch.Tensor:
        """The trainable part on precomputed features. Shape: (B, D) -> (B, 2) logits."""
        return self.head(self.dropout(self.norm(feats)))

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images of shape (B, 3, H, W), got {tuple(images.shape)}")
        if self.training:
            feats = self.encode(images)
            return {"logits": self.head_forward(feats), "features": feats}
        hidden = self._hidden(images)
        feats = self._tokens(hidden)
        out = {"logits": self.head_forward(feats), "features": feats}
        pm = self._patch_map(hidden)
        if pm is not None:
            out["patch_map"] = pm
        return out

    def _patch_map(self, hidden: dict[int, torch.Tensor]) -> torch.Tensor | None:
        """Each patch's contribution to (fake − real) logit through the mean-patch features (linear head only).

        The mean token of block b enters the logit as ``w_b · (mean_p h_b[p] − μ_b) / σ_b``; spreading that sum over
        the patches gives ``w_b · (h_b[p] − μ_b) / σ_b / P`` per patch. Shape: -> (B, 1, g, g).
        """
        if "mean" not in self.tokens or not isinstance(self.head, nn.Linear):
            return None
        w = (self.head.weight[1] - self.head.weight[0]).detach()
        std = torch.sqrt(self.norm.running_var + self.norm.eps)
        contrib = None
        n_tok, width = len(self.tokens), self.width
        for i, b in enumerate(self.blocks):
            j = (i * n_tok + self.tokens.index("mean")) * width
            patches = hidden[b][:, 1:].float()
            c = ((patches - self.norm.running_mean[j : j + width]) / std[j : j + width]) @ w[j : j + width]
            contrib = c if contrib is None else contrib + c
        assert contrib is not None
        g = round(float(np.sqrt(contrib.shape[1])))
        return (contrib / contrib.shape[1]).view(-1, 1, g, g)

    def explain_maps(self, outputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Where the fake evidence is: the positive part of the per-patch contribution (see :meth:`_patch_map`)."""
        if "patch_map" not in outputs:
            return {}
        return {"patch_evidence": outputs["patch_map"].clamp(min=0)}

    def compute_loss(self, batch: dict[str, Any], outputs: dict[str, torch.Tensor], **phase: Any) -> dict[str, Any]:
        ce = classification_loss(outputs["logits"], batch["label"])
        return {"loss": ce, "ce": ce.detach()}

    def set_linear_head(self, mean: np.ndarray, var: np.ndarray, coef: np.ndarray, intercept: float) -> None:
        """Install a linear probe fitted elsewhere (e.g. scikit-learn on cached features).

        The fake − real logit becomes ``coef · (x − mean) / sqrt(var + eps) + intercept``.

        Shape:
            mean, var, coef: (D,); intercept: scalar.
        """
        if not isinstance(self.head, nn.Linear):
            raise TypeError("set_linear_head needs a linear head (hidden = 0)")
        with torch.no_grad():
            self.norm.running_mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
            self.norm.running_var.copy_(torch.as_tensor(var, dtype=torch.float32))
            w = torch.as_tensor(coef, dtype=torch.float32)
            self.head.weight.copy_(torch.stack([-w / 2, w / 2]))
            self.head.bias.copy_(torch.tensor([-intercept / 2, intercept / 2], dtype=torch.float32))
