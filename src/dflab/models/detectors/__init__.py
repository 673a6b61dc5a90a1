"""Explicit imports of every detector file; importing this fills ``DETECTORS`` and ``VARIANTS``."""

from dflab.models.detectors import (
    big_arts,  # noqa: F401  (BiG-Arts + Table 6 variants + big_arts_xray)
    capsule,  # noqa: F401  (Capsule-Forensics v2, VGG-19 + capsules)
    classifier,  # noqa: F401
    clip_probe,  # noqa: F401  (frozen CLIP ViT-B/16 + head: the default detector)
    dadd,  # noqa: F401
    face_xray,  # noqa: F401  (Face X-ray, HRNet)
    forensic_transfer,  # noqa: F401  (ForensicTransfer: autoencoder, activation loss; LAE Table 3)
    gend,  # noqa: F401  (CLIP ViT, LayerNorm-only tuning)
    gsrm,  # noqa: F401  (GSRM: two-stream Xception + SRM residuals)
    lae,  # noqa: F401
    lisiam,  # noqa: F401  (LiSiam + Table VI variants)
    meso,  # noqa: F401
    mml,  # noqa: F401
    residualnet,  # noqa: F401  (residual co-occurrence descriptor as a CNN; LAE Table 3)
    rfm,  # noqa: F401  (RFM: Xception + FAM-guided erasing)
    spsl,  # noqa: F401  (SPSL: RGB + phase-only image, shallow Xception)
    statsnet,  # noqa: F401  (StatsNet: Rahmouni et al.'s Stats-2L, LAE Table 3)
    suppressnet,  # noqa: F401  (SuppressNet: Bayar & Stamm's constrained CNN, LAE Table 3)
)
