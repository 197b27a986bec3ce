"""The backbones of the ``fusion_mamba`` and ``mobilemamba`` architectures (``cfg.arch``).

Both return ``[P3, P4, P5]`` at strides 8, 16, 32 with ``cfg.widths`` channels, like the
default :class:`~dlrmamba_core.models.detector.Backbone`, so the PAN neck and the head are
shared by every variant.

* :class:`FusionMambaBackbone` (Fusion-Mamba, arXiv 2404.09146) takes the two images: one
  backbone stream per camera (RGB 3 channels, thermal 1 channel; no pixel fusion in front),
  a Fusion-Mamba Block at each of P3, P4, P5 whose enhanced streams continue down their
  backbones and whose sum is the fused level for the neck.
* :class:`MobileMambaBackbone` (MobileMamba, arXiv 2411.15941) takes the pixel-fused image:
  stem to stride 4, then three stages (stride-2 depthwise-separable downsampling + MRFFI
  blocks).
"""

from __future__ import annotations

from torch import Tensor, nn

from dlrmamba_core.layers.conv import ConvBNAct, DWConvBlock
from dlrmamba_core.layers.fusion_mamba import FusionMambaBlock
from dlrmamba_core.layers.mrffi import MobileMambaBlock
from dlrmamba_core.models.config import DetectorConfig


class FusionMambaBackbone(nn.Module):
    """Two streams (``cfg.stem`` / ``widths`` / ``stage_types`` each) + FMBs at P3, P4, P5.

    Each stream is the default detector backbone; the thermal stream's first stem conv takes
    one channel. ``cfg.dssf_blocks[i]`` DSSF modules per level.
    """

    def __init__(self, cfg: DetectorConfig):
        super().__init__()
        from dlrmamba_core.models.detector import Backbone  # (detector imports us lazily)

        bad = [w for w in cfg.widths if w % 4]
        if bad:
            raise ValueError(f"fusion_mamba widths must be multiples of 4 (channel swap in "
                             f"four groups); got {cfg.widths}")
        self.rgb = Backbone(cfg)
        self.thermal = Backbone(cfg)
        self.thermal.stem[0] = ConvBNAct(1, cfg.stem[0], 3, 2)  # 1-channel thermal input
        self.fmb = nn.ModuleList(
            FusionMambaBlock(w, n, cfg.d_state, cfg.ssm_ratio, cfg.mlp_ratio, cfg.rank_ratio)
            for w, n in zip(cfg.widths, cfg.dssf_blocks, strict=True)
        )

    def forward(self, rgb: Tensor, thermal: Tensor) -> list[Tensor]:
        """rgb (B, 3, H, W), thermal (B, 1, H, W) -> [P3 (B, w0, H/8, W/8), P4, P5]."""
        r, t = self.rgb.stem(rgb), self.thermal.stem(thermal)  # (B, s1, H/4, W/4) each
        feats = []
        for i, fmb in enumerate(self.fmb):
            r = self.rgb.stages[i](self.rgb.downs[i](r))  # (B, w_i, H/s, W/s)
            t = self.thermal.stages[i](self.thermal.downs[i](t))
            r, t, fused = fmb(r, t)
            feats.append(fused)
        return feats


class MobileMambaBackbone(nn.Module):
    """Stem to stride 4, then three stages of MRFFI blocks at strides 8, 16, 32.

    Per stage i: ``DWConvBlock`` stride 2 to ``cfg.widths[i]``, then ``cfg.depths[i]``
    :class:`~dlrmamba_core.layers.mrffi.MobileMambaBlock` with ``cfg.mrffi_global[i]`` /
    ``cfg.mrffi_local[i]`` channel shares, ``cfg.mk_kernels``, FFN ratio ``cfg.mlp_ratio``.
    """

    def __init__(self, cfg: DetectorConfig):
        super().__init__()
        s0, s1 = cfg.stem
        self.stem = nn.Sequential(ConvBNAct(3, s0, 3, 2), ConvBNAct(s0, s1, 3, 2))
        self.downs = nn.ModuleList()
        self.stages = nn.ModuleList()
        c_prev = s1
        for i, (width, depth) in enumerate(zip(cfg.widths, cfg.depths, strict=True)):
            self.downs.append(DWConvBlock(c_prev, width, 3, 2))
            self.stages.append(nn.Sequential(*(
                MobileMambaBlock(width, cfg.mrffi_global[i], cfg.mrffi_local[i],
                                 cfg.mk_kernels, cfg.d_state, cfg.ssm_ratio, cfg.mlp_ratio,
                                 cfg.rank_ratio)
                for _ in range(depth))))
            c_prev = width

    def forward(self, x: Tensor) -> list[Tensor]:
        """x (B, 3, H, W) fused image -> [P3 (B, w0, H/8, W/8), P4, P5]."""
        x = self.stem(x)
        feats = []
        for down, stage in zip(self.downs, self.stages, strict=True):
            x = stage(down(x))
            feats.append(x)
        return feats


def build_variant_backbone(cfg: DetectorConfig) -> nn.Module:
    """The backbone of ``cfg.arch`` "fusion_mamba" or "mobilemamba".

    Raises:
        ConfigError: any other arch (the default one is built by the detector itself).
    """
    from dlrmamba_core.errors import ConfigError

    if cfg.arch == "fusion_mamba":
        return FusionMambaBackbone(cfg)
    if cfg.arch == "mobilemamba":
        return MobileMambaBackbone(cfg)
    raise ConfigError(f"unknown architecture {cfg.arch!r}; choose dlrmamba, fusion_mamba or "
                      "mobilemamba")
