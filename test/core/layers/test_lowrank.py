"""Low-rank projections: truncated-SVD initialisation and layer equivalences."""

from __future__ import annotations

import pytest
import torch

from dlrmamba_core.layers import (
    DirLinear,
    DirLowRank,
    LowRankConv1x1,
    LowRankLinear,
    rank_for,
    svd_factors,
)


def test_rank_for() -> None:
    assert rank_for(0.5, 64, 32) == 16
    assert rank_for(0.01, 64, 32) == 1
    assert rank_for(1.0, 10, 7) == 7
    with pytest.raises(ValueError, match="rank_ratio"):
        rank_for(0.0, 4, 4)


def test_svd_factors_are_sqrt_sigma_scaled_and_optimal() -> None:
    torch.manual_seed(0)
    w = torch.randn(24, 16)
    u, v = svd_factors(w, 5)
    s = torch.linalg.svdvals(w)
    # Balanced factors: U^T U = V V^T = diag(Sigma_r).
    torch.testing.assert_close(u.T @ u, torch.diag(s[:5]), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(v @ v.T, torch.diag(s[:5]), atol=1e-4, rtol=1e-4)
    # Eckart-Young: the squared Frobenius error is the sum of the dropped sigma^2.
    err = torch.linalg.matrix_norm(w - u @ v) ** 2
    torch.testing.assert_close(err, (s[5:] ** 2).sum(), rtol=1e-4, atol=1e-4)


def test_linear_from_dense_full_rank_reproduces_layer() -> None:
    torch.manual_seed(0)
    dense = torch.nn.Linear(12, 20)
    lr = LowRankLinear.from_dense(dense.weight, 12, dense.bias)
    x = torch.randn(3, 12)
    torch.testing.assert_close(lr(x), dense(x), atol=1e-5, rtol=1e-5)
    assert sum(p.numel() for p in LowRankLinear(12, 20, 3).parameters()) == 3 * 32 + 20


def test_conv_form_matches_linear_form() -> None:
    torch.manual_seed(0)
    w = torch.randn(8, 6)
    b = torch.randn(8)
    lin = LowRankLinear.from_dense(w, 3, b)
    conv = LowRankConv1x1.from_dense(w[:, :, None, None], 3, b)
    x = torch.randn(2, 6, 5, 7)
    expect = lin(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
    torch.testing.assert_close(conv(x), expect, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(conv.dense_weight(), lin.dense_weight())


def test_directional_low_rank_matches_dense_at_full_rank() -> None:
    torch.manual_seed(0)
    dense = DirLinear(4, 10, 6, init_std=0.3)
    lr = DirLowRank.from_dense(dense.weight.detach(), 6)
    x = torch.randn(2, 4, 10, 9)
    torch.testing.assert_close(lr(x), dense(x), atol=1e-5, rtol=1e-5)
    assert lr(x).shape == (2, 4, 6, 9)
