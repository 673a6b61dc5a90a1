"""Explicit imports of every detector file; importing this fills ``DETECTORS`` and ``VARIANTS``."""

from dflab.models.detectors import (
    big_arts,  # noqa: F401  (BiG-Arts + Table 6 variants + big_arts_xray)
    capsule,  # noqa: F401  (Capsule-Forensics v2, VGG-19 + capsules)
    classifier,  # noqa: F401
    clip_probe,  # noqa: F401  (frozen CLIP ViT-B/16 + head: the default detector)
    dadd,  # noqa: F401
    face_xray,  # noqa: F401  (Face X-ray, HRNet)
    gend,  # noqa: F401  (CLIP ViT, LayerNorm-only tuning)
    gsrm,  # noqa: F401  (GSRM: two-stream Xception + SRM residuals)
    lae,  # noqa: F401
    lisiam,  # noqa: F401  (LiSiam + Table VI variants)
    meso,  # noqa: F401
    mml,  # noqa: F401
    rfm,  # noqa: F401  (RFM: Xception + FAM-guided erasing)
    spsl,  # noqa: F401  (SPSL: RGB + phase-only image, shallow Xception)
)
