"""Explanations: Grad-CAM for any detector, detector maps (LAE CAM, BiG-Arts / LiSiam predicted masks), overlays on
the face and on the original frame, t-SNE of embeddings, averaged faces and maps per dataset."""

from dflab.explain.average import average_by_group
from dflab.explain.gradcam import cam_layer_of, detector_maps, gradcam
from dflab.explain.overlay import box_matrix, heat_to_frame, overlay
from dflab.explain.tsne import plot_tsne, tsne

__all__ = [
    "average_by_group",
    "box_matrix",
    "cam_layer_of",
    "detector_maps",
    "gradcam",
    "heat_to_frame",
    "overlay",
    "plot_tsne",
    "tsne",
]
