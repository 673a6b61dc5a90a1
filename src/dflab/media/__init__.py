"""Media decoding: images (EXIF, any pixel format → RGB uint8) and videos (PyAV, sampled with seeking)."""

from dflab.media.image import MAX_PIXELS, read_image, to_rgb_uint8
from dflab.media.video import (
    IMAGE_EXTS,
    VIDEO_EXTS,
    MediaInfo,
    iter_frames,
    probe,
    sample_indices,
    sniff,
    write_video,
)

__all__ = [
    "IMAGE_EXTS",
    "MAX_PIXELS",
    "VIDEO_EXTS",
    "MediaInfo",
    "iter_frames",
    "probe",
    "read_image",
    "sample_indices",
    "sniff",
    "to_rgb_uint8",
    "write_video",
]
