"""CUDA: the chunked scan trains on GPU (fp32 and bf16) and matches the reference."""

from __future__ import annotations

import pytest
import torch

from dlrmamba_core.ops import selective_scan_chunked, selective_scan_ref

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cuda_chunked_matches_reference_with_gradients(dtype: torch.dtype) -> None:
    g = torch.Generator().manual_seed(0)
    b, d, n, L = 2, 64, 16, 1000
    base = {
        "u": torch.randn(b, d, L, generator=g), "delta": torch.randn(b, d, L, generator=g),
        "A": -torch.exp(torch.randn(d, n, generator=g)), "B": torch.randn(b, n, L, generator=g),
        "C": torch.randn(b, n, L, generator=g), "D": torch.randn(d, generator=g),
    }
    ref_in = {k: v.cuda().requires_grad_(True) for k, v in base.items()}
    fast_in = {k: (v.cuda().to(dtype) if k in ("u", "delta") else v.cuda()).detach()
               .requires_grad_(True) for k, v in base.items()}
    y_ref = selective_scan_ref(**ref_in, delta_softplus=True)
    y = selective_scan_chunked(**fast_in, delta_softplus=True)
    assert y.dtype == dtype and y.is_cuda
    tol = 1e-4 if dtype == torch.float32 else 3e-2
    err = (y.float() - y_ref).abs().max() / y_ref.abs().max()
    assert err < tol, f"relative error {err:.3g}"
    y_ref.sum().backward()
    y.float().sum().backward()
    for k in base:
        gr, gf = ref_in[k].grad, fast_in[k].grad.float()
        rel = (gf - gr).abs().max() / gr.abs().max().clamp_min(1e-12)
        assert rel < (1e-3 if dtype == torch.float32 else 5e-2), f"grad {k}: {rel:.3g}"


def test_student_trains_on_cuda_with_bf16_autocast() -> None:
    from dlrmamba_core.losses import DetectionLoss
    from dlrmamba_core.models import build_model

    torch.manual_seed(0)
    model = build_model("student", 3).cuda().train()
    crit = DetectionLoss(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    rgb = torch.rand(4, 3, 256, 320, device="cuda")
    th = torch.rand(4, 1, 256, 320, device="cuda")
    targets = torch.tensor([[0, 1, 20, 20, 120, 100], [3, 2, 100, 50, 300, 250.0]],
                           device="cuda")
    losses = []
    for _ in range(5):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            preds = model(rgb, th)
        loss, _ = crit([p.float() for p in preds], targets)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < losses[0]
