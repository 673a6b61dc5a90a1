"""The detector contract every dflab detector follows (see ../shared/STYLE.md §4).

* ``forward(images) -> dict`` of named outputs; ``"logits"`` (B, 2) is always present (class 1 = fake).
* ``compute_loss(batch, outputs, **phase) -> dict`` with a ``"loss"`` key and named parts for logging. ``phase``
  holds the keyword arguments of the current training phase (set by a schedule, e.g. ``task="sub:3"``).
* ``score(outputs) -> (B,)`` P(fake).
* ``targets``: the batch keys the detector needs besides ``image``/``label`` (see :data:`TARGET_KEYS`), so the
  data layer supplies them.
* ``input_spec``: the preprocessing contract written into the checkpoint card.
* ``config()``: constructor kwargs, so a checkpoint rebuilds its own model.
* ``frozen_prefixes``: parameters the engine must never train (a frozen encoder).
* ``prepare_batch(batch, **phase) -> batch``: a training-time transform of the batch that needs the current model
  (RFM's attention-guided erasing); the engine calls it before the training forward. Default: the batch unchanged.
* ``after_optimizer_step()``: called by the engine right after every ``optimizer.step()`` (outside autocast, under
  ``torch.no_grad``), to project parameters back onto a constraint set (Bayar & Stamm's constrained convolution).
  Default: nothing.
* ``validation_loss(batch, outputs) -> scalar``: the validation ``loss`` the engine reports, that ``select_metric:
  -loss`` and early stopping watch; ``validation_loss_name`` says what it is (written into checkpoint cards).
  Default: cross-entropy of ``logits`` (``"cross_entropy"``); a detector whose paper early-stops on its own loss
  overrides both (ForensicTransfer: γ·L_act + L_rec).

Detectors are registered with :data:`DETECTORS` by name; each registers a ``<name>_tiny`` variant for tests.
"""

from __future__ import annotations

import copy
from typing import Any, ClassVar

import torch
from torch import nn

from dflab.compat import ensure_torchvision
from dflab.models.spec import InputSpec
from dflab.registry import Registry

ensure_torchvision()  # before anything imports timm (CPU torch + CUDA-only torchvision wheel)

#: Batch keys a detector may declare in ``targets``. Shapes for a batch of B images at H×W:
#:   image (B,3,H,W) float normalised; label (B,) long, 1 = fake;
#:   mask (B,1,H,W) float in [0,1]: manipulated region (SSIM/DIFF/hull mask; all zero for reals);
#:   mask_in / mask_ex (B,1,H,W): BiG-Arts intrinsic / extrinsic masks;
#:   boundary (B,1,H,W): Face X-ray boundary 4·M·(1−M);
#:   degraded (B,3,H,W): an image-quality-degraded copy of ``image`` (LiSiam);
#:   category (B,) long: ADDG category index of the sample (−1 for reals); identity (B,) long.
TARGET_KEYS = frozenset({"mask", "mask_in", "mask_ex", "boundary", "degraded", "category", "identity"})


class Detector(nn.Module):
    """Base class of all detectors."""

    #: batch keys needed besides image/label
    targets: ClassVar[frozenset[str]] = frozenset()
    #: parameter-name prefixes that are never trained (a frozen foundation encoder); the engine honours them
    frozen_prefixes: ClassVar[tuple[str, ...]] = ()
    #: what :meth:`validation_loss` computes; the engine writes it into checkpoint cards (``training.val_loss``)
    validation_loss_name: ClassVar[str] = "cross_entropy"

    def __init__(self, input_spec: InputSpec | None = None) -> None:
        super().__init__()
        self.input_spec = input_spec or InputSpec()
        self._config: dict[str, Any] = {}

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    def compute_loss(self, batch: dict[str, Any], outputs: dict[str, torch.Tensor], **phase: Any) -> dict[str, Any]:
        raise NotImplementedError  # pragma: no cover - abstract

    def score(self, outputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """P(fake) per sample, (B,). Default: softmax of ``logits``."""
        return outputs["logits"].float().softmax(dim=1)[:, 1]

    def config(self) -> dict[str, Any]:
        """Constructor kwargs (JSON-serialisable) that rebuild this detector."""
        return dict(self._config)

    def prepare_batch(self, batch: dict[str, Any], **phase: Any) -> dict[str, Any]:
        """Transform a training batch with the current model before the training forward (e.g. RFM erases what the
        model attends to most). Called by the engine once per step, in train mode, after ``zero_grad`` and outside
        autocast; it must leave parameters, their gradients and every module's train/eval mode as it found them.
        ``phase`` is the same as for :meth:`compute_loss`. Default: the batch unchanged."""
        return batch

    def after_optimizer_step(self) -> None:
        """Act on the parameters right after each optimiser step, e.g. re-project constrained weights (SuppressNet's
        first layer: centre −1, the rest summing to 1). The engine calls it under ``torch.no_grad`` after every
        ``optimizer.step()``; it must change parameters in place only (the optimiser holds them). Default: nothing."""

    def validation_loss(self, batch: dict[str, Any], outputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """The loss of one validation batch, a scalar: the mean over its items (the engine weighs each batch by its
        size, so the reported ``loss`` is the mean over the validation split). ``batch`` holds ``image`` and
        ``label`` only (the validation stream supplies no ``targets``); called in eval mode, under ``torch.no_grad``
        and the run's autocast. Default: cross-entropy of ``logits``. An override also sets
        :attr:`validation_loss_name`."""
        logits = outputs["logits"].float()
        return nn.functional.cross_entropy(logits, batch["label"].to(logits.device))

    def explain_maps(self, outputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Detector-specific localisation maps in [0,1], each (B,1,h,w) (predicted masks, CAM). Default: none."""
        return {}

    def pretrained_parts(self) -> dict[str, tuple[str, str | None]]:
        """Sub-modules the *trainer* initialises from pretrained weights besides ``model.pretrained`` (e.g. LAE's
        frozen VGG16 comparator): parameter-name prefix -> (constructor kwarg that names the weights, spec).
        Spec ``None`` = required but not given (the trainer stops and says how to get them); ``"none"`` = the
        explicit opt-out. Never loaded when a checkpoint is rebuilt (its safetensors hold these tensors already).
        Default: none."""
        return {}

    def load_pretrained_part(self, prefix: str, state_dict: dict[str, torch.Tensor]) -> dict[str, list[str]]:
        """Load resolved weights into the sub-module at ``prefix`` (one of :meth:`pretrained_parts`); returns the
        report of :func:`dflab.models.backbones.load_pretrained`. Default: strict, dropping an ImageNet head."""
        from dflab.models.backbones import load_pretrained

        target: nn.Module = self
        for part in [p for p in prefix.split(".") if p]:
            target = getattr(target, part)
        return load_pretrained(target, state_dict, allow_unexpected=("fc.", "classifier.", "head.", "pre_logits."))


DETECTORS: Registry[type[Detector]] = Registry("detector")
#: name -> (detector class name, kwargs) for registered variants, e.g. tiny ones. Filled by :func:`register_variant`.
VARIANTS: Registry[tuple[str, dict[str, Any]]] = Registry("detector variant")


def register_detector(name: str, *, tiny: dict[str, Any] | None = None):
    """Class decorator: register ``cls`` as ``name`` and, if given, a ``<name>_tiny`` variant with ``tiny`` kwargs.

    The tiny variant must run forward/backward at 64 px in well under a second; it is what the contract test uses.
    """

    def deco(cls: type[Detector]) -> type[Detector]:
        DETECTORS.add(name, cls)
        VARIANTS.add(name, (name, {}))
        if tiny is not None:
            VARIANTS.add(f"{name}_tiny", (name, dict(tiny)))
        cls.registry_name = name  # type: ignore[attr-defined]
        return cls

    return deco


def register_variant(name: str, detector: str, **kwargs: Any) -> None:
    """Register a named configuration of a detector (e.g. an ablation of a paper's table)."""
    VARIANTS.add(name, (detector, kwargs))


def build_detector(name: str, **overrides: Any) -> Detector:
    """Build a registered detector or variant by name; ``overrides`` update the variant's kwargs."""
    import dflab.models.detectors  # noqa: F401  (fills the registries)

    det_name, kwargs = VARIANTS.get(name)
    cls = DETECTORS.get(det_name)
    kw = copy.deepcopy({**kwargs, **overrides})
    # the class gets its own copy: timm edits nested config dicts in place (xception's block_cfg gains drop_path and
    # dilation keys), which must reach neither the registry's variant nor the card's kwargs
    model = cls(**copy.deepcopy(kw))
    model._config = {"detector": det_name, "kwargs": kw, "variant": name}
    return model
