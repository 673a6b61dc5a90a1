"""Faces: detection (YuNet or dlib) with 68 landmarks (weights shipped in packages), tracking, FF++-style crops."""

from dflab.faces.align import CropResult, crop_box, crop_face, square_box, transform_points
from dflab.faces.detect import (
    BACKENDS,
    DEFAULT_BACKEND,
    N_LANDMARKS,
    DetectedFace,
    FaceDetector,
    model_file,
    one_opencv_thread,
    yunet_model_file,
)
from dflab.faces.pipeline import Event, FaceCrop, FoundFaces, Sampling, extract_faces, find_faces
from dflab.faces.track import box_iou, track_faces

__all__ = [
    "BACKENDS",
    "DEFAULT_BACKEND",
    "N_LANDMARKS",
    "CropResult",
    "DetectedFace",
    "Event",
    "FaceCrop",
    "FaceDetector",
    "FoundFaces",
    "Sampling",
    "box_iou",
    "crop_box",
    "crop_face",
    "extract_faces",
    "find_faces",
    "model_file",
    "one_opencv_thread",
    "square_box",
    "track_faces",
    "transform_points",
    "yunet_model_file",
]
