"""Building blocks: low-rank projections, SS2D / Low-Rank SS2D, VSS block, pixel fusion."""

from dlrmamba_core.layers.conv import ConvBNAct, DWConvBlock
from dlrmamba_core.layers.fusion import PixelFusion
from dlrmamba_core.layers.lowrank import (
    DirLinear,
    DirLowRank,
    LowRankConv1x1,
    LowRankLinear,
    rank_for,
    svd_factors,
)
from dlrmamba_core.layers.ss2d import SS2D, LowRankSS2D, Mlp, VSSBlock, cross_merge, cross_scan

__all__ = [
    "SS2D",
    "ConvBNAct",
    "DWConvBlock",
    "DirLinear",
    "DirLowRank",
    "LowRankConv1x1",
    "LowRankLinear",
    "LowRankSS2D",
    "Mlp",
    "PixelFusion",
    "VSSBlock",
    "cross_merge",
    "cross_scan",
    "rank_for",
    "svd_factors",
]
