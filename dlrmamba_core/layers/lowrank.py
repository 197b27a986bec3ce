"""Low-rank factorized projections ``W ~= U V`` and their truncated-SVD initialisation."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def rank_for(rank_ratio: float, out_features: int, in_features: int) -> int:
    """Rank ``ceil(rank_ratio * min(m, n))`` (at least 1) used by every factorized matrix."""
    if not 0.0 < rank_ratio <= 1.0:
        raise ValueError(f"rank_ratio must be in (0, 1]; got {rank_ratio}")
    return max(1, math.ceil(rank_ratio * min(out_features, in_features)))


def svd_factors(weight: Tensor, rank: int) -> tuple[Tensor, Tensor]:
    """Truncated SVD of ``weight`` (out, in) into U (out, rank) and V (rank, in), U @ V ~= W.

    Both factors carry ``sqrt(Sigma)``: balanced factors train better than ``U Sigma, V``
    and are what the SVD-alignment distillation loss compares against.
    """
    if not 1 <= rank <= min(weight.shape):
        raise ValueError(f"rank {rank} is outside [1, {min(weight.shape)}] for {weight.shape}")
    U, S, Vh = torch.linalg.svd(weight.detach().float(), full_matrices=False)
    root = S[:rank].sqrt()
    u = (U[:, :rank] * root).to(weight.dtype)  # (out, r)
    v = (root[:, None] * Vh[:rank]).to(weight.dtype)  # (r, in)
    return u, v


class LowRankLinear(nn.Module):
    """``y = U (V x) + b``: a Linear layer of rank ``rank`` with (in + out) * rank weights.

    Args:
        in_features: input width.
        out_features: output width.
        rank: inner width of the factorization.
        bias: add a bias after U.
    """

    def __init__(self, in_features: int, out_features: int, rank: int, bias: bool = True):
        super().__init__()
        self.in_features, self.out_features, self.rank = in_features, out_features, rank
        self.v = nn.Linear(in_features, rank, bias=False)
        self.u = nn.Linear(rank, out_features, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        """x (..., in) -> (..., out)."""
        return self.u(self.v(x))

    def dense_weight(self) -> Tensor:
        """The equivalent dense weight (out, in)."""
        return self.u.weight @ self.v.weight

    @classmethod
    def from_dense(cls, weight: Tensor, rank: int, bias: Tensor | None = None) -> LowRankLinear:
        """Build from a dense weight (out, in) by truncated SVD (sqrt(Sigma)-scaled factors)."""
        out_f, in_f = weight.shape
        layer = cls(in_f, out_f, rank, bias=bias is not None)
        u, v = svd_factors(weight, rank)
        with torch.no_grad():
            layer.u.weight.copy_(u)
            layer.v.weight.copy_(v)
            if bias is not None:
                layer.u.bias.copy_(bias)
        return layer


class LowRankConv1x1(nn.Module):
    """The 1x1-convolution form of :class:`LowRankLinear` for (B, C, H, W) feature maps."""

    def __init__(self, in_channels: int, out_channels: int, rank: int, bias: bool = True):
        super().__init__()
        self.in_channels, self.out_channels, self.rank = in_channels, out_channels, rank
        self.v = nn.Conv2d(in_channels, rank, 1, bias=False)
        self.u = nn.Conv2d(rank, out_channels, 1, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        """x (B, in, H, W) -> (B, out, H, W)."""
        return self.u(self.v(x))

    def dense_weight(self) -> Tensor:
        """The equivalent dense weight (out, in)."""
        return self.u.weight[:, :, 0, 0] @ self.v.weight[:, :, 0, 0]

    @classmethod
    def from_dense(
        cls, weight: Tensor, rank: int, bias: Tensor | None = None
    ) -> LowRankConv1x1:
        """Build from a dense (out, in) or (out, in, 1, 1) weight by truncated SVD."""
        w2 = weight.reshape(weight.shape[0], weight.shape[1])  # (out, in)
        layer = cls(w2.shape[1], w2.shape[0], rank, bias=bias is not None)
        u, v = svd_factors(w2, rank)
        with torch.no_grad():
            layer.u.weight.copy_(u[:, :, None, None])
            layer.v.weight.copy_(v[:, :, None, None])
            if bias is not None:
                layer.u.bias.copy_(bias)
        return layer


class DirLinear(nn.Module):
    """K independent bias-free projections applied to K stacked sequences (one per direction).

    weight: (K, out, in); input (B, K, in, L) -> output (B, K, out, L) by one batched matmul.
    """

    def __init__(self, k: int, in_features: int, out_features: int, init_std: float):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(k, out_features, in_features) * init_std)

    def forward(self, x: Tensor) -> Tensor:
        """x (B, K, in, L) -> (B, K, out, L)."""
        return self.weight @ x

    def dense_weight(self) -> Tensor:
        """(K, out, in)."""
        return self.weight


class DirLowRank(nn.Module):
    """Low-rank :class:`DirLinear`: weight[k] = u[k] @ v[k]; u (K, out, r), v (K, r, in)."""

    def __init__(self, k: int, in_features: int, out_features: int, rank: int):
        super().__init__()
        self.rank = rank
        self.u = nn.Parameter(torch.randn(k, out_features, rank) / math.sqrt(rank))
        self.v = nn.Parameter(torch.randn(k, rank, in_features) / math.sqrt(in_features))

    def forward(self, x: Tensor) -> Tensor:
        """x (B, K, in, L) -> (B, K, out, L)."""
        return self.u @ (self.v @ x)

    def dense_weight(self) -> Tensor:
        """(K, out, in)."""
        return self.u @ self.v

    @classmethod
    def from_dense(cls, weight: Tensor, rank: int) -> DirLowRank:
        """Per-direction truncated SVD of a (K, out, in) weight."""
        k, out_f, in_f = weight.shape
        layer = cls(k, in_f, out_f, rank)
        with torch.no_grad():
            for i in range(k):
                u, v = svd_factors(weight[i], rank)
                layer.u[i].copy_(u)
                layer.v[i].copy_(v)
        return layer
