"""Capsule-Forensics (Nguyen, Yamagishi, Echizen: "Capsule-Forensics: Using capsule networks to detect forged images
and videos", ICASSP 2019; improved v2: "Use of a Capsule Network to Detect Fake Images and Videos", arXiv:1910.12467).

"Capsule [22]" of BiG-Arts Tables 1-4, which cites the ICASSP paper and retrains it "using their released codes"
(§4.2) without saying which release. ``capsule`` is v2 (nii-yamagishilab/Capsule-Forensics-v2); ``capsule_v1`` is
the ICASSP release (nii-yamagishilab/Capsule-Forensics): the same blocks with 3 primary capsules, no dropout on the
routing predictions, 128 px input.

Sources: the paper's text was not at hand while writing this file, so the numbers below (layer sizes, capsule
counts, iterations, noise, dropout, output and loss) are read from the authors' v2 release (``model_big.py``,
``train_binary_ffpp.py``); the paper's own description (v2 §3: VGG-19, statistical pooling of mean and variance,
primary and output capsules, dynamic routing with random noise) agrees with them. Where the release departs from
the capsule definitions the paper builds on (Sabour et al. 2017), this file follows Sabour et al.; each such point
is listed below.

Source check (2026-11-30). The papers are stored only as their abstracts (arxiv.org/abs/1910.12467v2,
tomesphere.com/paper/1910.12467; ICASSP: yamagishilab.jp/publication/capsule-forensics-using-capsule-networks-to-
detect-forged-images-and-videos), so the section numbers and the paper-side description below are **not checked
against the papers' text**. The v2 release was re-read in full (``model_big.py``, ``train_binary_ffpp.py``) and
agrees with every number here: ``NO_CAPS=10``; VGG-19 ``features`` children 0-18 (through the third max-pool),
``.eval()``, its output detached and outside the optimiser; capsule convs 256→64→16 (3×3, BN, ReLU), mean and
std pooling, conv1d 2→8 (k 5, s 2) + BN, 8→1 (k 3) + BN; routing 10 → 2 capsules, 8 → 4 dimensions, 2 iterations,
noise ``0.01·randn`` on the routing weights and dropout 0.05 on the predictions in training; loss
``CrossEntropyLoss`` on each of the 4 softmaxed components, summed; Adam lr 5e-4 betas (0.9, 0.999), batch 32,
300 px, 25 epochs, ImageNet normalisation, no augmentation. The ICASSP release (nii-yamagishilab/Capsule-Forensics,
``model.py``, ``train.py``) was re-read too and agrees with ``capsule_v1``: three primary capsules, the same blocks,
noise on W but no dropout on û, batch 100, 128 px (resize + centre crop), 100 epochs, Adam 5e-4. BiG-Arts §4.2
retrains "using their released codes" and cites the ICASSP paper ([22]); which release it ran is not said.

Architecture (v2 §3):

* **Feature extractor**: VGG-19 pre-trained on ImageNet, from the input up to the third max-pooling layer (torchvision
  ``features[0:19]``: blocks 1-3, 256 channels, stride 8). It is *frozen*: v2 trains only the capsule network
  (the release's optimiser holds the capsule parameters and detaches the VGG output). Here the VGG is timm's
  ``vgg19`` pruned after its third block (weights through ``model.pretrained: timm:vgg19.tv_in1k``) plus the pool.
* **Primary capsules**: ``n_primary = 10`` identical capsules, each conv 3×3 (256→64) + BN + ReLU, conv 3×3
  (64→16) + BN + ReLU, the *statistical pooling* layer (mean and variance of each of the 16 filters over the
  spatial grid, which makes the network input-size independent), then conv1d (2→8, kernel 5, stride 2) + BN and
  conv1d (8→1, kernel 3) + BN: an 8-d vector per capsule, squashed (Sabour et al. Eq. 1).
* **Dynamic routing** (Sabour et al. Procedure 1, Eq. 2-3) from the 10 primary capsules to 2 output capsules
  (real, fake) of dimension ``m = 4`` with ``r = 2`` iterations. During training only, Gaussian noise (std 0.01) is
  added to the transformation matrices W and dropout (p = 0.05) to the predictions û: v2's randomness in the
  routing, against over-fitting.
* **Output**: the class scores are the softmax over the two output capsules of each of the m components, averaged:
  ŷ = 1/m Σ_d softmax(v_real,d, v_fake,d); the loss is the cross-entropy of each component's scores with the
  label, summed over the m components.

Choices and differences from the release:

* ``logits`` = log ŷ, so the contract's ``softmax(logits)`` is exactly the averaged class scores.
* The release's ``nn.CrossEntropyLoss`` receives scores that are *already* softmaxed (a second softmax); by default
  the loss here is the plain cross-entropy of softmax(v_d). ``official_loss=True`` reproduces the double softmax.
* Primary capsules are squashed per capsule (each 8-d vector, Sabour et al.'s squash); the release squashes across
  the 10 capsules (its ``dim=-1`` is the capsule axis).
* Routing coefficients c_ij = softmax_j(b_ij) over the *output* capsules with one scalar logit per (i, j)
  (Sabour et al. Eq. 3); the release normalises over the input capsules with one logit per output component.
* Statistical pooling uses the population variance (the paper speaks of variance; the release uses the unbiased
  standard deviation), so a 1×1 grid stays finite.
* Dropout on û is the usual inverted dropout (the release multiplies by a Bernoulli mask without rescaling).
* Squash divides by sqrt(‖s‖² + 1e-8) so a zero vector does not give NaN.
* Initialisation as the release: primary-capsule convs N(0, 0.02), BN weights N(1, 0.02), W ~ N(0, 1).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dflab.models.backbones import create_backbone
from dflab.models.base import Detector, InputSpec, register_detector, register_variant

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def squash(s: torch.Tensor, dim: int = -1, eps: float = 1e-8) -> torch.Tensor:
    """Sabour et al. Eq. 1: v = ‖s‖² / (1 + ‖s‖²) · s / ‖s‖ — keeps the direction, maps the length into [0, 1).

    Shape:
        any -> same shape; the norm is taken over ``dim``.
    """
    sq = (s * s).sum(dim=dim, keepdim=True)
    return sq / (1.0 + sq) * s / torch.sqrt(sq + eps)


class StatsPool(nn.Module):
    """v2's statistical pooling: mean and variance of each filter over the spatial grid.

    Shape:
        (B, C, H, W) -> (B, 2, C) (row 0 mean, row 1 variance).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        var, mean = torch.var_mean(x.flatten(2), dim=2, correction=0)
        return torch.stack((mean, var), dim=1)


class PrimaryCapsule(nn.Module):
    """One primary capsule: two conv-BN-ReLU, statistical pooling, two conv1d-BN (v2 release layout).

    Args:
        in_ch: channels of the VGG features (256).
        hidden: width of the first conv (paper: 64).
        channels: width of the second conv = length of the pooled statistics (paper: 16); the capsule has
            ``channels // 2`` dimensions (the stride-2 conv1d halves it: 8).

    Shape:
        (B, in_ch, H, W) -> (B, channels // 2).
    """

    def __init__(self, in_ch: int, hidden: int = 64, channels: int = 16) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(in_ch, hidden, 3, padding=1),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, 3, padding=1),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
        )
        self.stats = StatsPool()
        self.head = nn.Sequential(
            nn.Conv1d(2, 8, 5, stride=2, padding=2),
            nn.BatchNorm1d(8),
            nn.Conv1d(8, 1, 3, padding=1),
            nn.BatchNorm1d(1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stats(self.conv(x))).squeeze(1)


class DynamicRouting(nn.Module):
    """Routing by agreement (Sabour et al. Procedure 1, Eq. 2-3) with v2's training-time noise and dropout.

    Args:
        n_in: number of input capsules.
        n_out: number of output capsules.
        d_in: input capsule dimension.
        d_out: output capsule dimension.
        iterations: routing iterations r (v2: 2).
        noise_std: std of the Gaussian noise added to W while training (v2: 0.01).
        dropout: dropout on the predictions û while training (v2: 0.05).

    Shape:
        u (B, n_in, d_in) -> v (B, n_out, d_out), coupling coefficients c (B, n_in, n_out) (rows sum to 1).
    """

    def __init__(
        self, n_in: int, n_out: int, d_in: int, d_out: int, iterations: int = 2, noise_std: float = 0.01,
        dropout: float = 0.05,
    ) -> None:  # fmt: skip
        super().__init__()
        if iterations < 1:
            raise ValueError(f"routing needs at least one iteration, got {iterations}")
        self.iterations = iterations
        self.noise_std = noise_std
        self.dropout = dropout
        self.weight = nn.Parameter(torch.randn(n_out, n_in, d_out, d_in))

    def forward(self, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        w = self.weight
        if self.training and self.noise_std > 0:
            w = w + self.noise_std * torch.randn_like(w)
        u_hat = torch.einsum("jiod,bid->bijo", w, u)  # predictions û_{j|i} = W_ij u_i: (B, n_in, n_out, d_out)
        if self.training and self.dropout > 0:
            u_hat = F.dropout(u_hat, self.dropout)
        b = u_hat.new_zeros(u_hat.shape[:3])
        for it in range(self.iterations):
            c = b.softmax(dim=2)
            v = squash((c.unsqueeze(-1) * u_hat).sum(dim=1))
            if it < self.iterations - 1:
                b = b + (u_hat * v.unsqueeze(1)).sum(-1)  # agreement û_{j|i} · v_j
        return v, c


@register_detector(
    "capsule",
    tiny={"vgg": "vgg11", "n_primary": 3, "caps_hidden": 8, "caps_channels": 8, "out_dim": 4, "size": 64},
)
class CapsuleForensics(Detector):
    """Capsule-Forensics v2: frozen VGG-19 blocks 1-3 → primary capsules → dynamic routing → 2 output capsules.

    Args:
        size: input size (v2 release: 300).
        vgg: timm VGG architecture of the frozen extractor (paper: ``vgg19``); tiny variants use ``vgg11``.
        vgg_block: the extractor ends after this block's max-pool (0-based timm feature tap; paper: 2, the third).
        n_primary: number of primary capsules (v2: 10).
        caps_hidden: width of each primary capsule's first conv (v2: 64).
        caps_channels: width of its second conv; the primary capsules have ``caps_channels // 2`` dims (v2: 16 → 8).
        out_dim: dimension m of the two output capsules (v2: 4).
        iterations: routing iterations (v2: 2).
        noise_std: std of the routing weights' training noise (v2: 0.01).
        routing_dropout: dropout on the routing predictions while training (v2: 0.05).
        official_loss: apply the release's second softmax inside the cross-entropy (see the module docstring).
        margin: the input contract (written into checkpoints).
        align: the input contract (written into checkpoints).
        mean: the input contract. v2 feeds ImageNet-normalised RGB.
        std: the input contract. v2 feeds ImageNet-normalised RGB.

    Shape:
        images (B, 3, H, W) -> {"logits": (B, 2) = log ŷ, "capsules": (B, 2, out_dim) output capsules,
        "coupling": (B, n_primary, 2) routing coefficients, "features": (B, n_primary · caps_channels // 2)}.
    """

    frozen_prefixes = ("backbone.",)
    #: Grad-CAM hooks the pooled VGG map that all primary capsules read (the default, the last spatial map before
    #: the logits, would be one capsule's own conv only)
    cam_layer = "pool"

    def __init__(
        self,
        size: int = 300,
        vgg: str = "vgg19",
        vgg_block: int = 2,
        n_primary: int = 10,
        caps_hidden: int = 64,
        caps_channels: int = 16,
        out_dim: int = 4,
        iterations: int = 2,
        noise_std: float = 0.01,
        routing_dropout: float = 0.05,
        official_loss: bool = False,
        margin: float = 1.3,
        align: str = "box",
        mean: tuple[float, float, float] = _IMAGENET_MEAN,
        std: tuple[float, float, float] = _IMAGENET_STD,
    ) -> None:
        super().__init__(InputSpec(size=size, margin=margin, align=align, mean=tuple(mean), std=tuple(std)))
        if caps_channels % 2:
            raise ValueError(f"caps_channels must be even (the stride-2 conv1d halves it), got {caps_channels}")
        # a 1-wide pre-logits MLP: the VGG head is pruned below, so building timm's 4096-wide one would be waste
        self.backbone = create_backbone(vgg, mlp_ratio=1 / 4096)
        self.backbone.prune_intermediate_layers([vgg_block], prune_head=True)
        for p in self.backbone.parameters():
            p.requires_grad_(False)
        self.pool = nn.MaxPool2d(2)  # timm's feature tap stops before the block's pool; the paper keeps it
        in_ch = self.backbone.feature_info[vgg_block]["num_chs"]
        self.primary = nn.ModuleList(PrimaryCapsule(in_ch, caps_hidden, caps_channels) for _ in range(n_primary))
        self.routing = DynamicRouting(n_primary, 2, caps_channels // 2, out_dim, iterations, noise_std, routing_dropout)
        self.official_loss = official_loss
        for m in self.primary.modules():
            if isinstance(m, nn.Conv1d | nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, 0.02)
            elif isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
                nn.init.normal_(m.weight, 1.0, 0.02)
                nn.init.zeros_(m.bias)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images of shape (B, 3, H, W), got {tuple(images.shape)}")
        feats = self.pool(self.backbone.forward_features(images))
        u = squash(torch.stack([cap(feats) for cap in self.primary], dim=1))
        v, c = self.routing(u)
        scores = v.transpose(1, 2).softmax(dim=-1).mean(dim=1)  # ŷ = 1/m Σ_d softmax over the 2 capsules
        return {"logits": scores.clamp_min(1e-12).log(), "capsules": v, "coupling": c, "features": u.flatten(1)}

    def compute_loss(self, batch: dict[str, Any], outputs: dict[str, torch.Tensor], **phase: Any) -> dict[str, Any]:
        v = outputs["capsules"].float()  # (B, 2, m): component d of both capsules = the 2-class scores of head d
        labels = batch["label"].long()
        if labels.shape != v.shape[:1]:
            raise ValueError(f"expected labels of shape ({v.shape[0]},), got {tuple(labels.shape)}")
        per_dim = v.softmax(dim=1) if self.official_loss else v
        ce = sum(F.cross_entropy(per_dim[:, :, d], labels) for d in range(v.shape[2]))
        return {"loss": ce, "ce": ce.detach()}


# the ICASSP 2019 release: 3 primary capsules, noise on W but no dropout on û, 128 px (its train.py defaults)
register_variant("capsule_v1", "capsule", n_primary=3, routing_dropout=0.0, size=128)
