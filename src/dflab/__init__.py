"""dflab — deepfake detection framework.

The package layout follows the data's path: ``media`` (decoding) → ``faces`` (detection, landmarks, alignment)
→ ``data`` (dataset adapters, manifests) → ``synthesis`` (training fakes and masks) → ``models``/``losses``
(detectors) → ``train`` → ``eval``/``explain`` → ``scan``/``serve`` (the analyst's tools).
"""

from __future__ import annotations

import os

# albumentations' version check on import is noise for every user. Hub access is *not* switched off here: an online
# researcher gets timm's ImageNet weights (paper recipes ask for them); the Makefile, tests and CI set HF_HUB_OFFLINE.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

__version__ = "0.1.0"


def load_detector(path, device="cpu"):
    """Rebuild a detector and its input transform from a safetensors checkpoint and its JSON card.

    See :func:`dflab.models.checkpoint.load_detector`.
    """
    from dflab.models.checkpoint import load_detector as _load

    return _load(path, device=device)


__all__ = ["__version__", "load_detector"]
