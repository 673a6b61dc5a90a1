"""dflab — deepfake detection framework.

The package layout follows the data's path: ``media`` (decoding) → ``faces`` (detection, landmarks, alignment)
→ ``data`` (dataset adapters, manifests) → ``synthesis`` (training fakes and masks) → ``models``/``losses``
(detectors) → ``train`` → ``eval``/``explain`` → ``scan``/``serve`` (the analyst's tools).
"""

from __future__ import annotations

import os

# No hub or update checks anywhere: dflab loads weights from local files only.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

__version__ = "0.1.0"


def load_detector(path, device="cpu"):
    """Rebuild a detector and its input transform from a safetensors checkpoint and its JSON card.

    See :func:`dflab.models.checkpoint.load_detector`.
    """
    from dflab.models.checkpoint import load_detector as _load

    return _load(path, device=device)


__all__ = ["__version__", "load_detector"]
