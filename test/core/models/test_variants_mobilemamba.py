"""mobilemamba / mobilemamba_lr: Haar wavelet, MRFFI parts, the detector contract, SVD init,
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

from dlrmamba_core.layers.mrffi import (
    MRFFI,
    PAPER_GLOBAL_RATIOS,
    PAPER_LOCAL_RATIOS,
    MKDeConv,
    split_channels,
)
from dlrmamba_core.layers.wavelet import HaarDWT, HaarIDWT, WaveletBranch
from dlrmamba_core.models import build_model, get_config

TINY = {"stem": (8, 16), "widths": (16, 32, 48), "neck": (16, 24, 32), "head_width": 16}
"""Same structure as the registered variants, narrower."""


def test_idwt_inverts_dwt_and_bands_are_haar() -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 5, 12, 18)
    bands = HaarDWT(5)(x)
    assert bands.shape == (2, 20, 6, 9)
    torch.testing.assert_close(HaarIDWT(5)(bands), x, atol=1e-6, rtol=0)
    # Orthonormal: energy is preserved.
    torch.testing.assert_close(bands.pow(2).sum(), x.pow(2).sum(), rtol=1e-5, atol=0)
    # LL is 2x the 2x2 mean; a constant image has no detail bands.
    ll = bands[:, 0::4]
    torch.testing.assert_close(ll, 2 * torch.nn.functional.avg_pool2d(x, 2))
    const = HaarDWT(1)(torch.full((1, 1, 4, 4), 3.0))
    assert torch.allclose(const[:, 1:], torch.zeros(1)) and torch.allclose(const[:, 0], 6.0 *
                                                                            torch.ones(1))
    with pytest.raises(ValueError, match="even"):
        HaarDWT(1)(torch.zeros(1, 1, 5, 4))
    assert "weight" not in HaarDWT(2).state_dict()  # fixed filters, not checkpointed


def test_wavelet_branch_handles_odd_sizes_and_identity_conv() -> None:
    branch = WaveletBranch(3)
    with torch.no_grad():  # identity conv at scale 1: the branch reproduces its input
        branch.conv.weight.zero_()
        branch.conv.weight[:, :, 1, 1] = 1.0
        branch.scale.fill_(1.0)
    x = torch.randn(1, 3, 7, 5)
    torch.testing.assert_close(branch(x), x, atol=1e-6, rtol=0)


def test_mrffi_split_follows_the_paper_ratios() -> None:
    assert PAPER_GLOBAL_RATIOS == (0.8, 0.7, 0.6) and PAPER_LOCAL_RATIOS == (0.2, 0.2, 0.3)
    assert split_channels(64, 0.8, 0.2) == (52, 12, 0)
    assert split_channels(128, 0.7, 0.2) == (88, 26, 14)
    assert split_channels(256, 0.6, 0.3) == (152, 77, 27)
    with pytest.raises(ValueError, match="ratios"):
        split_channels(64, 0.8, 0.3)
    cfg = get_config("mobilemamba", 7)
    assert cfg.mrffi_global == PAPER_GLOBAL_RATIOS and cfg.mrffi_local == PAPER_LOCAL_RATIOS
    assert cfg.mk_kernels == (3, 5, 7)


def test_mk_deconv_one_group_per_kernel_and_identity_untouched() -> None:
    mk = MKDeConv(10, (3, 5, 7))
    assert mk.sizes == [4, 3, 3]
    assert [c.conv.kernel_size for c in mk.convs] == [(3, 3), (5, 5), (7, 7)]
    assert all(c.conv.groups == c.conv.in_channels for c in mk.convs)  # depthwise
    # The identity channels bypass both branches: they reach the 1x1 mix unchanged.
    torch.manual_seed(0)
    block = MRFFI(32, 0.5, 0.25, d_state=4).eval()
    g, loc, ident = block.split
    assert (g, loc, ident) == (16, 8, 8)
    seen = {}
    block.proj.register_forward_pre_hook(lambda _m, a: seen.setdefault("x", a[0]))
    x = torch.randn(1, 32, 6, 8)
    with torch.no_grad():
        block(x)
    torch.testing.assert_close(seen["x"][:, g + loc:], x[:, g + loc:])


@pytest.mark.parametrize("variant", ["mobilemamba", "mobilemamba_lr"])
def test_forward_backward_and_thermal_path(variant: str) -> None:
    model = check_forward_backward(variant, TINY)
    assert model.fusion is not None  # pixel fusion in front
    check_thermal_is_used(model)


def test_registered_sizes() -> None:
    n = {v: sum(p.numel() for p in build_model(v, 7).parameters())
         for v in ("mobilemamba", "mobilemamba_lr")}
    assert n["mobilemamba_lr"] < n["mobilemamba"], n
    assert get_config("mobilemamba_lr", 7).d_state < get_config("mobilemamba", 7).d_state


def test_lr_from_trained_mobilemamba_at_full_rank_reproduces_it() -> None:
    check_full_rank_reproduces_teacher("mobilemamba", "mobilemamba_lr", TINY)


def test_structure_aware_distillation_runs_on_it() -> None:
    check_distill_task("mobilemamba", TINY)


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("variant", ["mobilemamba", "mobilemamba_lr"])
def test_onnx_logits_match_torch(variant: str) -> None:
    check_onnx_logit_parity(variant, TINY, atol=1e-4)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore")
def test_export_and_torch_free_runtime(tmp_path: Path) -> None:
    check_export_and_torch_free_runtime("mobilemamba", tmp_path)


@pytest.mark.slow
def test_mobilemamba_overfits_eight_synthetic_pairs() -> None:
    check_overfits("mobilemamba", TINY, iterations=100)
