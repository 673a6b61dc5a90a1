"""Grad-CAM (Selvaraju et al., cited as [40] in BiG-Arts, [32] in LAE, [59] in LiSiam) for any dflab detector.

BiG-Arts Fig. 6, LAE Fig. 3 (baselines) and LiSiam Figs. 7–8 visualise the attention of the fake class with
Grad-CAM on the last convolutional stage: the feature map A of a layer weighted by the spatial mean of
∂ logit_fake / ∂ A per channel, summed over channels, ReLU, scaled to [0, 1] and resized to the input (Selvaraju et
al. 2017, Eq. 1–2). It is computed here in a few lines with one ``torch.autograd.grad`` call; the result equals
pytorch-grad-cam's ``GradCAM`` with ``ClassifierOutputTarget(1)`` (tested against it), without importing that
package, which pulls in scikit-learn and torchvision and cost the scanner seconds of start-up.

Target layer: a detector may name it with a ``cam_layer`` attribute (a dotted module path such as
``"backbone.layer4"``, or the module itself). Otherwise :func:`cam_layer_of` picks the *last module to finish, in
execution order, whose output is a spatial map (B, C, H, W) with H, W > 1 that the fake logit depends on* — found
with one forward pass and autograd. That is the last convolutional stage (e.g. a ResNet's ``layer4``, after the
residual sum, rather than its shortcut convolution), and a segmentation decoder that runs after the encoder but does
not feed the classifier (BiG-Arts, LiSiam) is not taken.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from dflab.models.base import Detector


def _resolve(model: nn.Module, ref: str | nn.Module) -> nn.Module:
    if isinstance(ref, nn.Module):
        return ref
    mod = model
    for part in ref.split("."):
        if not hasattr(mod, part):
            raise AttributeError(f"{type(model).__name__}.cam_layer {ref!r}: no submodule {part!r}")
        mod = getattr(mod, part)
    if not isinstance(mod, nn.Module):
        raise TypeError(f"cam_layer {ref!r} is not a module")
    return mod


def cam_layer_of(model: Detector, example: torch.Tensor | None = None) -> nn.Module:
    """The module Grad-CAM hooks: ``model.cam_layer`` if set, else the last spatial map the fake logit depends on.

    Shape:
        example: (B, 3, H, W) input used to trace execution order; defaults to one seeded random image at the spec
        size.
    """
    ref = getattr(model, "cam_layer", None)
    if ref is not None:
        return _resolve(model, ref)
    if example is None:
        s = model.input_spec.size
        gen = torch.Generator().manual_seed(0)
        example = torch.randn(1, 3, s, s, generator=gen).to(next(model.parameters()).device)
    order: list[tuple[nn.Module, torch.Tensor]] = []

    def hook(mod: nn.Module, _inp: tuple, out: torch.Tensor) -> None:
        if isinstance(out, torch.Tensor) and out.dim() == 4 and min(out.shape[-2:]) > 1 and out.requires_grad:
            order.append((mod, out))

    handles = [m.register_forward_hook(hook) for m in model.modules() if m is not model]
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            x = example.detach().clone().requires_grad_(True)
            logit = model(x)["logits"][:, 1].sum()
            grads = torch.autograd.grad(logit, [o for _, o in order], allow_unused=True)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    for (mod, _), g in zip(reversed(order), reversed(grads), strict=True):
        if g is not None and bool(g.abs().sum() > 0):
            return mod
    raise ValueError(f"{type(model).__name__}: no spatial feature map feeds the logits; set a cam_layer attribute")


def gradcam(
    model: Detector,
    images: torch.Tensor,
    *,
    target_class: int = 1,
    layer: str | nn.Module | None = None,
) -> np.ndarray:
    """Grad-CAM maps of ``target_class`` (1 = fake), each scaled to [0, 1] and resized to the input size.

    Shape:
        images (B, 3, H, W) normalised as the detector expects; returns (B, H, W) float32.
    """
    import cv2

    was_training = model.training
    model.eval()
    target = _resolve(model, layer) if layer is not None else cam_layer_of(model, images[:1])
    seen: list[torch.Tensor] = []
    handle = target.register_forward_hook(lambda _m, _i, out: seen.append(out))
    try:
        with torch.enable_grad():
            x = images.detach().clone().requires_grad_(True)  # gradients flow even through a frozen detector
            logit = model(x)["logits"][:, target_class].sum()
            act = seen[-1]
            (grad,) = torch.autograd.grad(logit, [act])
    finally:
        handle.remove()
        model.train(was_training)
    weights = grad.mean(dim=(2, 3), keepdim=True)
    cams = torch.relu((weights * act.detach()).sum(dim=1)).cpu().numpy()
    h, w = images.shape[-2:]
    # pytorch-grad-cam's order: scale to [0, 1], resize (bilinear), and scale again
    return np.stack([_scale01(cv2.resize(_scale01(c), (w, h))) for c in cams]).astype(np.float32)


def _scale01(cam: np.ndarray) -> np.ndarray:
    cam = cam - cam.min()
    return cam / (1e-7 + cam.max())


@torch.no_grad()
def detector_maps(model: Detector, images: torch.Tensor) -> dict[str, np.ndarray]:
    """The detector's own localisation maps (LAE CAM attention, BiG-Arts M_in/M_ex, LiSiam mask), input-sized.

    Shape:
        images (B, 3, H, W); returns name -> (B, H, W) float32 in [0, 1].
    """
    was_training = model.training
    model.eval()
    try:
        maps = model.explain_maps(model(images))
    finally:
        model.train(was_training)
    out = {}
    for name, m in maps.items():
        m = m.float()
        if m.dim() == 3:
            m = m[:, None]
        m = torch.nn.functional.interpolate(m[:, :1], size=images.shape[-2:], mode="bilinear", align_corners=False)
        out[name] = m[:, 0].clamp(0, 1).cpu().numpy()
    return out
