"""One-level 2-D Haar wavelet transform as fixed-weight strided convolutions.

``HaarDWT`` is a depthwise stride-2 2x2 convolution with four fixed filters per channel (LL, LH,
HL, HH); ``HaarIDWT`` is the matching transposed convolution. The four Haar filters are
orthonormal (each has entries +-1/2, so unit norm, and they are mutually orthogonal), so the
inverse is the transpose and ``IDWT(DWT(x)) == x`` up to float rounding. Both export to ONNX as
plain ``Conv`` / ``ConvTranspose`` nodes.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
import torch.nn.functional as F


def haar_filters() -> Tensor:
    """(4, 1, 2, 2) orthonormal Haar filters: LL (average), LH (rows), HL (columns), HH."""
    ll = torch.tensor([[1.0, 1.0], [1.0, 1.0]])
    lh = torch.tensor([[1.0, 1.0], [-1.0, -1.0]])  # vertical change: horizontal edges
    hl = torch.tensor([[1.0, -1.0], [1.0, -1.0]])  # horizontal change: vertical edges
    hh = torch.tensor([[1.0, -1.0], [-1.0, 1.0]])  # diagonal detail
    return (0.5 * torch.stack([ll, lh, hl, hh]))[:, None]  # (4, 1, 2, 2)


class HaarDWT(nn.Module):
    """(B, C, H, W) -> (B, 4C, H/2, W/2); output channel ``4c + k`` is band k of channel c.

    Bands k: 0 LL, 1 LH, 2 HL, 3 HH. H and W must be even (:class:`WaveletBranch` pads).
    The filters are a non-persistent buffer: fixed, not trained, not in checkpoints.
    """

    weight: Tensor

    def __init__(self, channels: int):
        super().__init__()
        self.channels = channels
        self.register_buffer("weight", haar_filters().repeat(channels, 1, 1, 1),
                             persistent=False)  # (4C, 1, 2, 2)

    def forward(self, x: Tensor) -> Tensor:
        """x (B, C, H, W), H and W even -> (B, 4C, H/2, W/2)."""
        if x.shape[-2] % 2 or x.shape[-1] % 2:
            raise ValueError(f"HaarDWT needs even H and W; got {tuple(x.shape[-2:])}")
        return F.conv2d(x, self.weight, stride=2, groups=self.channels)


class HaarIDWT(nn.Module):
    """Inverse of :class:`HaarDWT`: (B, 4C, H/2, W/2) -> (B, C, H, W)."""

    weight: Tensor

    def __init__(self, channels: int):
        super().__init__()
        self.channels = channels
        self.register_buffer("weight", haar_filters().repeat(channels, 1, 1, 1),
                             persistent=False)  # (4C, 1, 2, 2)

    def forward(self, x: Tensor) -> Tensor:
        """x (B, 4C, h, w) -> (B, C, 2h, 2w)."""
        return F.conv_transpose2d(x, self.weight, stride=2, groups=self.channels)


class WaveletBranch(nn.Module):
    """MobileMamba's wavelet enhancement: DWT -> depthwise conv on the four bands -> IDWT.

    The conv sees the low-frequency band and the three detail bands of every channel at half
    resolution (a 3x3 there covers 6x6 input pixels); the IDWT puts the result back at full
    resolution, so the branch can sharpen the high-frequency detail the SSM path smooths.
    Odd H or W are zero-padded by one row / column for the transform and cropped after it.

    Args:
        channels: C.
        kernel: depthwise kernel size in the wavelet domain.
    """

    def __init__(self, channels: int, kernel: int = 3):
        super().__init__()
        self.dwt = HaarDWT(channels)
        self.idwt = HaarIDWT(channels)
        self.conv = nn.Conv2d(4 * channels, 4 * channels, kernel, padding=kernel // 2,
                              groups=4 * channels, bias=False)
        # Small scale: the branch starts close to zero so the block starts as its SSM path.
        self.scale = nn.Parameter(torch.full((1, 4 * channels, 1, 1), 0.1))

    def forward(self, x: Tensor) -> Tensor:
        """x (B, C, H, W) -> (B, C, H, W)."""
        h, w = x.shape[-2:]
        pad_h, pad_w = h % 2, w % 2
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h))  # (B, C, H + pad_h, W + pad_w)
        bands = self.dwt(x)  # (B, 4C, H/2, W/2)
        y = self.idwt(self.conv(bands) * self.scale)  # (B, C, H, W) (padded size)
        return y[..., :h, :w]
