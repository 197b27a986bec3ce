"""Training losses: detection (``detection``) and Structure-Aware Distillation (``distill``)."""

from dlrmamba_core.losses.detection import (
    DetectionLoss,
    TaskAlignedAssigner,
    box_iou_pairwise,
    ciou,
    targets_to_padded,
)

__all__ = [
    "DetectionLoss",
    "TaskAlignedAssigner",
    "box_iou_pairwise",
    "ciou",
    "targets_to_padded",
]
