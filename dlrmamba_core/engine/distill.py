"""The distillation task the trainer runs: student + frozen teacher + the losses of one method.

* ``method="sad"``, Structure-Aware Distillation (``losses.distill``, where the terms and the
  state alignment are documented): ``L = w_task L_task + w_svd L_SVD + w_state L_state +
  w_feat L_feat`` (paper weights 1.0 / 0.5 / 0.1 / 1.5).
* ``method="rs4d"``, adaptive noise + masking feature distillation (``losses.rs4d``):
  ``L = w_task L_task + w_rs4d L_rs4d``, the task loss on the clean input, ``L_rs4d`` the
  reconstruction of the teacher's clean P3-P5 features from a masked, noised input.

Any weight may be 0 to switch that term off for ablations.
"""

from __future__ import annotations

import torch
from torch import nn

from dlrmamba_core.engine.config import (
    DISTILL_METHODS,
    DistillMethod,
    DistillWeights,
    RS4DConfig,
)
from dlrmamba_core.engine.evaluate import blank_modality
from dlrmamba_core.errors import ConfigError
from dlrmamba_core.losses.distill import StructureAwareDistillation
from dlrmamba_core.losses.rs4d import AdaptiveMaskedDistillation

__all__ = ["DistillTask", "DistillWeights", "RS4DConfig"]


class DistillTask(nn.Module):
    """Student + frozen teacher + distillation losses; ``forward`` -> ``(loss, parts)``.

    Submodules: ``detector`` (the student: trained, tracked by the EMA), ``teacher`` (frozen:
    ``requires_grad`` off, kept in eval mode by :meth:`train`; saved in the training state
    with the rest, so a resumed run distills from the same teacher), ``criterion`` (the
    detection loss) and the method's own module: ``sad`` (the SVD targets and the learned
    state projections) or ``rs4d`` (the per-level projections and the adaptive difficulty).

    Args:
        student: for "sad", a low-rank detector built by
            ``models.student_from_teacher(teacher, ...)``; for "rs4d", any detector of the
            registry taking the same input size.
        teacher: the trained detector.
        weights: loss weights (the method's terms and ``task``; the others are unused).
        modality: "fused", "rgb" or "thermal".
        method: "sad" or "rs4d".
        rs4d: RS4D settings (default ``RS4DConfig()``; unused by "sad").
        terms_epochs: "sad" only: the structural terms in the first N epochs only (see
            :meth:`set_epoch`); None: in every epoch.

    Raises:
        ConfigError: unknown method, or a student that does not fit the method.
    """

    def __init__(self, student: nn.Module, teacher: nn.Module, weights: DistillWeights,
                 modality: str = "fused", method: DistillMethod = "sad",
                 rs4d: RS4DConfig | None = None, terms_epochs: int | None = None) -> None:
        super().__init__()
        from dlrmamba_core.losses import DetectionLoss

        if method not in DISTILL_METHODS:
            raise ConfigError(f"distillation method must be one of {DISTILL_METHODS}, got "
                              f"{method!r}")
        for p in teacher.parameters():
            p.requires_grad_(False)
        self.detector = student
        self.teacher = teacher.eval()
        self.weights = weights
        self.modality = modality
        self.method = method
        self.criterion = DetectionLoss(student)
        if terms_epochs is not None and method != "sad":
            raise ConfigError("terms_epochs applies to SAD's structural terms only")
        self.terms_epochs = terms_epochs
        self.terms_on = True
        if method == "sad":
            self.sad = StructureAwareDistillation(student, teacher)
        else:
            self.rs4d = AdaptiveMaskedDistillation(student, teacher, rs4d or RS4DConfig())

    def train(self, mode: bool = True) -> DistillTask:
        """Set train mode on the student; the teacher stays in eval mode (frozen norms)."""
        super().train(mode)
        self.teacher.eval()
        return self

    def set_epoch(self, epoch: int) -> None:
        """Called by the trainer before each epoch (0-based; a resumed run calls it with the
        epoch it resumes in): switches SAD's structural terms off from epoch ``terms_epochs``
        on. Off, a step runs the student alone, as a task-only step does."""
        self.terms_on = self.terms_epochs is None or epoch < self.terms_epochs

    def forward(self, rgb: torch.Tensor, thermal: torch.Tensor, targets: torch.Tensor
                ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """rgb (B,3,H,W), thermal (B,1,H,W), targets (M,6) -> (weighted loss, parts).

        ``parts`` holds the unweighted, detached losses: ``task`` and, for "sad", ``svd``,
        ``state`` and ``feat`` (0 for a term whose weight is 0); for "rs4d", ``rs4d``, its
        per-level ``rs4d_p3`` / ``_p4`` / ``_p5`` and the step's ``mask_ratio`` and ``noise``.
        """
        rgb, thermal = blank_modality(rgb, thermal, self.modality)
        if self.method == "rs4d":
            return self._forward_rs4d(rgb, thermal, targets)
        w = self.weights
        on = self.terms_on
        preds, sad = self.sad(self.detector, self.teacher, rgb, thermal, svd=on and w.svd > 0,
                              state=on and w.state > 0, feat=on and w.feat > 0)
        with torch.autocast(device_type=rgb.device.type, enabled=False):
            task, _ = self.criterion([p.float() for p in preds], targets)
            loss = (w.task * task + w.svd * sad["svd"] + w.state * sad["state"]
                    + w.feat * sad["feat"])
        parts = {"task": task.detach(), **{k: v.detach() for k, v in sad.items()}}
        return loss, parts

    def _forward_rs4d(self, rgb: torch.Tensor, thermal: torch.Tensor, targets: torch.Tensor
                      ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The masked pass (RS4D loss), then the clean pass (task loss; skipped at weight 0)."""
        w = self.weights
        zero = torch.zeros((), device=rgb.device)
        parts = self.rs4d(self.detector, self.teacher, rgb, thermal) if w.rs4d > 0 else {
            "rs4d": zero}
        task = zero
        if w.task > 0:
            preds = self.detector(rgb, thermal)
            with torch.autocast(device_type=rgb.device.type, enabled=False):
                task, _ = self.criterion([p.float() for p in preds], targets)
        loss = w.task * task + w.rs4d * parts["rs4d"]
        return loss, {"task": task.detach(), **{k: v.detach() for k, v in parts.items()}}
