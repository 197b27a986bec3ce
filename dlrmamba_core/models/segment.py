"""Prototype-mask instance segmentation branch (``DetectorConfig.task == "segment"``).

Written from the description of the prototype-mask method (YOLACT; the anchor-free YOLOv8-seg
layout): a small *protonet* turns the finest neck map into K image-wide prototype masks, and
every anchor predicts K mask coefficients beside its box and class. An instance's mask is
``sigmoid(coeffs . protos)`` cropped to its box, so masks cost one (N, K) x (K, h*w) product
after NMS, whatever the number of instances.

Prototypes are at stride 4 (:data:`PROTO_STRIDE`): the P3 neck map (stride 8) is upsampled x2
inside the protonet, as YOLACT does. Stride 4 is the resolution of the training masks
(``DetectionDataset(masks=True, mask_stride=4)``), so the loss compares prototypes and ground
truth cell for cell, and thin parts (a person's legs, a mast) 4-8 px wide at the input keep
at least one cell; stride 8 would halve the protonet's cost but blur exactly those.
"""

from __future__ import annotations

from torch import Tensor, nn
import torch.nn.functional as F

from dlrmamba_core.layers import ConvBNAct, DWConvBlock

#: Stride of the prototype masks in network-input pixels (P3 is 8; the protonet upsamples x2).
PROTO_STRIDE = 4


class ProtoNet(nn.Module):
    """P3 neck map (B, c_in, H/8, W/8) -> K prototype masks (B, K, H/4, W/4).

    3x3 conv -> nearest x2 upsample -> 3x3 conv -> 1x1 conv to K channels, no activation on
    the output (prototypes are signed: a coefficient times a prototype adds or removes).

    Args:
        c_in: channels of the P3 neck map.
        width: hidden channels.
        num_protos: K, the number of prototypes.
    """

    def __init__(self, c_in: int, width: int, num_protos: int) -> None:
        super().__init__()
        self.conv1 = ConvBNAct(c_in, width, 3)
        self.conv2 = ConvBNAct(width, width, 3)
        self.out = nn.Conv2d(width, num_protos, 1)

    def forward(self, p3: Tensor) -> Tensor:
        """p3 (B, c_in, H/8, W/8) -> protos (B, K, H/4, W/4)."""
        x = F.interpolate(self.conv1(p3), scale_factor=2.0, mode="nearest")  # (B, w, H/4, W/4)
        return self.out(self.conv2(x))


class MaskCoefficients(nn.Module):
    """Per level two depthwise-separable convs and a 1x1 to K mask coefficients per anchor
    (the same shape as the head's class branch, beside it).

    Args:
        neck: channels of the neck maps N3, N4, N5.
        width: hidden channels (the head's width).
        num_protos: K.
    """

    def __init__(self, neck: tuple[int, int, int], width: int, num_protos: int) -> None:
        super().__init__()
        self.levels = nn.ModuleList(
            nn.Sequential(DWConvBlock(c, width), DWConvBlock(width, width),
                          nn.Conv2d(width, num_protos, 1))
            for c in neck
        )

    def forward(self, feats: list[Tensor]) -> list[Tensor]:
        """[N3, N4, N5] -> per level (B, K, Hi, Wi) linear coefficients."""
        return [m(x) for x, m in zip(feats, self.levels, strict=True)]
