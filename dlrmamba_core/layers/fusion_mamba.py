"""Fusion-Mamba Block (Fusion-Mamba, arXiv 2404.09146): feature-level RGB + thermal fusion.

A Fusion-Mamba Block (FMB) takes one backbone level of both streams and returns both streams
enhanced:

1. **SSCS** (State Space Channel Swapping, shallow fusion): the channels of each stream are cut
   into four groups and the 2nd and 4th groups are swapped between the streams, so every
   stream sees the other camera's channels; then one VSS block per stream (SS2D + MLP).
2. **DSSF** (Dual State Space Fusion, deep fusion), ``dssf_blocks`` times: each stream is
   mapped into the hidden state space by its own SS2D, and each result is gated by a gate
   computed from the *other* stream (``h_rgb * SiLU(W_t t)``, ``h_t * SiLU(W_rgb rgb)``: the
   dual cross gating) before being added back to its stream.

Our reading, where the paper leaves details open: the channel swap uses four equal groups
(the channel count must be a multiple of 4); SS2D keeps its own self-gate inside, so DSSF's
cross gate is the second ("dual") gate; the gates are dense linear layers even in the
low-rank variant (they are C x C, a small share of the parameters). Everything is
channels-last, (B, H, W, C), like the VSS block.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn
import torch.nn.functional as F

from dlrmamba_core.layers.ss2d import SS2D, LowRankSS2D, VSSBlock


def channel_swap(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """Swap the 2nd and 4th quarter of the channels (last dim) between ``a`` and ``b``.

    (B, H, W, C) x 2 -> (B, H, W, C) x 2, C a multiple of 4. Applying it twice is the identity.
    """
    c = a.shape[-1]
    if c % 4 or b.shape[-1] != c:
        raise ValueError(f"channel_swap needs equal channel counts divisible by 4; got "
                         f"{a.shape[-1]} and {b.shape[-1]}")
    a1, a2, a3, a4 = a.chunk(4, dim=-1)  # (B, H, W, C/4) each
    b1, b2, b3, b4 = b.chunk(4, dim=-1)
    return torch.cat([a1, b2, a3, b4], -1), torch.cat([b1, a2, b3, a4], -1)


def make_ss2d(dim: int, d_state: int, ssm_ratio: float, rank_ratio: float | None,
              scan: Literal["chunked", "ref"] = "chunked") -> SS2D:
    """Full-rank SS2D (``rank_ratio`` None) or Low-Rank SS2D."""
    if rank_ratio is None:
        return SS2D(dim, d_state, ssm_ratio, scan=scan)
    return LowRankSS2D(dim, d_state, ssm_ratio, scan=scan, rank_ratio=rank_ratio)


class SSCS(nn.Module):
    """Shallow fusion: channel swap between the streams, then a VSS block per stream.

    Args:
        dim: channels C of each stream (multiple of 4).
        d_state, ssm_ratio, mlp_ratio, rank_ratio, scan: as in :class:`VSSBlock`.
    """

    def __init__(self, dim: int, d_state: int = 16, ssm_ratio: float = 1.0,
                 mlp_ratio: float = 0.0, rank_ratio: float | None = None,
                 scan: Literal["chunked", "ref"] = "chunked"):
        super().__init__()
        self.vss_rgb = VSSBlock(dim, d_state, ssm_ratio, mlp_ratio, rank_ratio, scan)
        self.vss_thermal = VSSBlock(dim, d_state, ssm_ratio, mlp_ratio, rank_ratio, scan)

    def forward(self, rgb: Tensor, thermal: Tensor) -> tuple[Tensor, Tensor]:
        """(B, H, W, C) x 2 -> (B, H, W, C) x 2."""
        r, t = channel_swap(rgb, thermal)
        return self.vss_rgb(r), self.vss_thermal(t)


class DSSF(nn.Module):
    """Deep fusion in the hidden state space with dual cross gating (see the module docstring).

    ``rgb + SS2D_rgb(LN(rgb)) * SiLU(W_t LN(t))`` and symmetrically for the thermal stream.

    Args:
        dim: channels C of each stream.
        d_state, ssm_ratio, rank_ratio, scan: as in :class:`SS2D` / :class:`LowRankSS2D`.
    """

    def __init__(self, dim: int, d_state: int = 16, ssm_ratio: float = 1.0,
                 rank_ratio: float | None = None,
                 scan: Literal["chunked", "ref"] = "chunked"):
        super().__init__()
        self.norm_rgb = nn.LayerNorm(dim)
        self.norm_thermal = nn.LayerNorm(dim)
        self.ssm_rgb = make_ss2d(dim, d_state, ssm_ratio, rank_ratio, scan)
        self.ssm_thermal = make_ss2d(dim, d_state, ssm_ratio, rank_ratio, scan)
        self.gate_rgb = nn.Linear(dim, dim)  # gate computed from RGB, applied to thermal
        self.gate_thermal = nn.Linear(dim, dim)  # gate computed from thermal, applied to RGB

    def forward(self, rgb: Tensor, thermal: Tensor) -> tuple[Tensor, Tensor]:
        """(B, H, W, C) x 2 -> (B, H, W, C) x 2."""
        a, b = self.norm_rgb(rgb), self.norm_thermal(thermal)
        h_rgb, h_t = self.ssm_rgb(a), self.ssm_thermal(b)  # hidden-state features (B, H, W, C)
        z_rgb, z_t = F.silu(self.gate_rgb(a)), F.silu(self.gate_thermal(b))
        return rgb + h_rgb * z_t, thermal + h_t * z_rgb


class FusionMambaBlock(nn.Module):
    """SSCS then ``dssf_blocks`` DSSF on one level of both streams; (B, C, H, W) in and out.

    Returns the two enhanced streams (they continue down their backbones) and their sum, the
    fused feature map of this level for the neck.

    Args:
        dim: channels C (multiple of 4).
        dssf_blocks: number of stacked DSSF modules (0 = SSCS only).
        d_state, ssm_ratio, mlp_ratio, rank_ratio, scan: as in :class:`VSSBlock`.
    """

    def __init__(self, dim: int, dssf_blocks: int = 1, d_state: int = 16,
                 ssm_ratio: float = 1.0, mlp_ratio: float = 0.0,
                 rank_ratio: float | None = None,
                 scan: Literal["chunked", "ref"] = "chunked"):
        super().__init__()
        if dssf_blocks < 0:
            raise ValueError(f"dssf_blocks must be >= 0; got {dssf_blocks}")
        self.sscs = SSCS(dim, d_state, ssm_ratio, mlp_ratio, rank_ratio, scan)
        self.dssf = nn.ModuleList(DSSF(dim, d_state, ssm_ratio, rank_ratio, scan)
                                  for _ in range(dssf_blocks))
        self.norm_rgb = nn.LayerNorm(dim)
        self.norm_thermal = nn.LayerNorm(dim)

    def forward(self, rgb: Tensor, thermal: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """rgb, thermal (B, C, H, W) -> (rgb', thermal', fused), each (B, C, H, W)."""
        r = rgb.permute(0, 2, 3, 1)  # (B, H, W, C)
        t = thermal.permute(0, 2, 3, 1)
        r, t = self.sscs(r, t)
        for block in self.dssf:
            r, t = block(r, t)
        r = self.norm_rgb(r).permute(0, 3, 1, 2)  # (B, C, H, W)
        t = self.norm_thermal(t).permute(0, 3, 1, 2)
        return r, t, r + t
