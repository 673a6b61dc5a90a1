"""``dflab demo`` (``make demo``): scan an embedded default — scikit-image's astronaut photo and a forgery of it
synthesised here — with the shipped detector, write the HTML/JSON/CSV report and print what was found.

Nothing is downloaded: the photo ships with scikit-image, the weights with dflab (``dflab/weights``). The forgery
is a self-blended face (Shiohara & Yamasaki, CVPR 2022, the blending family the five papers' synthetic fakes
belong to): the face inside its landmark hull is colour-shifted, slightly rescaled and sharpened, then blended back
through a feathered hull mask, leaving the blending boundary and colour mismatch a forgery leaves.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from dflab.errors import CheckpointError


def self_blend(rgb: np.ndarray, landmarks: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Self-blended forgery of one face.

    Args:
        rgb: the photo.
        landmarks: (68, 2) iBUG points of the face in image px.
        rng: the only source of randomness.

    Returns:
        (forgery, mask) with mask the blending weight in [0, 1].

    Shape:
        rgb (H, W, 3) uint8 → forgery (H, W, 3) uint8, mask (H, W) float32.
    """
    import cv2

    h, w = rgb.shape[:2]
    hull = cv2.convexHull(landmarks.astype(np.int32))
    mask = np.zeros((h, w), np.float32)
    cv2.fillConvexPoly(mask, hull, 1.0)
    x0, y0, bw, bh = cv2.boundingRect(hull)
    k = max(3, int(0.08 * max(bw, bh)) | 1)
    mask = cv2.erode(mask, np.ones((k // 2 + 1, k // 2 + 1), np.uint8))
    mask = np.clip(cv2.GaussianBlur(mask, (k, k), 0), 0.0, 1.0)
    src = rgb.astype(np.float32)
    src = src * rng.uniform(0.85, 0.95, size=3) + rng.uniform(8, 20, size=3)  # colour/brightness mismatch
    scale = rng.uniform(1.03, 1.07)
    cx, cy = x0 + bw / 2, y0 + bh / 2
    m = np.array([[scale, 0, cx * (1 - scale)], [0, scale, cy * (1 - scale)]], np.float32)
    src = cv2.warpAffine(src, m, (w, h), borderMode=cv2.BORDER_REFLECT)
    blur = cv2.GaussianBlur(src, (0, 0), 1.5)
    src = src + 0.8 * (src - blur)  # sharpening: a frequency mismatch at the boundary
    out = src * mask[..., None] + rgb.astype(np.float32) * (1 - mask[..., None])
    return out.clip(0, 255).astype(np.uint8), mask


def make_demo_inputs(out: Path, seed: int = 0) -> list[Path]:
    """Write ``astronaut.png`` (real) and ``astronaut_forgery.png`` (self-blended) under ``out``."""
    import cv2
    from skimage import data

    from dflab.faces import FaceDetector

    out.mkdir(parents=True, exist_ok=True)
    rgb = data.astronaut()
    faces = FaceDetector(backend="dlib").detect(rgb)
    if not faces:
        raise RuntimeError("the face detector found no face in the astronaut photo")
    face = max(faces, key=lambda f: (f.box[2] - f.box[0]) * (f.box[3] - f.box[1]))
    fake, mask = self_blend(rgb, np.asarray(face.landmarks, np.float32), np.random.default_rng(seed))
    real_p, fake_p = out / "astronaut.png", out / "astronaut_forgery.png"
    cv2.imwrite(str(real_p), rgb[:, :, ::-1])
    cv2.imwrite(str(fake_p), fake[:, :, ::-1])
    cv2.imwrite(str(out / "astronaut_forgery_mask.png"), (mask * 255).astype(np.uint8))
    return [real_p, fake_p]


def _untrained_stand_in():
    """A seeded, untrained tiny detector so the demo's plumbing still runs when no weights are installed."""
    import torch

    from dflab.models.base import build_detector
    from dflab.scan.pipeline import scorer_from_model

    torch.manual_seed(0)
    return scorer_from_model(build_detector("lisiam_tiny"), {"summary": "UNTRAINED stand-in"}, name="untrained")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="demo_out", help="folder for the inputs and the report")
    parser.add_argument("--detector", action="append", help="checkpoint(s) instead of the shipped default")
    parser.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    from dflab.scan.cli import load_scorers, scan_paths, summary_line, write_outputs
    from dflab.scan.pipeline import ScanOptions

    out = Path(args.out)
    try:
        scorers = load_scorers(args.detector, ensemble=False)
    except CheckpointError as exc:
        if args.detector:
            print(f"dflab demo: {exc}", file=sys.stderr)
            return 2
        scorers = [_untrained_stand_in()]
        print(
            f"dflab demo: WARNING {exc}\n  using an UNTRAINED lisiam_tiny: the scores below mean nothing",
            file=sys.stderr,
        )
    inputs = make_demo_inputs(out / "inputs", seed=args.seed)
    results = scan_paths(inputs, scorers, ScanOptions(), progress=False)
    card = scorers[0].card
    meta = {"detector": scorers[0].name, "cards": [card]}
    written = write_outputs(results, out, ["json", "csv", "html"], meta, scorers)
    print(f"detector: {scorers[0].name} — {card.get('summary', 'no card summary')}")
    for r in results:
        print("  " + summary_line(r.record))
    print(f"report: {written['html']}")
    return 0
