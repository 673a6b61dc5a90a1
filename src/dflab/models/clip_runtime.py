"""The CLIP probe without torch: ONNX Runtime for the encoder, numpy for the head (what ``dflab scan`` runs).

:class:`~dflab.models.detectors.clip_probe.ClipProbe` is a torch module so that ``dflab train`` can fit its head like
any detector; at inference it is a frozen ONNX encoder (:mod:`dflab.models.clip`), a standardisation and a linear
layer (or a small MLP). Importing torch and timm for those took ~3 s of a ~2 s scan budget, so the scanner runs the
same computation here, from the same checkpoint (safetensors read as numpy arrays, card validated by
:func:`dflab.models.checkpoint.read_card`), and never imports torch. ``tests/models/test_clip_runtime.py`` checks that
logits, calibrated probabilities and patch maps equal the torch detector's.

Only the card kwargs this module knows are accepted (:func:`supports`); any other clip_probe configuration — a
feature added later, the tiny test encoder, another crop size — is loaded as the torch detector, which stays the
reference.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from dflab.errors import CheckpointError
from dflab.models.clip import CLIP_MEAN, CLIP_SIZE, CLIP_STD, shared_encoder, warm_encoder
from dflab.models.spec import InputSpec

DETECTOR = "clip_probe"
#: ClipProbe constructor kwargs this runtime reproduces (training-only ones have no effect at inference)
KNOWN_KWARGS = frozenset(
    {"blocks", "tokens", "hidden", "dropout", "encoder", "threads", "cache_size", "size", "margin", "align"}
)
TOKENS = ("cls", "mean")
BN_EPS = 1e-5  # torch.nn.BatchNorm1d's default, which ClipProbe's standardisation uses


def supports(card: Mapping[str, Any]) -> bool:
    """Whether this runtime computes exactly what the torch ``clip_probe`` of ``card`` computes."""
    kw = dict(card.get("kwargs") or {})
    spec = card.get("input_spec") or {}
    return (
        card.get("detector") == DETECTOR
        and set(kw) <= KNOWN_KWARGS
        and kw.get("encoder", "clip_onnx") == "clip_onnx"
        and int(kw.get("size", CLIP_SIZE)) == CLIP_SIZE
        and int(spec.get("size", CLIP_SIZE)) == CLIP_SIZE
        and bool(kw.get("tokens", TOKENS))
        and set(kw.get("tokens", TOKENS)) <= set(TOKENS)
    )


def _gelu(x: np.ndarray) -> np.ndarray:
    """torch.nn.GELU() (exact, erf form)."""
    erf = np.vectorize(math.erf, otypes=[np.float64])
    return (0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))).astype(np.float32)


class ClipProbeRuntime:
    """A ``clip_probe`` checkpoint as ONNX Runtime + numpy.

    Args:
        kwargs: the card's ClipProbe kwargs (see :func:`supports`).
        weights: the checkpoint's tensors by name (``norm.running_mean``, ``norm.running_var``, ``head.*``).
        spec: the card's input contract.

    Shape:
        ``__call__(images)``: (B, 3, 224, 224) float32 normalised with CLIP's mean/std -> {"logits": (B, 2),
        "patch_map": (B, 1, 14, 14) (linear head reading mean tokens only)}.
    """

    #: maps come from :meth:`explain_maps` (no gradient reaches the image)
    gradcam = False
    #: numpy in, numpy out (see :class:`dflab.scan.pipeline.Scorer`)
    array_io = True

    def __init__(self, kwargs: Mapping[str, Any], weights: Mapping[str, np.ndarray], spec: InputSpec) -> None:
        self.input_spec = spec
        self.blocks = tuple(int(b) for b in kwargs.get("blocks", (8, 9, 10, 11, 12)))
        self.tokens = tuple(kwargs.get("tokens", TOKENS))
        self.threads = kwargs.get("threads")
        self._config = {"detector": DETECTOR, "kwargs": dict(kwargs), "variant": DETECTOR}
        hidden = int(kwargs.get("hidden", 0))
        names = ["norm.running_mean", "norm.running_var"]
        names += ["head.weight", "head.bias"] if hidden <= 0 else ["head.0.weight", "head.0.bias", "head.2.weight",
                                                                    "head.2.bias"]  # fmt: skip
        extra = set(weights) - {*names, "norm.num_batches_tracked"}
        missing = [n for n in names if n not in weights]
        if missing or extra:
            raise CheckpointError(f"clip_probe weights: missing {missing}, unexpected {sorted(extra)[:8]}")
        w = {n: np.asarray(weights[n], np.float32) for n in names}
        bad = [n for n, v in w.items() if not np.isfinite(v).all()]
        if bad:
            raise CheckpointError(f"clip_probe weights: NaN/inf values in {bad}")
        self.mean = w["norm.running_mean"]
        self.inv_std = 1.0 / np.sqrt(w["norm.running_var"] + BN_EPS)
        self.width = len(self.mean) // (len(self.blocks) * len(self.tokens))
        if self.width * len(self.blocks) * len(self.tokens) != len(self.mean):
            raise CheckpointError(f"clip_probe weights: {len(self.mean)} features do not fit the card's blocks/tokens")
        self.layers = [(w[f"head{s}.weight"], w[f"head{s}.bias"]) for s in ([""] if hidden <= 0 else [".0", ".2"])]
        warm_encoder(self.blocks, self.threads)  # the ONNX session builds while the first frames are decoded

    def config(self) -> dict[str, Any]:
        return dict(self._config)

    def features(self, hidden: Mapping[int, np.ndarray]) -> np.ndarray:
        """(B, D): per block the class token and/or the mean patch token (ClipProbe._tokens)."""
        parts = [hidden[b][:, 0] if t == "cls" else hidden[b][:, 1:].mean(1) for b in self.blocks for t in self.tokens]
        return np.concatenate(parts, axis=1).astype(np.float32)

    def __call__(self, images: np.ndarray) -> dict[str, np.ndarray]:
        if images.ndim != 4 or images.shape[1:] != (3, CLIP_SIZE, CLIP_SIZE):
            raise ValueError(f"expected images of shape (B, 3, {CLIP_SIZE}, {CLIP_SIZE}), got {images.shape}")
        hidden = shared_encoder(self.blocks, self.threads)(np.ascontiguousarray(images, np.float32))
        z = (self.features(hidden) - self.mean) * self.inv_std
        for i, (weight, bias) in enumerate(self.layers):
            z = z @ weight.T + bias
            if i < len(self.layers) - 1:
                z = _gelu(z)
        out = {"logits": z.astype(np.float32)}
        if "mean" in self.tokens and len(self.layers) == 1:
            out["patch_map"] = self._patch_map(hidden)
        return out

    def _patch_map(self, hidden: Mapping[int, np.ndarray]) -> np.ndarray:
        """Each patch's contribution to the (fake − real) logit through the mean-patch features
        (ClipProbe._patch_map). Shape: -> (B, 1, g, g)."""
        weight = self.layers[0][0]
        w = weight[1] - weight[0]
        contrib = None
        for i, b in enumerate(self.blocks):
            j = (i * len(self.tokens) + self.tokens.index("mean")) * self.width
            sl = slice(j, j + self.width)
            c = ((hidden[b][:, 1:] - self.mean[sl]) * self.inv_std[sl]) @ w[sl]
            contrib = c if contrib is None else contrib + c
        assert contrib is not None
        g = round(math.sqrt(contrib.shape[1]))
        return (contrib / contrib.shape[1]).reshape(-1, 1, g, g).astype(np.float32)

    def explain_maps(self, outputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Where the fake evidence is: the positive part of the per-patch contribution."""
        if "patch_map" not in outputs:
            return {}
        return {"patch_evidence": np.maximum(outputs["patch_map"], 0.0)}


def load_runtime(path: str | Path, card: Mapping[str, Any] | None = None) -> tuple[ClipProbeRuntime, InputSpec, dict]:
    """A ``clip_probe`` checkpoint as a :class:`ClipProbeRuntime`, with the checks of
    :func:`dflab.models.checkpoint.load_detector` (validated card, weights beside it from the same save, exact
    tensor names, finite values).

    Raises:
        CheckpointError: an unusable checkpoint, or one this runtime does not reproduce (see :func:`supports`).
    """
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    from dflab.models.checkpoint import _paths, check_pair, read_card, settled_dir, weights_metadata

    card = dict(card or read_card(path))
    if not supports(card):
        raise CheckpointError(f"checkpoint {path}: not a configuration the ONNX runtime reproduces")
    p = Path(path)
    weights, _ = _paths(settled_dir(p) if p.suffix == "" else p)
    check_pair(card, weights_metadata(weights), path)
    try:
        tensors = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {weights}: {exc}") from None
    default = InputSpec(size=CLIP_SIZE, margin=1.3, align="box", mean=CLIP_MEAN, std=CLIP_STD)
    spec = InputSpec.from_card(card.get("input_spec"), default)
    return ClipProbeRuntime(card.get("kwargs") or {}, tensors, spec), spec, card
