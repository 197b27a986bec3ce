"""Training losses: detection (``detection``), instance segmentation (``segment``),
Structure-Aware Distillation (``distill``) and RS4D adaptive noise + masking feature
distillation (``rs4d``)."""

from dlrmamba_core.losses.detection import (
    Assignment,
    DetectionLoss,
    TaskAlignedAssigner,
    box_iou_pairwise,
    ciou,
    padded_rows,
    targets_to_padded,
)
from dlrmamba_core.losses.segment import SegmentLoss, instance_mask_loss

__all__ = [
    "Assignment",
    "DetectionLoss",
    "SegmentLoss",
    "TaskAlignedAssigner",
    "box_iou_pairwise",
    "ciou",
    "instance_mask_loss",
    "padded_rows",
    "targets_to_padded",
]
