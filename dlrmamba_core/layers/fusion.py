"""Pixel-level RGB + thermal fusion: a ~2k-parameter module producing one fused image."""

from __future__ import annotations

import torch
from torch import Tensor, nn
import torch.nn.functional as F


class PixelFusion(nn.Module):
    """Fuse an RGB image and a registered thermal image into one 3-channel image.

    A small conv net looks at both modalities and predicts, per pixel and channel, how much of
    the RGB value to keep (gate ``g``); the output is ``g * rgb + (1 - g) * thermal``. At init
    ``g = 0.5``: a plain average. The net runs at half resolution (first conv stride 2), then
    quarter resolution (stride-2 depthwise conv), and its 3 gate maps are upsampled (nearest)
    x4: the full-resolution work is only the upsample and the mix, which stays per pixel
    (a full-resolution version cost ~40 % of the student's CPU time in onnxruntime).

    Args:
        hidden: width of the hidden layers (16 gives ~1.1k parameters; multiples of 8 avoid
            channel padding in onnxruntime's blocked convolutions).
    """

    def __init__(self, hidden: int = 16):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(4, hidden, 3, stride=2, padding=1),
            nn.SiLU(),
            nn.Conv2d(hidden, hidden, 3, stride=2, padding=1, groups=hidden),  # cheap context
            nn.SiLU(),
            nn.Conv2d(hidden, hidden, 1),
            nn.SiLU(),
            nn.Conv2d(hidden, 3, 1),
        )
        with torch.no_grad():
            # Zero last layer: start as the average of both modalities, not a random mix.
            self.net[-1].weight.zero_()
            self.net[-1].bias.zero_()

    def forward(self, rgb: Tensor, thermal: Tensor) -> Tensor:
        """rgb (B, 3, H, W), thermal (B, 1, H, W), both in [0, 1], H and W multiples of 4 ->
        fused (B, 3, H, W)."""
        out = self.net(torch.cat([rgb, thermal], 1))  # (B, 3, H/4, W/4)
        # Sigmoid before the nearest upsample (which only repeats values): the same numbers,
        # 16x fewer sigmoids (at full resolution it was ~6 % of the cnn's CPU time).
        gate = F.interpolate(torch.sigmoid(out), scale_factor=4.0, mode="nearest")  # (B,3,H,W)
        return thermal + gate * (rgb - thermal)  # = g * rgb + (1 - g) * thermal
