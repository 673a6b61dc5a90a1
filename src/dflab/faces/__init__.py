"""Faces: detection with 68 landmarks (dlib, weights shipped in a package), tracking, FF++-style crops."""

from dflab.faces.align import CropResult, crop_box, crop_face, square_box, transform_points
from dflab.faces.detect import BACKENDS, N_LANDMARKS, DetectedFace, FaceDetector, model_file
from dflab.faces.pipeline import Event, FaceCrop, Sampling, extract_faces
from dflab.faces.track import box_iou, track_faces

__all__ = [
    "BACKENDS",
    "N_LANDMARKS",
    "CropResult",
    "DetectedFace",
    "Event",
    "FaceCrop",
    "FaceDetector",
    "Sampling",
    "box_iou",
    "crop_box",
    "crop_face",
    "extract_faces",
    "model_file",
    "square_box",
    "track_faces",
    "transform_points",
]
