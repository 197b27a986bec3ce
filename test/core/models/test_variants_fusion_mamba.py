"""fusion_mamba / fusion_mamba_lr: Fusion-Mamba Block parts, the detector contract, SVD init,
ONNX parity, the torch-free runtime and a small overfit."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from variant_checks import (
    check_distill_task,
    check_export_and_torch_free_runtime,
    check_forward_backward,
    check_full_rank_reproduces_teacher,
    check_onnx_logit_parity,
    check_overfits,
    check_thermal_is_used,
)

from dlrmamba_core.layers.fusion_mamba import DSSF, SSCS, FusionMambaBlock, channel_swap
from dlrmamba_core.models import build_model, get_config

TINY = {"stem": (8, 16), "widths": (16, 32, 48), "neck": (16, 24, 32), "head_width": 16}
"""Same structure as the registered variants, narrower."""


def test_channel_swap_exchanges_quarters_and_is_an_involution() -> None:
    a = torch.arange(8.0).reshape(1, 1, 1, 8)
    b = -torch.arange(8.0).reshape(1, 1, 1, 8) - 1
    x, y = channel_swap(a, b)
    assert x.flatten().tolist() == [0, 1, -3, -4, 4, 5, -7, -8]
    assert y.flatten().tolist() == [-1, -2, 2, 3, -5, -6, 6, 7]
    back = channel_swap(x, y)
    assert torch.equal(back[0], a) and torch.equal(back[1], b)
    with pytest.raises(ValueError, match="divisible by 4"):
        channel_swap(torch.zeros(1, 1, 1, 6), torch.zeros(1, 1, 1, 6))


def test_dssf_gates_each_stream_by_the_other() -> None:
    torch.manual_seed(0)
    block = DSSF(8, d_state=4).eval()
    r, t = torch.randn(1, 4, 5, 8), torch.randn(1, 4, 5, 8)
    with torch.no_grad():
        r1, _ = block(r, t)
        r2, _ = block(r, torch.randn_like(t))  # only the thermal input changes
    # The RGB output depends on the thermal input (through the gate) ...
    assert (r1 - r2).abs().max() > 1e-4
    # ... and a zero gate (gate_thermal outputs -inf -> SiLU 0) leaves RGB unchanged.
    with torch.no_grad():
        block.gate_thermal.weight.zero_()
        block.gate_thermal.bias.fill_(-1e4)
        r3, _ = block(r, t)
    torch.testing.assert_close(r3, r)
    assert SSCS(8, d_state=4)(r, t)[0].shape == r.shape


def test_fmb_stacks_the_configured_dssf_count() -> None:
    assert len(FusionMambaBlock(8, dssf_blocks=3, d_state=4).dssf) == 3
    model = build_model("fusion_mamba", 2, **TINY, dssf_blocks=(2, 1, 0))
    assert [len(f.dssf) for f in model.backbone.fmb] == [2, 1, 0]
    with pytest.raises(ValueError, match="multiples of 4"):
        build_model("fusion_mamba", 2, widths=(18, 32, 48))


def test_registered_variants_are_dual_stream_without_pixel_fusion() -> None:
    for name in ("fusion_mamba", "fusion_mamba_lr"):
        model = build_model(name, 7)
        assert model.fusion is None and model.cfg.arch == "fusion_mamba"
        assert model.backbone.thermal.stem[0].conv.in_channels == 1
        assert model.backbone.rgb.stem[0].conv.in_channels == 3
    assert get_config("fusion_mamba_lr", 7).rank_ratio is not None
    n = {v: sum(p.numel() for p in build_model(v, 7).parameters())
         for v in ("fusion_mamba", "fusion_mamba_lr")}
    assert n["fusion_mamba_lr"] < 0.75 * n["fusion_mamba"], n


@pytest.mark.parametrize("variant", ["fusion_mamba", "fusion_mamba_lr"])
def test_forward_backward_and_thermal_path(variant: str) -> None:
    model = check_forward_backward(variant, TINY)
    check_thermal_is_used(model)


def test_lr_from_trained_fusion_mamba_at_full_rank_reproduces_it() -> None:
    check_full_rank_reproduces_teacher("fusion_mamba", "fusion_mamba_lr", TINY)


def test_structure_aware_distillation_runs_on_it() -> None:
    check_distill_task("fusion_mamba", TINY)


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("variant", ["fusion_mamba", "fusion_mamba_lr"])
def test_onnx_logits_match_torch(variant: str) -> None:
    check_onnx_logit_parity(variant, TINY, atol=1e-4)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore")
def test_export_and_torch_free_runtime(tmp_path: Path) -> None:
    check_export_and_torch_free_runtime("fusion_mamba", tmp_path)


@pytest.mark.slow
def test_fusion_mamba_overfits_eight_synthetic_pairs() -> None:
    check_overfits("fusion_mamba", TINY, iterations=100)
