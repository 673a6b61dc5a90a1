"""``dflab demo`` (``make demo``): scan an embedded default — scikit-image's astronaut photo and a forgery of it
synthesised here — with the shipped detector, write the HTML/JSON/CSV report and print what was found.

Nothing is downloaded: the photo ships with scikit-image, the weights with dflab (``dflab/weights``). The forgery
is a self-blended face made by dflab's own SBI synthesizer (Shiohara & Yamasaki, CVPR 2022, the blending family
the five papers' synthetic fakes belong to): the face is colour/frequency-shifted, slightly moved and blended back
through a deformed, feathered hull mask, leaving the blending boundary and colour mismatch a forgery leaves. It is
the kind of fake the default detector's synthetic training half is made of, so the demo shows that the pipeline
works end to end, not how well the detector generalises (the README's table and the card's LOSO numbers do).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from dflab.errors import CheckpointError


def self_blend(rgb: np.ndarray, landmarks: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Self-blended forgery of one face, made by dflab's SBI synthesizer (:mod:`dflab.synthesis.sbi`).

    SBI works on face crops (its blur and shift ranges are stated for a 256 px crop of a 1.3× box), so the face's
    1.3× square window is cut at the photo's own resolution, blended, and pasted back. The colour/frequency
    transforms go to the source copy (the face), so that only the face changes and the paste leaves no seam; every
    other choice is SBI's own random draw from ``rng``.

    Args:
        rgb: the photo.
        landmarks: (68, 2) iBUG points of the face in image px.
        rng: the only source of randomness.

    Returns:
        (forgery, mask) with mask the blending weight in [0, 1].

    Shape:
        rgb (H, W, 3) uint8 → forgery (H, W, 3) uint8, mask (H, W) float32.
    """
    import dataclasses

    from dflab.faces.align import crop_box, square_box, transform_points
    from dflab.synthesis import SYNTHESIZERS, FaceSample

    lm = np.asarray(landmarks, np.float32)
    box = square_box((*lm.min(0), *lm.max(0)), margin=1.3)
    side = int(box[2] - box[0])
    crop = crop_box(rgb, box, size=side)
    face = FaceSample(image=crop.image, landmarks=transform_points(lm, crop.matrix))
    sbi = SYNTHESIZERS.get("sbi")
    params = dataclasses.replace(sbi.sample_params(rng, face), transform_source=True)
    result = sbi.apply(face, params)
    out, mask = rgb.copy(), np.zeros(rgb.shape[:2], np.float32)
    x0, y0 = int(box[0]), int(box[1])
    fx0, fy0 = max(0, x0), max(0, y0)
    fx1, fy1 = min(rgb.shape[1], x0 + side), min(rgb.shape[0], y0 + side)
    out[fy0:fy1, fx0:fx1] = result.image[fy0 - y0 : fy1 - y0, fx0 - x0 : fx1 - x0]
    mask[fy0:fy1, fx0:fx1] = np.clip(result.mask[fy0 - y0 : fy1 - y0, fx0 - x0 : fx1 - x0], 0.0, 1.0)
    return out, mask


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
