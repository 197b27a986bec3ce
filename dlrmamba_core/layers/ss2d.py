"""SS2D (VMamba's 2-D selective scan), its Low-Rank form, and the VSS block.

Tensors inside the blocks are channels-last, (B, H, W, C), like VMamba; the detector converts at
stage boundaries.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor, nn
import torch.nn.functional as F

from dlrmamba_core.layers.lowrank import (
    DirLinear,
    DirLowRank,
    LowRankLinear,
    rank_for,
)
from dlrmamba_core.ops import selective_scan_chunked, selective_scan_ref

K_DIRECTIONS = 4
"""Default scan directions: row-major, column-major, and both reversed (VMamba's cross scan)."""
DIRECTIONS = (2, 4)
"""Supported direction counts: 4 = cross scan; 2 = row-major forward + backward (no transposes:
half the scan tensor and no column-major copies, at the cost of vertical context arriving only
through the depthwise conv and the stacked blocks)."""


def _check_directions(directions: int) -> None:
    if directions not in DIRECTIONS:
        raise ValueError(f"scan directions must be one of {DIRECTIONS}; got {directions}")


def cross_scan(x: Tensor, directions: int = K_DIRECTIONS) -> Tensor:
    """(B, E, H, W) -> (B, K, E, H*W).

    K = 4: row-major, column-major, reversed row, reversed column. K = 2: row-major and
    reversed row-major.
    """
    _check_directions(directions)
    row = x.flatten(2)  # (B, E, L) in row-major order
    if directions == 2:
        return torch.stack([row, row.flip(-1)], 1)  # (B, 2, E, L)
    col = x.transpose(2, 3).flatten(2)  # (B, E, L) in column-major order
    fwd = torch.stack([row, col], 1)  # (B, 2, E, L)
    return torch.cat([fwd, fwd.flip(-1)], 1)  # (B, 4, E, L)


def cross_merge(y: Tensor, h: int, w: int) -> Tensor:
    """(B, K, E, L) -> (B, E, H*W) row-major: each direction mapped back and summed (K = 4 or
    2, the layouts of :func:`cross_scan`)."""
    b, k, e, _ = y.shape
    _check_directions(k)
    if k == 2:
        return y[:, 0] + y[:, 1].flip(-1)  # (B, E, L)
    y = y[:, :2] + y[:, 2:].flip(-1)  # (B, 2, E, L) undo the reversal
    row = y[:, 0]
    col = y[:, 1].reshape(b, e, w, h).transpose(2, 3).reshape(b, e, h * w)  # back to row-major
    return row + col


class SS2D(nn.Module):
    """Full-rank 2-D selective scan block (VMamba style).

    in_proj -> (x, z); x -> depthwise conv -> SiLU -> 4-direction cross scan; per direction
    x_proj -> (dt, B, C) and dt_proj; selective scan with A = -exp(A_log) and D; cross merge;
    out_norm; gate with SiLU(z); out_proj.

    Args:
        d_model: input/output channels C.
        d_state: state size N per channel.
        ssm_ratio: expansion, d_inner = ssm_ratio * C.
        dt_rank: rank of the dt projection (default ceil(C / 16), as in Mamba).
        d_conv: depthwise kernel size.
        scan: "chunked" (fast, default) or "ref" (reference loop, tests only).
        directions: scan directions K, 4 (cross scan) or 2 (row-major forward + backward);
            the per-direction parameters (x_proj, dt_proj, A_log, D, dt_bias) have K slices.
    """

    def __init__(
        self,
        d_model: int,
        d_state: int = 16,
        ssm_ratio: float = 2.0,
        dt_rank: int | None = None,
        d_conv: int = 3,
        scan: Literal["chunked", "ref"] = "chunked",
        directions: int = K_DIRECTIONS,
    ):
        super().__init__()
        _check_directions(directions)
        self.directions = directions
        self.d_model = d_model
        self.d_inner = int(ssm_ratio * d_model)
        self.d_state = d_state
        self.dt_rank = dt_rank or math.ceil(d_model / 16)
        self.scan = scan
        self.capture = False  # set by models.distill.capture
        self.captured: dict[str, Tensor] = {}
        e, k = self.d_inner, directions
        self._build_projections()
        self.conv = nn.Conv2d(e, e, d_conv, padding=d_conv // 2, groups=e)
        # A_log = log(1..N) per channel: the S4D-real init, a spread of time scales.
        a = torch.arange(1, d_state + 1, dtype=torch.float32).repeat(k * e, 1)
        self.A_log = nn.Parameter(torch.log(a))  # (K*E, N)
        self.D = nn.Parameter(torch.ones(k * e))
        # dt bias: inverse softplus of dt ~ logU[1e-3, 1e-1], so initial steps span time scales.
        dt = torch.exp(torch.rand(k, e) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3))
        self.dt_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))  # (K, E)
        self.A_log._no_weight_decay = True  # type: ignore[attr-defined]
        self.D._no_weight_decay = True  # type: ignore[attr-defined]
        self.out_norm = nn.LayerNorm(e)

    def _build_projections(self) -> None:
        c, e, k, r, n = self.d_model, self.d_inner, self.directions, self.dt_rank, self.d_state
        self.in_proj: nn.Module = nn.Linear(c, 2 * e, bias=False)
        self.x_proj: nn.Module = DirLinear(k, e, r + 2 * n, init_std=e**-0.5)
        self.dt_proj: nn.Module = DirLinear(k, r, e, init_std=r**-0.5)
        self.out_proj: nn.Module = nn.Linear(e, c, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        """x (B, H, W, C) -> (B, H, W, C)."""
        b, h, w, _ = x.shape
        e, k, n, r = self.d_inner, self.directions, self.d_state, self.dt_rank
        xz = self.in_proj(x)  # (B, H, W, 2E)
        xi, z = xz.chunk(2, dim=-1)
        xi = F.silu(self.conv(xi.permute(0, 3, 1, 2)))  # (B, E, H, W)
        xs = cross_scan(xi, k)  # (B, K, E, L)
        x_dbl = self.x_proj(xs)  # (B, K, R + 2N, L)
        dts, Bs, Cs = torch.split(x_dbl, [r, n, n], dim=2)
        dts = self.dt_proj(dts)  # (B, K, E, L)
        L = h * w
        u = xs.reshape(b, k * e, L)  # (B, K*E, L): direction-major channels, groups = K
        delta = dts.reshape(b, k * e, L)
        A = -torch.exp(self.A_log.float())  # (K*E, N)
        D, bias = self.D.float(), self.dt_bias.reshape(-1).float()
        y: Tensor
        if self.scan == "ref":
            y = selective_scan_ref(u, delta, A, Bs, Cs, D, delta_bias=bias,
                                   delta_softplus=True)  # type: ignore[assignment]
        elif self.capture:
            y, states = selective_scan_chunked(u, delta, A, Bs, Cs, D, delta_bias=bias,
                                               delta_softplus=True, return_chunk_states=True)
            self.captured["states"] = states  # (B, K*E, N, ceil(L / CHUNK))
        else:
            y = selective_scan_chunked(u, delta, A, Bs, Cs, D, delta_bias=bias,
                                       delta_softplus=True)  # type: ignore[assignment]
        y = cross_merge(y.reshape(b, k, e, L), h, w)  # (B, E, L)
        y = self.out_norm(y.transpose(1, 2).reshape(b, h, w, e))  # (B, H, W, E)
        out = self.out_proj(y * F.silu(z))
        if self.capture:
            self.captured["output"] = out
        return out


class LowRankSS2D(SS2D):
    """SS2D with every dense projection factorized (``W ~= U V``) and a reduced state size.

    Our reading of DLRMamba's Low-Rank SS2D (paper Eq. 5): in_proj, x_proj, dt_proj and
    out_proj are rank ``ceil(rank_ratio * min(m, n))`` products, and the state dimension is
    ``d_state = r_state`` (the teacher's N restricted to its most used states, see
    ``models.student_from_teacher``).

    Args:
        rank_ratio: fraction of the full rank kept in each projection, in (0, 1].
        Others as in :class:`SS2D` (``d_state`` is the reduced r_state).
    """

    def __init__(
        self,
        d_model: int,
        d_state: int = 4,
        ssm_ratio: float = 2.0,
        dt_rank: int | None = None,
        d_conv: int = 3,
        scan: Literal["chunked", "ref"] = "chunked",
        rank_ratio: float = 0.5,
        directions: int = K_DIRECTIONS,
    ):
        self.rank_ratio = rank_ratio
        super().__init__(d_model, d_state, ssm_ratio, dt_rank, d_conv, scan, directions)

    def _build_projections(self) -> None:
        c, e, k, r, n = self.d_model, self.d_inner, self.directions, self.dt_rank, self.d_state
        rr = self.rank_ratio
        self.in_proj = LowRankLinear(c, 2 * e, rank_for(rr, 2 * e, c), bias=False)
        self.x_proj = DirLowRank(k, e, r + 2 * n, rank_for(rr, r + 2 * n, e))
        self.dt_proj = DirLowRank(k, r, e, rank_for(rr, e, r))
        self.out_proj = LowRankLinear(e, c, rank_for(rr, c, e), bias=False)


class Mlp(nn.Module):
    """Channels-last MLP: Linear -> GELU -> Linear, optionally low-rank factorized."""

    def __init__(self, dim: int, hidden: int, rank_ratio: float | None = None):
        super().__init__()
        if rank_ratio is None:
            self.fc1: nn.Module = nn.Linear(dim, hidden)
            self.fc2: nn.Module = nn.Linear(hidden, dim)
        else:
            self.fc1 = LowRankLinear(dim, hidden, rank_for(rank_ratio, hidden, dim))
            self.fc2 = LowRankLinear(hidden, dim, rank_for(rank_ratio, dim, hidden))

    def forward(self, x: Tensor) -> Tensor:
        """x (..., dim) -> (..., dim)."""
        return self.fc2(F.gelu(self.fc1(x)))


class VSSBlock(nn.Module):
    """Visual state-space block: ``x + SS2D(LN(x))`` then ``x + MLP(LN(x))`` (channels-last).

    Args:
        dim: channels.
        d_state: SSM state size (N for the teacher, r_state for the student).
        ssm_ratio: SS2D expansion.
        mlp_ratio: MLP hidden = mlp_ratio * dim; 0 disables the MLP.
        rank_ratio: None for full rank, else the Low-Rank SS2D (and MLP) rank ratio.
        scan: selective-scan implementation.
        directions: SS2D scan directions (4 or 2).
    """

    def __init__(
        self,
        dim: int,
        d_state: int = 16,
        ssm_ratio: float = 2.0,
        mlp_ratio: float = 2.0,
        rank_ratio: float | None = None,
        scan: Literal["chunked", "ref"] = "chunked",
        directions: int = K_DIRECTIONS,
    ):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        if rank_ratio is None:
            self.ssm: SS2D = SS2D(dim, d_state, ssm_ratio, scan=scan, directions=directions)
        else:
            self.ssm = LowRankSS2D(dim, d_state, ssm_ratio, scan=scan, rank_ratio=rank_ratio,
                                   directions=directions)
        self.mlp: Mlp | None = None
        if mlp_ratio > 0:
            self.norm2 = nn.LayerNorm(dim)
            self.mlp = Mlp(dim, int(mlp_ratio * dim), rank_ratio)

    def forward(self, x: Tensor) -> Tensor:
        """x (B, H, W, C) -> (B, H, W, C)."""
        x = x + self.ssm(self.norm(x))
        if self.mlp is not None:
            x = x + self.mlp(self.norm2(x))
        return x
