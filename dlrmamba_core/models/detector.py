"""The DLRMamba detector: pixel fusion -> backbone -> PAN neck -> decoupled anchor-free head.

Read top to bottom: backbone stages, neck, head (with distribution-focal box decoding), then
the detector that ties them together.
"""

from __future__ import annotations

from collections.abc import Sequence
import math

import torch
from torch import Tensor, nn
import torch.nn.functional as F

from dlrmamba_core.layers import ConvBNAct, DWConvBlock, PixelFusion, VSSBlock
from dlrmamba_core.layers.conv import InvertedResidual
from dlrmamba_core.models.config import DetectorConfig
from dlrmamba_core.models.segment import MaskCoefficients, ProtoNet

STRIDES = (8, 16, 32)


class VSSStage(nn.Module):
    """A stack of VSS blocks on a (B, C, H, W) map (converted to channels-last inside)."""

    def __init__(self, cfg: DetectorConfig, dim: int, depth: int, directions: int = 4):
        super().__init__()
        self.blocks = nn.ModuleList(
            VSSBlock(dim, cfg.d_state, cfg.ssm_ratio, cfg.mlp_ratio, cfg.rank_ratio,
                     directions=directions)
            for _ in range(depth)
        )
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: Tensor) -> Tensor:
        """x (B, C, H, W) -> (B, C, H, W)."""
        x = x.permute(0, 2, 3, 1)  # (B, H, W, C)
        for block in self.blocks:
            x = block(x)
        return self.norm(x).permute(0, 3, 1, 2)  # (B, C, H, W)


class Backbone(nn.Module):
    """Stem to stride 4, then three stages at strides 8, 16, 32 returning (P3, P4, P5)."""

    def __init__(self, cfg: DetectorConfig):
        super().__init__()
        s0, s1 = cfg.stem
        self.stem = nn.Sequential(ConvBNAct(3, s0, 3, 2), ConvBNAct(s0, s1, 3, 2))
        self.downs = nn.ModuleList()
        self.stages = nn.ModuleList()
        c_prev = s1
        for width, depth, kind, dirs in zip(cfg.widths, cfg.depths, cfg.stage_types,
                                            cfg.scan_dirs, strict=True):
            self.downs.append(DWConvBlock(c_prev, width, 3, 2))
            if kind == "vss":
                self.stages.append(VSSStage(cfg, width, depth, dirs))
            else:
                blocks = [InvertedResidual(width, cfg.conv_expand) for _ in range(depth)]
                self.stages.append(nn.Sequential(*blocks))
            c_prev = width

    def forward(self, x: Tensor) -> list[Tensor]:
        """x (B, 3, H, W) -> [P3 (B, w0, H/8, W/8), P4 (B, w1, H/16, W/16), P5 (B, w2, ...)]."""
        x = self.stem(x)
        feats = []
        for down, stage in zip(self.downs, self.stages, strict=True):
            x = stage(down(x))
            feats.append(x)
        return feats


class PANNeck(nn.Module):
    """Light PAN: top-down (upsample + concat) then bottom-up (stride-2 + concat) fusion."""

    def __init__(self, widths: tuple[int, int, int], neck: tuple[int, int, int]):
        super().__init__()
        w3, w4, w5 = widths
        n3, n4, n5 = neck
        self.lat5 = ConvBNAct(w5, n5, 1)
        self.td4 = DWConvBlock(n5 + w4, n4)
        self.td3 = DWConvBlock(n4 + w3, n3)
        self.down3 = DWConvBlock(n3, n3, 3, 2)
        self.bu4 = DWConvBlock(n3 + n4, n4)
        self.down4 = DWConvBlock(n4, n4, 3, 2)
        self.bu5 = DWConvBlock(n4 + n5, n5)

    def forward(self, feats: list[Tensor]) -> list[Tensor]:
        """[P3, P4, P5] -> [N3 (B, n3, H/8, W/8), N4, N5]."""
        p3, p4, p5 = feats
        l5 = self.lat5(p5)
        t4 = self.td4(torch.cat([F.interpolate(l5, scale_factor=2.0, mode="nearest"), p4], 1))
        t3 = self.td3(torch.cat([F.interpolate(t4, scale_factor=2.0, mode="nearest"), p3], 1))
        b4 = self.bu4(torch.cat([self.down3(t3), t4], 1))
        b5 = self.bu5(torch.cat([self.down4(b4), l5], 1))
        return [t3, b4, b5]


class DetectHead(nn.Module):
    """Decoupled anchor-free head: per level a box branch (4 * reg_max DFL logits) and a class
    branch (num_classes logits), each two depthwise-separable convs and a 1x1 prediction."""

    def __init__(self, neck: tuple[int, int, int], num_classes: int, width: int, reg_max: int):
        super().__init__()
        self.nc, self.reg_max = num_classes, reg_max
        self.box = nn.ModuleList(
            nn.Sequential(DWConvBlock(c, width), DWConvBlock(width, width),
                          nn.Conv2d(width, 4 * reg_max, 1))
            for c in neck
        )
        self.cls = nn.ModuleList(
            nn.Sequential(DWConvBlock(c, width), DWConvBlock(width, width),
                          nn.Conv2d(width, num_classes, 1))
            for c in neck
        )
        self.register_buffer("bins", torch.arange(reg_max, dtype=torch.float32), persistent=False)
        self.reset_bias()

    def reset_bias(self) -> None:
        """Priors: class probability 1% (early BCE is not swamped by the many easy background
        anchors); box side distances geometric with mean ~1.5 strides, i.e. initial boxes ~3
        cells wide. A uniform prior (mean reg_max / 2) starts with boxes so large that small
        objects get near-zero IoU, hence near-zero task-aligned weight, and are never learned."""
        with torch.no_grad():
            for seq in self.cls:
                seq[-1].bias.fill_(-math.log((1 - 0.01) / 0.01))
            side = -0.5 * torch.arange(self.reg_max, dtype=torch.float32)  # log-prior per bin
            for seq in self.box:
                seq[-1].bias.copy_(side.repeat(4))  # (4 * reg_max,): l, t, r, b bins

    def forward(self, feats: list[Tensor]) -> list[Tensor]:
        """[N3, N4, N5] -> per level (B, 4 * reg_max + nc, Hi, Wi) raw outputs."""
        return [torch.cat([b(x), c(x)], 1) for x, b, c in zip(feats, self.box, self.cls,
                                                                  strict=True)]

    def decode(self, outs: list[Tensor], strides: tuple[int, ...]) -> Tensor:
        """Raw level outputs -> (B, 4 + nc, A): xyxy boxes in input pixels, class probabilities.

        Boxes: :func:`decode_boxes` (the one box decode, shared with the detection loss).
        """
        boxes = decode_boxes(outs, strides, self.reg_max, self.bins)  # (B, 4, A)
        scores = [out.flatten(2)[:, 4 * self.reg_max:4 * self.reg_max + self.nc].sigmoid()
                  for out in outs]  # per level (B, nc, HW)
        return torch.cat([boxes, torch.cat(scores, 2)], 1)


def decode_boxes(outs: list[Tensor], strides: Sequence[int], reg_max: int,
                 bins: Tensor | None = None) -> Tensor:
    """The box decode: per-level raw outputs -> (B, 4, A) xyxy boxes in input pixels.

    Anchors are cell centres ``((j + 0.5) * s, (i + 0.5) * s)`` ordered level by level,
    row-major inside a level; the first ``4 * reg_max`` channels of each level are the
    distribution-focal logits of the left, top, right, bottom side distances (``reg_max`` bins
    each, coordinate-major); a side distance is the expectation over its bins, in strides.

    Args:
        outs: per level (B, 4 * reg_max + ..., Hi, Wi) (further channels are ignored).
        strides: per level stride, input pixels.
        reg_max: bins per side.
        bins: (reg_max,) ``0..reg_max-1`` (a module buffer, so export sees a constant);
            None: made here.
    """
    b = outs[0].shape[0]
    if bins is None:
        bins = torch.arange(reg_max, device=outs[0].device, dtype=outs[0].dtype)
    boxes = []
    for out, s in zip(outs, strides, strict=True):
        h, w = out.shape[-2:]
        box = out.flatten(2)[:, :4 * reg_max]  # (B, 4R, HW)
        prob = box.reshape(b, 4, reg_max, h * w).softmax(2)  # (B, 4, R, HW)
        dist = (prob * bins[None, None, :, None]).sum(2)  # (B, 4, HW) ltrb in strides
        anchors = make_anchors(h, w, out.device, dist.dtype)  # (2, HW) grid units
        xy1 = anchors[None] - dist[:, :2]
        xy2 = anchors[None] + dist[:, 2:]
        boxes.append(torch.cat([xy1, xy2], 1) * s)  # (B, 4, HW) input pixels
    return torch.cat(boxes, 2)


def make_anchors(h: int, w: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """(2, h*w) anchor centres (x, y) in grid units, row-major."""
    ys = torch.arange(h, device=device, dtype=dtype) + 0.5
    xs = torch.arange(w, device=device, dtype=dtype) + 0.5
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx.reshape(-1), gy.reshape(-1)], 0)


def build_variant_backbone(cfg: DetectorConfig) -> nn.Module:
    """The backbone of a non-default ``cfg.arch`` (fusion_mamba, mobilemamba)."""
    from dlrmamba_core.models.backbones import build_variant_backbone as build

    return build(cfg)  # imported here: models.backbones imports this module


class DetectorNet(nn.Module):
    """RGB + thermal detector network; see docs/design/interfaces.md for the forward contract.

    (The inference engine that runs its ONNX export on the robot is ``runtime.Detector``.)

    ``model(rgb (B,3,H,W), thermal (B,1,H,W))`` with H, W multiples of 32 and inputs in [0, 1]:
    in train mode a list of three (B, 4 * reg_max + nc, H/s, W/s) maps (s = 8, 16, 32); in
    eval mode (B, 4 + nc, A) with A = sum(H/s * W/s).

    A segment model (``cfg.task == "segment"``, K = ``cfg.num_protos``) returns a pair: in
    train mode (three (B, 4 * reg_max + nc + K, H/s, W/s) maps, protos (B, K, H/4, W/4)); in
    eval mode (predictions (B, 4 + nc + K, A): boxes, class probabilities, then the K linear
    mask coefficients of each anchor; protos (B, K, H/4, W/4)). The mask of a detection is
    ``sigmoid(coeffs . protos)`` cropped to its box (``runtime.segment.decode_masks``).
    """

    strides = STRIDES

    def __init__(self, cfg: DetectorConfig):
        super().__init__()
        self.cfg = cfg
        self.num_classes = cfg.num_classes
        self.reg_max = cfg.reg_max
        # fusion_mamba fuses features in its two-stream backbone: no pixel fusion in front.
        dual = cfg.arch == "fusion_mamba"
        self.fusion: PixelFusion | None = None if dual else PixelFusion(cfg.fusion_hidden)
        self.backbone = Backbone(cfg) if cfg.arch == "dlrmamba" else build_variant_backbone(cfg)
        self.neck = PANNeck(cfg.widths, cfg.neck)
        self.head = DetectHead(cfg.neck, cfg.num_classes, cfg.head_width, cfg.reg_max)
        # Segment models only: a detect model has no such modules, so its state dict (and
        # every checkpoint written before the segment head existed) is unchanged.
        self.protonet: ProtoNet | None = None
        self.mask_coef: MaskCoefficients | None = None
        if cfg.task == "segment":
            self.protonet = ProtoNet(cfg.neck[0], cfg.proto_width, cfg.num_protos)
            self.mask_coef = MaskCoefficients(cfg.neck, cfg.head_width, cfg.num_protos)

    def forward_features(self, rgb: Tensor, thermal: Tensor) -> list[Tensor]:
        """Pixel-fused image (fusion_mamba: both images) -> backbone -> neck: [N3, N4, N5]."""
        if self.fusion is None:
            return self.neck(self.backbone(rgb, thermal))
        return self.neck(self.backbone(self.fusion(rgb, thermal)))

    def forward(self, rgb: Tensor, thermal: Tensor
                ) -> list[Tensor] | Tensor | tuple[list[Tensor] | Tensor, Tensor]:
        """See the class docstring."""
        feats = self.forward_features(rgb, thermal)
        outs = self.head(feats)
        if self.protonet is None or self.mask_coef is None:
            if self.training:
                return outs
            return self.head.decode(outs, self.strides)
        protos = self.protonet(feats[0])  # (B, K, H/4, W/4)
        coefs = self.mask_coef(feats)  # per level (B, K, Hi, Wi)
        if self.training:
            return [torch.cat([o, c], 1) for o, c in zip(outs, coefs, strict=True)], protos
        dets = self.head.decode(outs, self.strides)  # (B, 4 + nc, A)
        coef = torch.cat([c.flatten(2) for c in coefs], 2)  # (B, K, A), same anchor order
        return torch.cat([dets, coef], 1), protos
