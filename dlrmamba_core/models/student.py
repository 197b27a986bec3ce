"""Build a Low-Rank SS2D student from a (trained) full-rank teacher by truncated SVD."""

from __future__ import annotations

from dataclasses import replace
import math

import torch
from torch import Tensor, nn

from dlrmamba_core.errors import ConfigError
from dlrmamba_core.layers import SS2D, DirLowRank, LowRankLinear, Mlp, svd_factors
from dlrmamba_core.models.config import DetectorConfig
from dlrmamba_core.models.detector import Detector


def select_states(x_proj_weight: Tensor, dt_rank: int, d_state: int, r_state: int) -> Tensor:
    """Per direction, the ``r_state`` states whose B and C projections carry most weight.

    A state n contributes ``C_n h_n`` with ``h_n`` driven by ``B_n``: its input-output gain scales
    with ``||W_B[n]|| * ||W_C[n]||``, so those states span the principal subspace of the scan.

    Args:
        x_proj_weight: (K, dt_rank + 2N, E) teacher x_proj weight.
        dt_rank: R.
        d_state: teacher N.
        r_state: states to keep.

    Returns:
        (K, r_state) int64 state indices, ascending within each direction.
    """
    w_b = x_proj_weight[:, dt_rank : dt_rank + d_state]  # (K, N, E)
    w_c = x_proj_weight[:, dt_rank + d_state :]  # (K, N, E)
    score = w_b.norm(dim=-1) * w_c.norm(dim=-1)  # (K, N)
    return score.topk(r_state, dim=-1).indices.sort(dim=-1).values


def _copy_lowrank(module: nn.Module, weight: Tensor, bias: Tensor | None = None) -> None:
    """Fill a LowRankLinear / DirLowRank with the truncated SVD of a dense weight."""
    with torch.no_grad():
        if isinstance(module, LowRankLinear):
            u, v = svd_factors(weight, module.rank)
            module.u.weight.copy_(u)
            module.v.weight.copy_(v)
            if bias is not None:
                module.u.bias.copy_(bias)
        elif isinstance(module, DirLowRank):
            for k in range(weight.shape[0]):
                u, v = svd_factors(weight[k], module.rank)
                module.u[k].copy_(u)
                module.v[k].copy_(v)
        else:
            raise TypeError(f"expected a low-rank module, got {type(module).__name__}")


def _init_ss2d(student: SS2D, teacher: SS2D) -> None:
    """Initialise one Low-Rank SS2D from its full-rank teacher block."""
    k_dirs, e = teacher.dt_bias.shape
    n, r_state, r = teacher.d_state, student.d_state, teacher.dt_rank
    x_w = teacher.x_proj.dense_weight().detach()  # (K, R + 2N, E)
    idx = select_states(x_w, r, n, r_state)  # (K, r_state)
    gather = idx[:, :, None].expand(-1, -1, e)  # (K, r_state, E)
    x_sel = torch.cat(
        [x_w[:, :r], x_w[:, r : r + n].gather(1, gather), x_w[:, r + n :].gather(1, gather)], 1
    )  # (K, R + 2 r_state, E)
    _copy_lowrank(student.in_proj, teacher.in_proj.weight.detach())
    _copy_lowrank(student.x_proj, x_sel)
    _copy_lowrank(student.dt_proj, teacher.dt_proj.dense_weight().detach())
    _copy_lowrank(student.out_proj, teacher.out_proj.weight.detach())
    a_log = teacher.A_log.detach().view(k_dirs, e, n)  # (K, E, N)
    with torch.no_grad():
        kept = a_log.gather(2, idx[:, None, :].expand(-1, e, -1))  # (K, E, r_state)
        student.A_log.copy_(kept.reshape(-1, r_state))


def student_from_teacher(
    teacher: Detector, rank_ratio: float = 0.25, state_ratio: float = 0.25
) -> Detector:
    """A Low-Rank SS2D student initialised from ``teacher`` (paper: low-rank init).

    Every dense SS2D projection (and VSS MLP layer) becomes the rank
    ``ceil(rank_ratio * min(m, n))`` truncated SVD of the teacher's weight with sqrt(Sigma)-scaled
    factors; the state size becomes ``r_state = ceil(state_ratio * N)``, keeping the states
    chosen by :func:`select_states`. All other weights (fusion, convs, norms, neck, head,
    dt biases, D) are copied. At ``rank_ratio = state_ratio = 1`` the student computes the
    teacher's function (up to float rounding).

    Raises:
        ConfigError: teacher already low-rank, or ratios outside (0, 1].
    """
    cfg: DetectorConfig = teacher.cfg
    if cfg.rank_ratio is not None:
        raise ConfigError(f"teacher variant {cfg.variant!r} is already low-rank")
    for name, val in (("rank_ratio", rank_ratio), ("state_ratio", state_ratio)):
        if not 0.0 < val <= 1.0:
            raise ConfigError(f"{name} must be in (0, 1]; got {val}")
    r_state = max(1, math.ceil(state_ratio * cfg.d_state))
    s_variant = "student" if cfg.arch == "dlrmamba" else f"{cfg.variant}_lr"  # fusion_mamba_lr
    s_cfg = replace(cfg, variant=s_variant, rank_ratio=rank_ratio, d_state=r_state)
    student = Detector(s_cfg).to(next(teacher.parameters()).device)
    s_state = student.state_dict()
    with torch.no_grad():
        for key, val in teacher.state_dict().items():
            if key in s_state and s_state[key].shape == val.shape:
                s_state[key].copy_(val)
    t_mods = dict(teacher.named_modules())
    for name, mod in student.named_modules():
        if isinstance(mod, SS2D):
            _init_ss2d(mod, t_mods[name])  # type: ignore[arg-type]
        elif isinstance(mod, Mlp):
            t_mlp = t_mods[name]
            _copy_lowrank(mod.fc1, t_mlp.fc1.weight.detach(), t_mlp.fc1.bias.detach())
            _copy_lowrank(mod.fc2, t_mlp.fc2.weight.detach(), t_mlp.fc2.bias.detach())
    return student
