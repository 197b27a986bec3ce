"""MobileMamba's Multi-Receptive Field Feature Interaction (MRFFI, arXiv 2411.15941).

The channels of a (B, C, H, W) map are split three ways:

* ``global`` channels -> **WTE-Mamba**: SS2D (long range) plus a Haar-wavelet branch
  (:class:`~dlrmamba_core.layers.wavelet.WaveletBranch`) for high-frequency detail;
* ``local`` channels -> **MK-DeConv**: the local channels cut into one group per kernel size,
  each group a depthwise conv of its kernel (3, 5, 7 by default);
* the rest -> identity (the paper's "eliminate redundant identity": no compute spent there).

The three parts are concatenated and mixed by a 1x1 conv. :class:`MobileMambaBlock` wraps it
as ``x + DW(x)``, ``x + MRFFI(x)``, ``x + FFN(x)``.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from dlrmamba_core.layers.conv import ConvBNAct
from dlrmamba_core.layers.fusion_mamba import make_ss2d
from dlrmamba_core.layers.wavelet import WaveletBranch

PAPER_GLOBAL_RATIOS = (0.8, 0.7, 0.6)
"""MobileMamba's per-stage share of channels in the WTE-Mamba (global) branch."""
PAPER_LOCAL_RATIOS = (0.2, 0.2, 0.3)
"""MobileMamba's per-stage share of channels in the MK-DeConv (local) branch."""


def split_channels(dim: int, global_ratio: float, local_ratio: float) -> tuple[int, int, int]:
    """(global, local, identity) channel counts of an MRFFI on ``dim`` channels.

    Global is rounded to a multiple of 4 (at least 4: SS2D's inner width stays SIMD-friendly),
    local to the nearest integer and capped at what is left; identity takes the rest.

    Raises:
        ValueError: ratios outside [0, 1], or summing above 1.
    """
    if not (0.0 < global_ratio <= 1.0 and 0.0 <= local_ratio <= 1.0
            and global_ratio + local_ratio <= 1.0 + 1e-9):
        raise ValueError(f"MRFFI ratios need 0 < global <= 1, 0 <= local, global + local <= 1; "
                         f"got global {global_ratio}, local {local_ratio}")
    g = min(dim, max(4, 4 * round(global_ratio * dim / 4)))
    loc = min(dim - g, round(local_ratio * dim))
    return g, loc, dim - g - loc


class WTEMamba(nn.Module):
    """Wavelet-transform-enhanced Mamba on (B, C, H, W): ``SS2D(LN(x)) + Wavelet(x)``.

    Args:
        dim: channels.
        d_state, ssm_ratio, rank_ratio, scan: the SS2D (Low-Rank SS2D when rank_ratio is set).
    """

    def __init__(self, dim: int, d_state: int = 16, ssm_ratio: float = 1.0,
                 rank_ratio: float | None = None,
                 scan: Literal["chunked", "ref"] = "chunked"):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.ssm = make_ss2d(dim, d_state, ssm_ratio, rank_ratio, scan)
        self.wavelet = WaveletBranch(dim)

    def forward(self, x: Tensor) -> Tensor:
        """x (B, C, H, W) -> (B, C, H, W)."""
        g = self.ssm(self.norm(x.permute(0, 2, 3, 1)))  # (B, H, W, C)
        return g.permute(0, 3, 1, 2) + self.wavelet(x)


class MKDeConv(nn.Module):
    """Multi-kernel depthwise conv: one channel group per kernel size, concatenated.

    Args:
        dim: channels (cut into ``len(kernels)`` groups, the first groups one larger when
            ``dim`` is not divisible; kernels without a channel are dropped).
        kernels: odd kernel sizes.
    """

    def __init__(self, dim: int, kernels: tuple[int, ...] = (3, 5, 7)):
        super().__init__()
        if not kernels or any(k % 2 == 0 or k < 1 for k in kernels):
            raise ValueError(f"MK-DeConv kernels must be odd and >= 1; got {kernels}")
        n = len(kernels)
        sizes = [dim // n + (1 if i < dim % n else 0) for i in range(n)]
        self.sizes = [s for s in sizes if s > 0]
        self.convs = nn.ModuleList(
            ConvBNAct(s, s, k, groups=s) for s, k in zip(sizes, kernels, strict=True) if s > 0
        )

    def forward(self, x: Tensor) -> Tensor:
        """x (B, C, H, W) -> (B, C, H, W)."""
        parts = x.split(self.sizes, dim=1)
        return torch.cat([conv(p) for conv, p in zip(self.convs, parts, strict=True)], 1)


class MRFFI(nn.Module):
    """Channel split -> WTE-Mamba | MK-DeConv | identity -> concat -> 1x1 conv (B, C, H, W).

    Args:
        dim: channels C.
        global_ratio: share of channels in the WTE-Mamba branch.
        local_ratio: share in the MK-DeConv branch (identity: the rest).
        kernels: MK-DeConv kernel sizes.
        d_state, ssm_ratio, rank_ratio, scan: the SS2D of the global branch.
    """

    def __init__(self, dim: int, global_ratio: float = 0.8, local_ratio: float = 0.2,
                 kernels: tuple[int, ...] = (3, 5, 7), d_state: int = 16,
                 ssm_ratio: float = 1.0, rank_ratio: float | None = None,
                 scan: Literal["chunked", "ref"] = "chunked"):
        super().__init__()
        self.split = split_channels(dim, global_ratio, local_ratio)
        g, loc, _ = self.split
        self.global_branch = WTEMamba(g, d_state, ssm_ratio, rank_ratio, scan)
        self.local_branch: nn.Module | None = MKDeConv(loc, kernels) if loc > 0 else None
        self.proj = nn.Sequential(nn.SiLU(), nn.Conv2d(dim, dim, 1, bias=False),
                                  nn.BatchNorm2d(dim))

    def forward(self, x: Tensor) -> Tensor:
        """x (B, C, H, W) -> (B, C, H, W)."""
        sizes = [s for s in self.split if s > 0]  # no zero-width Split output in ONNX
        parts = list(x.split(sizes, dim=1))  # (B, g | l | i, H, W), empty parts left out
        parts[0] = self.global_branch(parts[0])
        if self.local_branch is not None:
            parts[1] = self.local_branch(parts[1])
        return self.proj(torch.cat(parts, 1))


class MobileMambaBlock(nn.Module):
    """``x + DW3x3(x)``, ``x + MRFFI(x)``, ``x + FFN(x)`` on (B, C, H, W).

    Args:
        dim: channels.
        ffn_ratio: FFN hidden = ffn_ratio * dim (0 = no FFN).
        Others: as in :class:`MRFFI`.
    """

    def __init__(self, dim: int, global_ratio: float = 0.8, local_ratio: float = 0.2,
                 kernels: tuple[int, ...] = (3, 5, 7), d_state: int = 16,
                 ssm_ratio: float = 1.0, ffn_ratio: float = 2.0,
                 rank_ratio: float | None = None,
                 scan: Literal["chunked", "ref"] = "chunked"):
        super().__init__()
        self.dw = nn.Sequential(nn.Conv2d(dim, dim, 3, padding=1, groups=dim, bias=False),
                                nn.BatchNorm2d(dim))
        self.mixer = MRFFI(dim, global_ratio, local_ratio, kernels, d_state, ssm_ratio,
                           rank_ratio, scan)
        self.ffn: nn.Module | None = None
        if ffn_ratio > 0:
            hidden = int(ffn_ratio * dim)
            self.ffn = nn.Sequential(ConvBNAct(dim, hidden, 1), nn.Conv2d(hidden, dim, 1,
                                                                           bias=False),
                                     nn.BatchNorm2d(dim))

    def forward(self, x: Tensor) -> Tensor:
        """x (B, C, H, W) -> (B, C, H, W)."""
        x = x + self.dw(x)
        x = x + self.mixer(x)
        if self.ffn is not None:
            x = x + self.ffn(x)
        return x
