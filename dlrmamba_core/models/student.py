"""Build a Low-Rank SS2D student from a (trained) full-rank teacher by truncated SVD."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from dlrmamba_core.layers import SS2D, DirLinear, DirLowRank, LowRankLinear, Mlp
from dlrmamba_core.models.config import STUDENT_RANK_RATIO, STUDENT_STATE_RATIO, student_config
from dlrmamba_core.models.detector import DetectorNet


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


def dense_weight(module: nn.Module) -> Tensor:
    """The dense weight (detached) a projection computes: (out, in), or (K, out, in) per
    direction.

    Raises:
        TypeError: ``module`` is not one of the projection layers.
    """
    if isinstance(module, nn.Linear):
        return module.weight.detach()
    if isinstance(module, (LowRankLinear, DirLinear, DirLowRank)):
        return module.dense_weight().detach()
    raise TypeError(f"expected a projection layer, got {type(module).__name__}")


def dense_bias(module: nn.Module) -> Tensor | None:
    """The bias of an ``nn.Linear`` (None when it has none)."""
    if isinstance(module, nn.Linear) and module.bias is not None:
        return module.bias.detach()
    return None


def kept_states(teacher: SS2D, r_state: int) -> Tensor:
    """The states a student block with ``r_state`` states keeps of ``teacher``, per direction.

    The one place the selection is computed: the student's init (:func:`student_from_teacher`),
    the L_SVD targets (``models.distill.factor_pairs``) and the L_state projections
    (``losses.distill``) all use it, so they agree. Deterministic for a frozen teacher.

    Returns:
        (K, r_state) int64 state indices, ascending within each direction.
    """
    x_w = dense_weight(teacher.x_proj)  # (K, R + 2N, E)
    return select_states(x_w, teacher.dt_rank, teacher.d_state, r_state)


def restrict_x_proj(x_proj_weight: Tensor, dt_rank: int, d_state: int, kept: Tensor) -> Tensor:
    """x_proj weight (K, R + 2N, E) -> (K, R + 2 r_state, E): dt rows, then kept B and C rows."""
    e = x_proj_weight.shape[-1]
    gather = kept[:, :, None].expand(-1, -1, e)  # (K, r_state, E)
    w_b = x_proj_weight[:, dt_rank : dt_rank + d_state].gather(1, gather)
    w_c = x_proj_weight[:, dt_rank + d_state :].gather(1, gather)
    return torch.cat([x_proj_weight[:, :dt_rank], w_b, w_c], 1)


def fill_lowrank(module: nn.Module, weight: Tensor, bias: Tensor | None = None) -> None:
    """Set a LowRankLinear / DirLowRank to the truncated SVD of a dense weight.

    The factors come from the layer's own ``from_dense`` (the one SVD fill of the project).

    Raises:
        TypeError: ``module`` is not a low-rank layer.
    """
    if isinstance(module, LowRankLinear):
        ref: nn.Module = LowRankLinear.from_dense(weight, module.rank, bias)
    elif isinstance(module, DirLowRank):
        ref = DirLowRank.from_dense(weight, module.rank)
    else:
        raise TypeError(f"expected a low-rank module, got {type(module).__name__}")
    module.load_state_dict(ref.state_dict())


def _init_ss2d(student: SS2D, teacher: SS2D) -> None:
    """Initialise one Low-Rank SS2D from its full-rank teacher block."""
    k_dirs, e = teacher.dt_bias.shape
    n, r_state = teacher.d_state, student.d_state
    idx = kept_states(teacher, r_state)  # (K, r_state)
    x_w = dense_weight(teacher.x_proj)  # (K, R + 2N, E)
    fill_lowrank(student.in_proj, dense_weight(teacher.in_proj))
    fill_lowrank(student.x_proj, restrict_x_proj(x_w, teacher.dt_rank, n, idx))
    fill_lowrank(student.dt_proj, dense_weight(teacher.dt_proj))
    fill_lowrank(student.out_proj, dense_weight(teacher.out_proj))
    a_log = teacher.A_log.detach().view(k_dirs, e, n)  # (K, E, N)
    with torch.no_grad():
        kept = a_log.gather(2, idx[:, None, :].expand(-1, e, -1))  # (K, E, r_state)
        student.A_log.copy_(kept.reshape(-1, r_state))


def student_from_teacher(
    teacher: DetectorNet,
    rank_ratio: float = STUDENT_RANK_RATIO,
    state_ratio: float = STUDENT_STATE_RATIO,
) -> DetectorNet:
    """A Low-Rank SS2D student initialised from ``teacher`` (paper: low-rank init).

    Every dense SS2D projection (and VSS MLP layer) becomes the rank
    ``ceil(rank_ratio * min(m, n))`` truncated SVD of the teacher's weight with sqrt(Sigma)-scaled
    factors; the state size becomes ``r_state = ceil(state_ratio * N)`` (``config.state_size``),
    keeping the states chosen by :func:`kept_states`. The default ratios are the registry's
    (``config.STUDENT_RANK_RATIO``, ``STUDENT_STATE_RATIO``: the shipped student). All other
    weights (fusion, convs, norms, neck, head, dt biases, D) are copied. At
    ``rank_ratio = state_ratio = 1`` the student computes the teacher's function (up to float
    rounding).

    Raises:
        ConfigError: teacher already low-rank, or ratios outside (0, 1].
    """
    s_cfg = student_config(teacher.cfg, rank_ratio, state_ratio)  # student, fusion_mamba_lr..
    student = DetectorNet(s_cfg).to(next(teacher.parameters()).device)
    s_state = student.state_dict()
    with torch.no_grad():
        for key, val in teacher.state_dict().items():
            if key in s_state and s_state[key].shape == val.shape:
                s_state[key].copy_(val)
    t_mods = dict(teacher.named_modules())
    for name, mod in student.named_modules():
        t_mod = t_mods.get(name)  # None for the student's own factor layers (u, v)
        if isinstance(mod, SS2D) and isinstance(t_mod, SS2D):
            _init_ss2d(mod, t_mod)
        elif isinstance(mod, Mlp) and isinstance(t_mod, Mlp):
            for s_fc, t_fc in ((mod.fc1, t_mod.fc1), (mod.fc2, t_mod.fc2)):
                fill_lowrank(s_fc, dense_weight(t_fc), dense_bias(t_fc))
    return student


def redraw_parameters(model: DetectorNet) -> DetectorNet:
    """Replace every parameter and buffer of ``model`` by those of a freshly built model of
    the same config (its own initializers, torch's current RNG): weights and the BatchNorm
    running statistics that ``student_from_teacher`` copied from the teacher.

    Used for "random init + distillation" ablations: the student keeps the SVD-built shape
    (rank, state size) but loses everything the teacher gave it.

    Returns:
        ``model``, changed in place.
    """
    device = next(model.parameters()).device
    fresh = DetectorNet(model.cfg).to(device)
    params, buffers = dict(fresh.named_parameters()), dict(fresh.named_buffers())
    with torch.no_grad():
        for name, param in model.named_parameters():
            param.copy_(params[name])
        for name, buf in model.named_buffers():
            buf.copy_(buffers[name])
    return model
