"""Synthetic manifests for the engine's tests: small crops whose label is learnable (a fake carries a bright patch)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from dflab.data.manifest import FaceRow, Manifest, VideoRecord
from dflab.synthesis.base import SYNTHESIZERS, FaceSample, Params, SynthResult


def template_landmarks(size: int) -> np.ndarray:
    """A plausible 68-point layout (jaw arc, brows, nose, eyes, mouth) scaled to a ``size`` crop."""
    pts = []
    for t in np.linspace(np.pi * 0.05, np.pi * 0.95, 17):  # jaw 0-16
        pts.append((0.5 - 0.38 * np.cos(t), 0.45 + 0.42 * np.sin(t)))
    pts += [(0.2 + 0.04 * i, 0.32 - 0.02 * np.sin(i)) for i in range(5)]  # brows 17-26
    pts += [(0.6 + 0.04 * i, 0.30 + 0.02 * np.sin(i)) for i in range(5)]
    pts += [(0.5, 0.38 + 0.05 * i) for i in range(4)]  # nose 27-35
    pts += [(0.42 + 0.04 * i, 0.6) for i in range(5)]
    for cx in (0.32, 0.68):  # eyes 36-47
        pts += [(cx + 0.06 * np.cos(a), 0.42 + 0.03 * np.sin(a)) for a in np.linspace(0, 2 * np.pi, 6, endpoint=False)]
    pts += [(0.5 + 0.15 * np.cos(a), 0.74 + 0.06 * np.sin(a)) for a in np.linspace(0, 2 * np.pi, 12, endpoint=False)]
    pts += [(0.5 + 0.09 * np.cos(a), 0.74 + 0.03 * np.sin(a)) for a in np.linspace(0, 2 * np.pi, 8, endpoint=False)]
    arr = np.asarray(pts, np.float32) * size
    assert arr.shape == (68, 2)
    return arr


def _crop(rng: np.random.Generator, size: int, fake: bool) -> np.ndarray:
    base = cv2.resize(rng.integers(60, 200, (6, 6, 3), dtype=np.uint8), (size, size), interpolation=cv2.INTER_CUBIC)
    img = np.clip(base.astype(np.int16) + rng.integers(-10, 10, base.shape), 0, 255).astype(np.uint8)
    if fake:
        s = size // 4
        img[s : 3 * s, s : 3 * s] = 255
    return img


def build_manifest(
    root: Path,
    *,
    videos: dict[str, tuple[int, str]],
    frames: int = 4,
    size: int = 48,
    seed: int = 0,
    dataset: str = "synthetic",
) -> Path:
    """``videos``: video id -> (label, split). Writes crops + ``manifest.sqlite`` under ``root``."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    lm = template_landmarks(size).tolist()
    with Manifest(root) as m:
        for vid, (label, split) in videos.items():
            rows = []
            for f in range(frames):
                rel = f"crops/{vid}/{f:04d}.png"
                (root / rel).parent.mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(root / rel), cv2.cvtColor(_crop(rng, size, bool(label)), cv2.COLOR_RGB2BGR))
                rows.append(
                    FaceRow(
                        dataset=dataset, video_id=vid, frame_index=f, track_id=0, label=label,
                        method="synthetic" if label else "real", split=split, compression="", crop_path=rel,
                        box=[0, 0, size, size], det_box=[0, 0, size, size], landmarks=lm, identity=f"id_{vid}",
                        crop_size=size,
                    )
                )  # fmt: skip
            rec = VideoRecord(dataset=dataset, video_id=vid, path=str(root / vid), label=label, split=split)
            m.commit_video(rec, rows, n_frames=frames)
    return root / "manifest.sqlite"


@pytest.fixture
def supervised_manifest(tmp_path: Path) -> Path:
    vids = {f"r{i}": (0, "train") for i in range(4)} | {f"f{i}": (1, "train") for i in range(3)}
    vids |= {"rv0": (0, "val"), "rv1": (0, "val"), "fv0": (1, "val"), "fv1": (1, "val")}
    return build_manifest(tmp_path / "prep", videos=vids, frames=4)


class PatchParams(Params):
    method = "test_patch"


class PatchSynth:
    """A trivial test synthesizer: paints a bright square at a random place (its own mask is the square)."""

    name = "test_patch"

    def sample_params(self, rng, face, pool=None, **kw):
        p = PatchParams()
        p.xy = [int(rng.integers(0, face.image.shape[1] // 2)), int(rng.integers(0, face.image.shape[0] // 2))]
        return p

    def apply(self, face: FaceSample, params, pool=None) -> SynthResult:
        img = face.image.copy()
        h, w = img.shape[:2]
        x, y = params.xy
        mask = np.zeros((h, w), np.float32)
        mask[y : y + h // 2, x : x + w // 2] = 1.0
        img[mask > 0] = 255
        return SynthResult(image=img, mask=mask, label=1, params=params)


@pytest.fixture(scope="package", autouse=True)
def _test_synth():
    """``test_patch`` is registered for the tests of this package only: tests elsewhere check the registry's exact
    contents (``tests/synthesis/test_generators.py``), whatever order the suite runs in."""
    import dflab.synthesis  # noqa: F401

    SYNTHESIZERS.add("test_patch", PatchSynth())
    yield
    SYNTHESIZERS.remove("test_patch")
