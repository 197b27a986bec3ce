"""Chunked selective scan vs the reference loop: outputs, all gradients, dtypes, ONNX graph."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from dlrmamba_core.ops import CHUNK, LEVELS, selective_scan_chunked, selective_scan_ref


def make_inputs(b: int, d: int, n: int, L: int, groups: int | None, seed: int = 0,
                delta_scale: float = 1.0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    bc_shape = (b, n, L) if groups is None else (b, groups, n, L)
    return {
        "u": torch.randn(b, d, L, generator=g),
        "delta": torch.randn(b, d, L, generator=g) * delta_scale,
        "A": -torch.exp(torch.randn(d, n, generator=g)),
        "B": torch.randn(*bc_shape, generator=g),
        "C": torch.randn(*bc_shape, generator=g),
        "D": torch.randn(d, generator=g),
        "z": torch.randn(b, d, L, generator=g),
        "delta_bias": torch.randn(d, generator=g) * 0.5,
    }


@pytest.mark.parametrize("n", [1, 16])
@pytest.mark.parametrize("L", [1, CHUNK, 37, 8 * CHUNK + 3, 200])
@pytest.mark.parametrize("groups", [None, 2])
def test_forward_and_all_gradients_match_reference(n: int, L: int, groups: int | None) -> None:
    inp = make_inputs(2, 4, n, L, groups)
    ref_in = {k: v.clone().requires_grad_(True) for k, v in inp.items()}
    fast_in = {k: v.clone().requires_grad_(True) for k, v in inp.items()}
    out_r, last_r = selective_scan_ref(**ref_in, delta_softplus=True, return_last_state=True)
    out_f, last_f = selective_scan_chunked(**fast_in, delta_softplus=True,
                                           return_last_state=True)
    torch.testing.assert_close(out_f, out_r, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(last_f, last_r, rtol=1e-4, atol=1e-4)
    g = torch.randn_like(out_r)
    (out_r * g).sum().backward()
    (out_f * g).sum().backward()
    for k in inp:
        torch.testing.assert_close(fast_in[k].grad, ref_in[k].grad, rtol=1e-3, atol=1e-3,
                                   msg=lambda m, k=k: f"gradient of {k}: {m}")


def test_without_optional_arguments() -> None:
    inp = make_inputs(1, 3, 4, 21, None)
    args = (inp["u"], inp["delta"].sigmoid(), inp["A"], inp["B"], inp["C"])
    torch.testing.assert_close(selective_scan_chunked(*args), selective_scan_ref(*args),
                               rtol=1e-4, atol=1e-4)


def test_strong_decays_do_not_overflow() -> None:
    # delta up to ~60 with |A| up to ~20: per-step log-decays far beyond exp's fp32 range.
    inp = make_inputs(1, 4, 16, 300, None, delta_scale=30.0)
    out_r = selective_scan_ref(**inp, delta_softplus=True)
    out_f = selective_scan_chunked(**inp, delta_softplus=True)
    assert torch.isfinite(out_f).all()
    torch.testing.assert_close(out_f, out_r, rtol=1e-4, atol=1e-3)


def test_bf16_close_to_fp32_reference() -> None:
    inp = make_inputs(2, 8, 16, 100, None)
    ref = selective_scan_ref(**inp, delta_softplus=True)
    bf = {k: (v.bfloat16() if k in ("u", "delta", "z") else v) for k, v in inp.items()}
    out = selective_scan_chunked(**bf, delta_softplus=True)
    assert out.dtype == torch.bfloat16
    err = (out.float() - ref).abs().max() / ref.abs().max()
    assert err < 3e-2, f"bf16 relative error {err:.3g}"
    # Gradients flow in bf16 too.
    bf_req = {k: v.clone().requires_grad_(True) for k, v in bf.items()}
    selective_scan_chunked(**bf_req, delta_softplus=True).float().sum().backward()
    assert all(torch.isfinite(v.grad.float()).all() for v in bf_req.values())


@pytest.mark.parametrize("L", [CHUNK * 4, 29])
def test_chunk_states_equal_reference_states_at_boundaries(L: int) -> None:
    inp = make_inputs(1, 3, 4, L, None)
    _, states = selective_scan_chunked(**inp, delta_softplus=True, return_chunk_states=True)
    n_chunks = -(-L // CHUNK)
    assert states.shape == (1, 3, 4, n_chunks)
    for i in range(n_chunks):
        end = min((i + 1) * CHUNK, L)
        pre = {k: (v[..., :end] if v.shape[-1] == L else v) for k, v in inp.items()}
        _, last = selective_scan_ref(**pre, delta_softplus=True, return_last_state=True)
        torch.testing.assert_close(states[..., i], last, rtol=1e-4, atol=1e-5)


def test_bad_shapes_raise_with_names() -> None:
    inp = make_inputs(1, 4, 2, 10, None)
    with pytest.raises(ValueError, match="A must be"):
        selective_scan_chunked(inp["u"], inp["delta"], inp["A"][:3], inp["B"], inp["C"])
    with pytest.raises(ValueError, match="B must be"):
        selective_scan_chunked(inp["u"], inp["delta"], inp["A"], inp["B"][..., :5], inp["C"])


def test_too_long_sequence_is_refused() -> None:
    L = CHUNK**LEVELS + 1
    x = torch.zeros(1, 1, L)
    with pytest.raises(ValueError, match="longer than"):
        selective_scan_chunked(x, x, -torch.ones(1, 1), x[:, :1].reshape(1, 1, L),
                               x.reshape(1, 1, L))


class _Scan(torch.nn.Module):
    def __init__(self, d: int, n: int):
        super().__init__()
        self.A = torch.nn.Parameter(-torch.rand(d, n) - 0.1)
        self.D = torch.nn.Parameter(torch.ones(d))

    def forward(self, u: torch.Tensor, delta: torch.Tensor, B: torch.Tensor,
                C: torch.Tensor) -> torch.Tensor:
        return selective_scan_chunked(u, delta, self.A, B, C, self.D, delta_softplus=True)


def _export(L: int, d: int = 4, n: int = 3) -> tuple[bytes, dict[str, np.ndarray], torch.Tensor]:
    onnx = pytest.importorskip("onnx")
    del onnx
    torch.manual_seed(0)
    m = _Scan(d, n).eval()
    args = (torch.randn(1, d, L), torch.randn(1, d, L), torch.randn(1, n, L),
            torch.randn(1, n, L))
    buf = io.BytesIO()
    torch.onnx.export(m, args, buf, opset_version=17, dynamo=False,
                      input_names=["u", "delta", "B", "C"], output_names=["y"])
    with torch.no_grad():
        expect = m(*args)
    feeds = dict(zip(["u", "delta", "B", "C"], (a.numpy() for a in args), strict=True))
    return buf.getvalue(), feeds, expect


@pytest.mark.filterwarnings("ignore")
def test_onnx_graph_grows_only_with_the_levels_and_matches_torch() -> None:
    """No Loop / Scan op and no unroll: the node count is set by the number of chunk levels
    (ceil(log_CHUNK L)), the same for 200 and 512 steps (3 levels), one level's worth more
    for 4096 (4 levels) and again for 32768 (5)."""
    import onnx
    import onnxruntime as ort

    sizes = {}
    for L in (200, 512, 4096, CHUNK**LEVELS):
        blob, feeds, expect = _export(L)
        model = onnx.load_from_string(blob)
        ops = [node.op_type for node in model.graph.node]
        assert "Loop" not in ops and "Scan" not in ops
        sizes[L] = len(ops)
        if L <= 4096:  # the 32k export is checked for size only (its run takes seconds)
            sess = ort.InferenceSession(blob, providers=["CPUExecutionProvider"])
            got = sess.run(None, feeds)[0]
            np.testing.assert_allclose(got, expect.numpy(), rtol=1e-4, atol=1e-4)
    per_level = sizes[4096] - sizes[512]
    assert sizes[200] <= sizes[512] + 4, sizes  # 200 steps pad once: at most a few nodes more
    # (~170 exported nodes per level, mostly shape arithmetic that ORT folds away)
    assert 0 < per_level < 250 and sizes[CHUNK**LEVELS] - sizes[4096] == per_level, sizes
