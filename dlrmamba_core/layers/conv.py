"""Plain convolution blocks shared by the stem, the CNN yardstick, the neck and the head."""

from __future__ import annotations

from torch import Tensor, nn


class ConvBNAct(nn.Module):
    """Conv2d (no bias) -> BatchNorm -> SiLU; ``padding = k // 2`` keeps H, W at stride 1."""

    def __init__(self, c_in: int, c_out: int, k: int = 3, stride: int = 1, groups: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, k, stride, k // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(c_out)
        self.act = nn.SiLU()

    def forward(self, x: Tensor) -> Tensor:
        """x (B, c_in, H, W) -> (B, c_out, H / stride, W / stride)."""
        return self.act(self.bn(self.conv(x)))


class DWConvBlock(nn.Module):
    """Depthwise-separable conv: depthwise k x k (stride) then pointwise 1x1, each BN + SiLU."""

    def __init__(self, c_in: int, c_out: int, k: int = 3, stride: int = 1):
        super().__init__()
        self.dw = ConvBNAct(c_in, c_in, k, stride, groups=c_in)
        self.pw = ConvBNAct(c_in, c_out, 1)

    def forward(self, x: Tensor) -> Tensor:
        """x (B, c_in, H, W) -> (B, c_out, H / stride, W / stride)."""
        return self.pw(self.dw(x))


class InvertedResidual(nn.Module):
    """MobileNetV2-style block: 1x1 expand -> depthwise 3x3 -> 1x1 project, residual."""

    def __init__(self, c: int, expand: float = 2.0):
        super().__init__()
        hidden = int(c * expand)
        self.expand = ConvBNAct(c, hidden, 1)
        self.dw = ConvBNAct(hidden, hidden, 3, groups=hidden)
        self.project = nn.Sequential(nn.Conv2d(hidden, c, 1, bias=False), nn.BatchNorm2d(c))

    def forward(self, x: Tensor) -> Tensor:
        """x (B, C, H, W) -> (B, C, H, W)."""
        return x + self.project(self.dw(self.expand(x)))
