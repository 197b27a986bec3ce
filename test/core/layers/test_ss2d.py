"""SS2D, Low-Rank SS2D, VSS block and pixel fusion."""

from __future__ import annotations

import torch

from dlrmamba_core.layers import SS2D, LowRankSS2D, PixelFusion, VSSBlock, cross_merge, cross_scan


def test_cross_scan_orders_and_merge_inverts() -> None:
    x = torch.arange(2 * 3 * 4, dtype=torch.float32).reshape(1, 2, 3, 4)  # (B, E, H, W)
    xs = cross_scan(x)
    assert xs.shape == (1, 4, 2, 12)
    assert xs[0, 0, 0].tolist() == x[0, 0].flatten().tolist()  # row-major
    assert xs[0, 1, 0].tolist() == x[0, 0].T.flatten().tolist()  # column-major
    assert xs[0, 2, 0].tolist() == x[0, 0].flatten().flip(0).tolist()
    assert xs[0, 3, 0].tolist() == x[0, 0].T.flatten().flip(0).tolist()
    # Each direction maps back to its pixel: merging the 4 copies gives 4 * x.
    torch.testing.assert_close(cross_merge(xs, 3, 4), 4 * x.flatten(2))


def test_ss2d_chunked_equals_reference_scan_and_backprops() -> None:
    torch.manual_seed(0)
    block = SS2D(16, d_state=4, ssm_ratio=1.5)
    x = torch.randn(2, 5, 7, 16, requires_grad=True)
    y_fast = block(x)
    block.scan = "ref"
    y_ref = block(x)
    torch.testing.assert_close(y_fast, y_ref, atol=1e-4, rtol=1e-4)
    y_fast.square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in block.parameters())


def test_low_rank_ss2d_is_smaller_and_runs() -> None:
    full = SS2D(32, d_state=16)
    low = LowRankSS2D(32, d_state=4, rank_ratio=0.25)
    n_full = sum(p.numel() for p in full.parameters())
    n_low = sum(p.numel() for p in low.parameters())
    assert n_low < 0.5 * n_full
    y = low(torch.randn(1, 4, 6, 32))
    assert y.shape == (1, 4, 6, 32) and torch.isfinite(y).all()


def test_vss_block_shape_and_residual() -> None:
    block = VSSBlock(24, d_state=4, mlp_ratio=2.0)
    x = torch.randn(2, 4, 4, 24)
    y = block(x)
    assert y.shape == x.shape
    assert not torch.allclose(y, x)


def test_pixel_fusion_is_small_and_starts_as_average() -> None:
    fusion = PixelFusion()
    n = sum(p.numel() for p in fusion.parameters())
    assert 800 <= n <= 2500, n
    rgb = torch.rand(1, 3, 16, 20)
    th = torch.rand(1, 1, 16, 20)
    torch.testing.assert_close(fusion(rgb, th), 0.5 * rgb + 0.5 * th)
