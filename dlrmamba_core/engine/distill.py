"""The distillation task the trainer runs: student + frozen teacher + Structure-Aware
Distillation losses (``losses.distill``, where the terms and the state alignment are documented).

``L = w_task L_task + w_svd L_SVD + w_state L_state + w_feat L_feat`` (paper weights
1.0 / 0.5 / 0.1 / 1.5; any weight may be 0 to switch that term off for ablations).
"""

from __future__ import annotations

import torch
from torch import nn

from dlrmamba_core.engine.config import DistillWeights
from dlrmamba_core.engine.evaluate import blank_modality
from dlrmamba_core.losses.distill import StructureAwareDistillation

__all__ = ["DistillTask", "DistillWeights"]


class DistillTask(nn.Module):
    """Student + frozen teacher + SAD losses; ``forward`` -> ``(loss, parts)``.

    Submodules: ``detector`` (the student: trained, tracked by the EMA), ``teacher`` (frozen:
    ``requires_grad`` off, kept in eval mode by :meth:`train`; saved in the training state
    with the rest, so a resumed run distills from the same teacher), ``sad`` (the SVD targets
    and the learned state projections) and ``criterion`` (the detection loss).

    Args:
        student: a low-rank detector built by ``models.student_from_teacher(teacher, ...)``.
        teacher: the trained full-rank detector.
        weights: loss weights.
        modality: "fused", "rgb" or "thermal".
    """

    def __init__(self, student: nn.Module, teacher: nn.Module, weights: DistillWeights,
                 modality: str = "fused") -> None:
        super().__init__()
        from dlrmamba_core.losses import DetectionLoss

        for p in teacher.parameters():
            p.requires_grad_(False)
        self.detector = student
        self.teacher = teacher.eval()
        self.weights = weights
        self.modality = modality
        self.criterion = DetectionLoss(student)
        self.sad = StructureAwareDistillation(student, teacher)

    def train(self, mode: bool = True) -> DistillTask:
        """Set train mode on the student; the teacher stays in eval mode (frozen norms)."""
        super().train(mode)
        self.teacher.eval()
        return self

    def forward(self, rgb: torch.Tensor, thermal: torch.Tensor, targets: torch.Tensor
                ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """rgb (B,3,H,W), thermal (B,1,H,W), targets (M,6) -> (weighted loss, parts).

        ``parts`` holds the unweighted, detached ``task``, ``svd``, ``state`` and ``feat``
        losses (0 for a term whose weight is 0).
        """
        w = self.weights
        rgb, thermal = blank_modality(rgb, thermal, self.modality)
        preds, sad = self.sad(self.detector, self.teacher, rgb, thermal,
                              svd=w.svd > 0, state=w.state > 0, feat=w.feat > 0)
        with torch.autocast(device_type=rgb.device.type, enabled=False):
            task, _ = self.criterion([p.float() for p in preds], targets)
            loss = (w.task * task + w.svd * sad["svd"] + w.state * sad["state"]
                    + w.feat * sad["feat"])
        parts = {"task": task.detach(), **{k: v.detach() for k, v in sad.items()}}
        return loss, parts
