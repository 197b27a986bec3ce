"""Structure-Aware Distillation losses (DLRMamba Eq. 6-9) between a low-rank student and its
full-rank teacher.

``L = w_task L_task + w_svd L_SVD + w_state L_state + w_feat L_feat`` (paper weights
1.0 / 0.5 / 0.1 / 1.5, ``engine.config.DistillWeights``; a weight of 0 switches that term off,
for ablations). This module computes the three structural terms; ``engine.distill.DistillTask``
weights them and adds the task loss.

* ``L_SVD`` (matrix level): for every factorized matrix of the student (``U V ~= W``), the
  squared distance of its factors to the sqrt(Sigma)-scaled truncated-SVD factors of the
  teacher's dense weight at the same rank, ``||U_s - U_t sqrt(S_t)[:r]||^2 +
  ||V_s - sqrt(S_t)[:r] V_t||^2`` (mean over elements, then over matrices). The student starts
  at exactly these factors (``models.student_from_teacher``), so this term keeps the student
  close to the teacher's principal subspace while the other terms move it.
* ``L_state`` (dynamics): the chunked selective scan computes the hidden state at every chunk
  boundary anyway; full state sequences (B x 4 x D x N x H*W) would not fit. Per SS2D block,
  the student's boundary states (B, K*E, r_state, n_chunks) are compared by MSE with a learned
  projection ``P`` of the teacher's (B, K*E, N, n_chunks).
* ``L_feat`` (output level): per SS2D block, MSE between the student's and the teacher's block
  outputs (B, H, W, C).

**State alignment.** The student keeps a *different* subset of the teacher's states in each of
the K = 4 scan directions (``models.student.kept_states``), so ``P`` is one matrix per
direction, ``P_k: N -> r_state`` (:class:`StateProjection`), initialised to that direction's
selection (row j of ``P_k`` is the one-hot of the j-th kept state). At init the target is
therefore exactly the teacher's kept states: a student whose states equal them has
``L_state = 0``; afterwards ``P`` is learned, as in the paper. (One shared ``N -> r_state``
matrix cannot express four different selections: that was a bug of an earlier version.)

The state and feature MSEs are divided by ``mean(s^2) + mean(t^2)`` (detached), so every
block contributes on the same bounded scale (<= 2) whatever its activation magnitude; raw MSEs
differ by orders of magnitude between blocks and would let one block dominate the sum.
"""

from __future__ import annotations

from typing import cast

import torch
from torch import Tensor, nn
import torch.nn.functional as F

from dlrmamba_core.errors import ConfigError


def scaled_mse(student: Tensor, target: Tensor) -> Tensor:
    """MSE(student, target) / (mean(student^2) + mean(target^2)), normalizer detached.

    A scale-free error per block, bounded by 2 (by (a - b)^2 <= 2 a^2 + 2 b^2), so a block
    whose teacher activations are tiny cannot blow up the sum.
    """
    s, t = student.float(), target.float()
    scale = (s.detach().pow(2).mean() + t.detach().pow(2).mean()).clamp_min(1e-8)
    return F.mse_loss(s, t) / scale


def factor_tensors(module: nn.Module) -> tuple[Tensor, Tensor]:
    """(U, V) of a LowRankLinear ((out, r), (r, in)) or DirLowRank ((K, out, r), (K, r, in))."""
    from dlrmamba_core.layers import DirLowRank, LowRankLinear

    if isinstance(module, LowRankLinear):
        return module.u.weight, module.v.weight
    if isinstance(module, DirLowRank):
        return module.u, module.v
    raise TypeError(f"expected a low-rank module, got {type(module).__name__}")


class SVDTarget(nn.Module):
    """The teacher's sqrt(Sigma)-scaled factors that one student matrix is pulled towards.

    Buffers ``u``, ``v`` (not saved: they are recomputed from the teacher).
    """

    u: Tensor
    v: Tensor

    def __init__(self, u: Tensor, v: Tensor) -> None:
        super().__init__()
        self.register_buffer("u", u.detach().clone(), persistent=False)
        self.register_buffer("v", v.detach().clone(), persistent=False)


class StateProjection(nn.Module):
    """Per-direction learned map of teacher states to student states, ``P_k: N -> r_state``.

    Args:
        kept: (K, r_state) the teacher states the student kept in each direction; ``P_k``
            starts as that selection (see the module docstring).
        n_teacher: the teacher's N.
    """

    def __init__(self, kept: Tensor, n_teacher: int) -> None:
        super().__init__()
        k, r = kept.shape
        w = torch.zeros(k, r, n_teacher)
        w.scatter_(2, kept.cpu()[:, :, None], 1.0)  # (K, r_state, N) one-hot rows
        self.weight = nn.Parameter(w)
        # Decay would shrink P, i.e. the target itself, not make the student simpler.
        self.weight._no_weight_decay = True  # type: ignore[attr-defined]

    def forward(self, states: Tensor) -> Tensor:
        """Teacher states (B, K*E, N, n_chunks) -> (B, K*E, r_state, n_chunks)."""
        b, ke, n, c = states.shape
        k = self.weight.shape[0]
        s = states.reshape(b, k, ke // k, n, c)  # channels are direction-major (k * E + e)
        out = torch.einsum("krn,bkenc->bkerc", self.weight.to(states.dtype), s)
        return out.reshape(b, ke, -1, c)


class StructureAwareDistillation(nn.Module):
    """L_SVD, L_state and L_feat between a student and the teacher it was built from.

    It owns what the losses compare against or learn (the SVD targets, the state
    projections) and holds no reference to either model: both are passed to :meth:`forward`,
    which runs them and returns the student's predictions with the three losses.

    Args:
        student: a low-rank detector built by ``models.student_from_teacher(teacher, ...)``.
        teacher: its full-rank teacher (frozen).

    Raises:
        ConfigError: the two models do not have the same SS2D blocks, or a block does not
            match the teacher's shapes.
    """

    def __init__(self, student: nn.Module, teacher: nn.Module) -> None:
        super().__init__()
        from dlrmamba_core.layers import SS2D
        from dlrmamba_core.models.distill import factor_pairs
        from dlrmamba_core.models.student import kept_states

        try:
            pairs = factor_pairs(student, teacher)
        except ValueError as exc:
            raise ConfigError(f"student and teacher do not match: {exc}; build the student "
                              "with models.student_from_teacher(teacher)") from exc
        names = {id(m): n for n, m in student.named_modules()}
        # L_SVD: (student module path, its targets), in module order.
        self.factor_names = [names[id(m)] for m, _ in pairs]
        self.svd_targets = nn.ModuleList()
        for module, dense in pairs:
            ref = type(module).from_dense(dense.detach().float(), module.rank)  # type: ignore
            self.svd_targets.append(SVDTarget(*factor_tensors(ref)))
        # L_state / L_feat: the SS2D blocks, and one per-direction projection each.
        s_blocks = {n: m for n, m in student.named_modules() if isinstance(m, SS2D)}
        t_blocks = {n: m for n, m in teacher.named_modules() if isinstance(m, SS2D)}
        if set(s_blocks) != set(t_blocks):
            raise ConfigError("student and teacher have different SS2D blocks: "
                              f"{sorted(set(s_blocks) ^ set(t_blocks))}")
        self.block_names = sorted(s_blocks)
        self.state_proj = nn.ModuleList(
            StateProjection(kept_states(t_blocks[n], s_blocks[n].d_state), t_blocks[n].d_state)
            for n in self.block_names)

    def svd_loss(self, student: nn.Module) -> Tensor:
        """Mean over factorized matrices of ``MSE(U_s, U_t) + MSE(V_s, V_t)``."""
        terms = []
        for name, target in zip(self.factor_names, self.svd_targets, strict=True):
            u, v = factor_tensors(student.get_submodule(name))
            t = cast(SVDTarget, target)
            terms.append(F.mse_loss(u.float(), t.u) + F.mse_loss(v.float(), t.v))
        if not terms:
            raise ConfigError("the student has no factorized matrices: L_SVD needs a low-rank "
                              "student (models.student_from_teacher)")
        return torch.stack(terms).mean()

    def inner_losses(self, s_rec: dict[str, dict[str, Tensor]],
                     t_rec: dict[str, dict[str, Tensor]], state: bool, feat: bool
                     ) -> tuple[Tensor | None, Tensor | None]:
        """(L_state, L_feat) from ``models.distill.capture`` records (None where not asked)."""
        s_terms, f_terms = [], []
        for name, proj in zip(self.block_names, self.state_proj, strict=True):
            s, t = s_rec[name], t_rec[name]
            if state:
                if "states" not in s or "states" not in t:
                    raise ConfigError(f"SS2D block {name!r} recorded no scan states (the "
                                      "reference scan does not); L_state needs scan='chunked'")
                s_terms.append(scaled_mse(s["states"], proj(t["states"].float())))
            if feat:
                f_terms.append(scaled_mse(s["output"], t["output"]))
        return (torch.stack(s_terms).mean() if s_terms else None,
                torch.stack(f_terms).mean() if f_terms else None)

    def forward(self, student: nn.Module, teacher: nn.Module, rgb: Tensor, thermal: Tensor,
                svd: bool = True, state: bool = True, feat: bool = True
                ) -> tuple[list[Tensor], dict[str, Tensor]]:
        """Run both models; return the student's predictions and the structural losses.

        Args:
            student: the student detector (train mode: per-level maps).
            teacher: the frozen teacher (run under ``no_grad``, only when L_state or L_feat
                is on).
            rgb: (B, 3, H, W) in [0, 1].
            thermal: (B, 1, H, W) in [0, 1].
            svd, state, feat: which terms to compute (a term not computed is reported as 0).

        Returns:
            ``(student predictions, {"svd", "state", "feat"})``, the losses unweighted.
        """
        from dlrmamba_core.models.distill import capture

        zero = torch.zeros((), device=rgb.device)
        losses = {"svd": zero, "state": zero, "feat": zero}
        need_inner = state or feat
        if not need_inner:
            preds = student(rgb, thermal)
        else:
            with torch.no_grad(), capture(teacher) as t_rec:
                teacher(rgb, thermal)
            with capture(student) as s_rec:
                preds = student(rgb, thermal)
        with torch.autocast(device_type=rgb.device.type, enabled=False):
            if svd:
                losses["svd"] = self.svd_loss(student)
            if need_inner:
                l_state, l_feat = self.inner_losses(s_rec, t_rec, state, feat)
                losses["state"] = zero if l_state is None else l_state
                losses["feat"] = zero if l_feat is None else l_feat
        return preds, losses
