"""Training losses: detection (``detection``), Structure-Aware Distillation (``distill``) and
RS4D adaptive noise + masking feature distillation (``rs4d``)."""

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
