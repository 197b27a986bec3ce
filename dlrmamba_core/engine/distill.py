"""Structure-Aware Distillation (DLRMamba Eq. 6-9): a low-rank student learns from a frozen
full-rank teacher.

``L = w_task L_task + w_svd L_SVD + w_state L_state + w_feat L_feat`` (paper weights
1.0 / 0.5 / 0.1 / 1.5; any weight may be 0 to switch that term off for ablations):

* ``L_SVD`` (matrix level): for every factorized matrix of the student (``U V ~= W``), the
  squared distance of its factors to the sqrt(Sigma)-scaled truncated-SVD factors of the
  teacher's dense weight at the same rank, ``||U_s - U_t sqrt(S_t)[:r]||^2 +
  ||V_s - sqrt(S_t)[:r] V_t||^2`` (mean over elements, then over matrices). The student starts
  at exactly these factors (``models.student_from_teacher``), so this term keeps the student
  close to the teacher's principal subspace while the other terms move it.
* ``L_state`` (dynamics): the chunked selective scan computes the hidden state at every chunk
  boundary anyway; full state sequences (B x 4 x D x N x H*W) would not fit. Per SS2D block,
  the student's boundary states (B, K*E, r_state, n_chunks) are compared with a *learned*
  projection ``P: N -> r_state`` of the teacher's (B, K*E, N, n_chunks), by MSE.
* ``L_feat`` (output level): per SS2D block, MSE between the student's and the teacher's block
  outputs (B, H, W, C).

The state and feature MSEs are divided by ``mean(s^2) + mean(t^2)`` (detached), so every
block contributes on the same bounded scale (<= 2) whatever its activation magnitude; raw MSEs
differ by orders of magnitude between blocks and would let one block dominate the sum.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
import torch.nn.functional as F

from dlrmamba_core.engine.evaluate import blank_modality


@dataclass
class DistillWeights:
    """Loss weights (paper: task 1.0, SVD 0.5, state 0.1, feat 1.5); 0 switches a term off."""

    task: float = 1.0
    svd: float = 0.5
    state: float = 0.1
    feat: float = 1.5


def _ss2d_blocks(model: nn.Module) -> dict[str, nn.Module]:
    from dlrmamba_core.layers.ss2d import SS2D

    return {name: m for name, m in model.named_modules() if isinstance(m, SS2D)}


def _scaled_mse(student: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """MSE(student, target) / (mean(student^2) + mean(target^2)), normalizer detached.

    A scale-free error per block, bounded by 2 (by (a - b)^2 <= 2 a^2 + 2 b^2), so a block
    whose teacher activations are tiny cannot blow up the sum.
    """
    s, t = student.float(), target.float()
    scale = (s.detach().pow(2).mean() + t.detach().pow(2).mean()).clamp_min(1e-8)
    return F.mse_loss(s, t) / scale


class DistillTask(nn.Module):
    """Student + frozen teacher + learned state projections; ``forward`` -> ``(loss, parts)``.

    The teacher is held outside the module tree (not trained, not saved in checkpoints, moved
    along by :meth:`_apply`).

    Args:
        student: a low-rank detector built by ``models.student_from_teacher``.
        teacher: the trained full-rank detector (frozen, eval mode).
        weights: loss weights.
        modality: "fused", "rgb" or "thermal".
    """

    def __init__(self, student: nn.Module, teacher: nn.Module, weights: DistillWeights,
                 modality: str = "fused") -> None:
        super().__init__()
        from dlrmamba_core.losses import DetectionLoss
        from dlrmamba_core.models.distill import factor_pairs

        self.detector = student
        self.weights = weights
        self.modality = modality
        self.criterion = DetectionLoss(student)
        teacher.eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
        object.__setattr__(self, "teacher", teacher)  # not a submodule: see class docstring
        # L_SVD targets: the teacher's sqrt(Sigma)-scaled factors at each student rank.
        self.svd_pairs: list[tuple[nn.Module, list[tuple[str, str]]]] = []
        for i, (module, dense) in enumerate(factor_pairs(student, teacher)):
            ref = type(module).from_dense(dense.detach().float().cpu(), module.rank)
            names = []
            for pname, target in ref.named_parameters():
                if pname.endswith("bias"):
                    continue
                buf = f"svd_target_{i}_{pname.replace('.', '_')}"
                self.register_buffer(buf, target.detach().clone(), persistent=False)
                names.append((pname, buf))
            self.svd_pairs.append((module, names))
        # L_state projections N -> r_state, one per SS2D block (bias-free linear map).
        s_blocks, t_blocks = _ss2d_blocks(student), _ss2d_blocks(teacher)
        if set(s_blocks) != set(t_blocks):
            raise ValueError("student and teacher have different SS2D blocks: "
                             f"{sorted(set(s_blocks) ^ set(t_blocks))}")
        self.block_names = sorted(s_blocks)
        self.state_proj = nn.ModuleDict()
        for name in self.block_names:
            n_t, n_s = t_blocks[name].d_state, s_blocks[name].d_state
            proj = nn.Linear(n_t, n_s, bias=False)
            with torch.no_grad():  # start as "keep the first r_state states" (identity-like)
                proj.weight.copy_(torch.eye(n_s, n_t))
            self.state_proj[name.replace(".", "_")] = proj

    def _apply(self, fn: Any, recurse: bool = True) -> DistillTask:
        super()._apply(fn, recurse)
        self.teacher._apply(fn, recurse)  # type: ignore[operator]
        return self

    def svd_loss(self) -> torch.Tensor:
        """Mean over factorized matrices of the factor MSE to the teacher's SVD factors."""
        terms = []
        for module, names in self.svd_pairs:
            params = dict(module.named_parameters())
            terms.append(sum(F.mse_loss(params[p].float(), getattr(self, buf).float())
                             for p, buf in names))
        return torch.stack(terms).mean() if terms else torch.zeros(())

    def forward(self, rgb: torch.Tensor, thermal: torch.Tensor, targets: torch.Tensor
                ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """rgb (B,3,H,W), thermal (B,1,H,W), targets (M,6) -> (weighted loss, parts)."""
        from dlrmamba_core.models.distill import capture

        w = self.weights
        rgb, thermal = blank_modality(rgb, thermal, self.modality)
        need_inner = w.state > 0 or w.feat > 0
        t_rec: dict[str, Any] = {}
        if need_inner:
            with torch.no_grad(), capture(self.teacher) as t_rec:  # type: ignore[arg-type]
                self.teacher(rgb, thermal)  # type: ignore[operator]
        ctx = capture(self.detector) if need_inner else contextlib.nullcontext({})
        with ctx as s_rec:
            preds = self.detector(rgb, thermal)
        dev = rgb.device
        with torch.autocast(device_type=dev.type, enabled=False):
            task, _ = self.criterion([p.float() for p in preds], targets)
            zero = torch.zeros((), device=dev)
            svd = self.svd_loss() if w.svd > 0 else zero
            state = feat = zero
            if need_inner:
                s_terms, f_terms = [], []
                for name in self.block_names:
                    s, t = s_rec[name], t_rec[name]
                    if w.state > 0:
                        proj = self.state_proj[name.replace(".", "_")]
                        # (B, K*E, N, n_chunks) -> project N -> r_state on the state axis
                        t_proj = proj(t["states"].float().transpose(2, 3)).transpose(2, 3)
                        s_terms.append(_scaled_mse(s["states"], t_proj))
                    if w.feat > 0:
                        f_terms.append(_scaled_mse(s["output"], t["output"]))
                if s_terms:
                    state = torch.stack(s_terms).mean()
                if f_terms:
                    feat = torch.stack(f_terms).mean()
            loss = w.task * task + w.svd * svd + w.state * state + w.feat * feat
        parts = {"task": task.detach(), "svd": svd.detach(), "state": state.detach(),
                 "feat": feat.detach()}
        return loss, parts
