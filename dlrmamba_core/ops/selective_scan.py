"""Selective scan (Mamba S6): reference loop and a chunked, ONNX-friendly fast path.

Both functions follow mamba's ``selective_scan_fn`` argument convention so they can be read
side by side with it. For every position ``t`` and state ``n`` of channel ``d``::

    dt[t]    = softplus(delta[t] + delta_bias)          (if delta_softplus)
    h[t, n]  = exp(dt[t] * A[d, n]) * h[t-1, n] + dt[t] * B[n, t] * u[t]
    y[t]     = sum_n C[n, t] * h[t, n] + D[d] * u[t]
    out[t]   = y[t] * silu(z[t])                        (if z is given)

The chunked path (:func:`selective_scan_chunked`) never loops over L. It splits the sequence
into fixed chunks of ``CHUNK`` steps; inside a chunk the recurrence is solved in closed form with
cumulative log-decays measured from the chunk start; the recurrence *across* chunks is the same
problem on a sequence ``CHUNK`` times shorter (chunk decays and chunk end states), solved by the
same closed form, until one chunk is left (at most ``LEVELS`` levels: ``ceil(log_CHUNK L)``).
The graph therefore has a node count set by the number of levels, ``L <= CHUNK ** LEVELS``
(32,768; two more Pad/Slice nodes when L is not a multiple of CHUNK): no ONNX Loop and no unroll
over L.

Numerical safety (why this never overflows): per-step log-decays are clamped at ``-_MAX_DECAY``
(16: a step that keeps less than ``exp(-16) = 1.1e-7`` of its state keeps exactly that much,
a relative change below fp32 epsilon), so a chunk's cumulative log-decay ``S`` lies in
``[-CHUNK * 16, 0] = [-128, 0]``. Exponents are taken relative to the chunk's midpoint
``m = S_end / 2``: ``exp(S_t - m)`` and ``exp(m - S_s)`` both stay within ``exp(+-64)`` (fp32
and bf16 both reach ``exp(88)``), and their product is the true weight ``exp(S_t - S_s) <= 1``.
"""

from __future__ import annotations

import torch
from torch import Tensor
import torch.nn.functional as F

CHUNK = 8
"""Steps per chunk (fixed). CHUNK * _MAX_DECAY / 2 = 64 keeps every exponent within exp(+-64)."""
LEVELS = 5
"""Fixed depth of the chunk hierarchy: sequences up to CHUNK ** LEVELS = 32,768 steps."""
_MAX_DECAY = 16.0


def _expand_bc(X: Tensor, groups: int, d_per_group: int) -> Tensor:
    """(b, N, L) or (b, G, N, L) -> (b, G, 1, N, L) for broadcasting over channels."""
    if X.dim() == 3:
        return X[:, None, None]  # (b, 1, 1, N, L)
    return X[:, :, None]  # (b, G, 1, N, L)


def _prepare(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    delta_bias: Tensor | None,
    delta_softplus: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor, int]:
    """Shared argument checks and the discretisation. Returns fp32 (dt, u, A, ..., groups)."""
    if u.dim() != 3 or delta.shape != u.shape:
        raise ValueError(
            f"u and delta must both be (batch, D, L); got {tuple(u.shape)} and "
            f"{tuple(delta.shape)}"
        )
    b, d, L = u.shape
    if A.dim() != 2 or A.shape[0] != d:
        raise ValueError(f"A must be (D={d}, N); got {tuple(A.shape)}")
    n = A.shape[1]
    for name, X in (("B", B), ("C", C)):
        if X.dim() not in (3, 4) or X.shape[0] != b or X.shape[-2] != n or X.shape[-1] != L:
            raise ValueError(
                f"{name} must be (batch={b}, N={n}, L={L}) or (batch, groups, N, L); "
                f"got {tuple(X.shape)}"
            )
    groups = B.shape[1] if B.dim() == 4 else 1
    if d % groups != 0:
        raise ValueError(f"D={d} is not divisible by the {groups} groups of B/C")
    dt = delta.float()
    if delta_bias is not None:
        dt = dt + delta_bias.float()[None, :, None]
    if delta_softplus:
        dt = _softplus(dt)
    return dt, u.float(), A.float(), B.float(), groups


def selective_scan_ref(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    z: Tensor | None = None,
    delta_bias: Tensor | None = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """Reference selective scan: a plain loop over the sequence, computed in fp32.

    Args:
        u: (batch, D, L) input, any float dtype.
        delta: (batch, D, L) step sizes (before ``delta_bias``/softplus), same dtype as u.
        A: (D, N) float32, real diagonal state matrix (negative for a stable scan).
        B: (batch, N, L) or (batch, G, N, L) input projections; with G groups, channel
            ``d`` uses group ``d // (D // G)``.
        C: same shape as B, output projections.
        D: (D,) float32 skip connection, optional.
        z: (batch, D, L) gate, optional: the output is multiplied by ``silu(z)``.
        delta_bias: (D,) float32 added to delta, optional.
        delta_softplus: apply softplus to ``delta + delta_bias``.
        return_last_state: also return the final state.

    Returns:
        out: (batch, D, L) in u's dtype; with ``return_last_state`` also
        last_state: (batch, D, N) float32, the state after the last step.
    """
    dt, uf, Af, _, groups = _prepare(u, delta, A, B, C, delta_bias, delta_softplus)
    b, d, L = u.shape
    n = A.shape[1]
    Bx = _expand_bc(B.float(), groups, d // groups)  # (b, G or 1, 1, N, L)
    Cx = _expand_bc(C.float(), groups, d // groups)
    g = Bx.shape[1]
    dt5 = dt.view(b, g, d // g, 1, L)  # (b, G, E, 1, L)
    u5 = uf.view(b, g, d // g, 1, L)
    A4 = Af.view(g, d // g, n)  # (G, E, N)
    h = u.new_zeros((b, g, d // g, n), dtype=torch.float32)
    ys = []
    for t in range(L):
        decay = torch.exp(dt5[..., 0, t, None] * A4)  # (b, G, E, N)
        h = decay * h + dt5[..., 0, t, None] * Bx[..., t] * u5[..., 0, t, None]
        ys.append((h * Cx[..., t]).sum(-1))  # (b, G, E)
    y = torch.stack(ys, dim=-1).reshape(b, d, L)
    out = _finish(y, uf, D, z)
    out = out.to(u.dtype)
    if return_last_state:
        return out, h.reshape(b, d, n)
    return out


def _finish(y: Tensor, u: Tensor, D: Tensor | None, z: Tensor | None) -> Tensor:
    """Skip connection and gate: y + D*u, times silu(z)."""
    if D is not None:
        y = y + D.float()[None, :, None] * u
    if z is not None:
        y = y * F.silu(z.float())
    return y


def _scan_level(a: Tensor, x: Tensor, levels: int) -> Tensor:
    """Solve ``h[t] = exp(a[t]) * h[t-1] + x[t]`` (h[-1] = 0) along the last dim.

    Args:
        a: (..., L) log-decays (<= 0).
        x: (..., L) inputs.
        levels: remaining hierarchy depth; at the last level the sequence must fit one chunk.

    Returns:
        h: (..., L) all states.
    """
    L = a.shape[-1]
    pad = (-L) % CHUNK
    # Padding at the end (decay 0, input 0) cannot change earlier states. The (small) upper
    # levels always pad, so the graph depends on L only through the number of levels; the
    # full-length first level skips a no-op pad (a full copy in onnxruntime) when L is a
    # multiple of CHUNK.
    first = levels == LEVELS
    if pad or not first:
        a = F.pad(a, (0, pad))
        x = F.pad(x, (0, pad))
    nc = (L + pad) // CHUNK
    if levels <= 1 and nc > 1:
        raise ValueError(
            f"sequence of {L} steps is longer than CHUNK ** LEVELS = {CHUNK ** LEVELS}"
        )
    lead = a.shape[:-1]
    a = a.reshape(*lead, nc, CHUNK).clamp(min=-_MAX_DECAY)  # (..., nc, T)
    x = x.reshape(*lead, nc, CHUNK)
    tri = torch.triu(torch.ones(CHUNK, CHUNK, device=a.device, dtype=a.dtype))
    half = torch.full((CHUNK, 1), 0.5, device=a.device, dtype=a.dtype)
    # Cumulative sums and chunk sums as matmuls: MatMul is fast everywhere and exports plainly,
    # while strided slices like S[..., -1] are slow copies in onnxruntime. With S = a @ tri the
    # cumulative log-decay from the chunk start (in [-128, 0]) and m = S_end / 2 its midpoint,
    # S - m = a @ (tri - 1/2): one matmul, no subtraction pass.
    m = a @ half  # (..., nc, 1) midpoint shift: exponents stay within exp(+-64)
    e_t = torch.exp(a @ (tri - 0.5))  # (..., nc, T) = exp(S_t - m) in [exp(-64), exp(64)]
    # w = exp(m - S_s) x_s, (..., nc, T). Training takes a second exp because the gradient of
    # x / e_t needs e_t ** 2 (up to e^128); inference and export take one Div instead.
    training = torch.is_grad_enabled() and (x.requires_grad or a.requires_grad)
    differentiable = training and not torch.jit.is_tracing()
    w = x * torch.exp(a @ (0.5 - tri)) if differentiable else x / e_t
    if levels > 1 and nc > 1:
        # (One chunk left: no carry, so the upper levels, a no-op on one padded chunk, are
        # skipped: L = 320 needs 3 levels, L = 1280 4, not LEVELS = 5; ~25 fewer nodes each.)
        # The chunk-to-chunk recurrence is the same problem, CHUNK times shorter: chunk decays
        # S_end = 2m and zero-start chunk end states exp(S_end - m) * sum(w) = exp(m) * sum(w).
        e_m = torch.exp(m)  # (..., nc, 1), in [exp(-64), 1]
        end_loc = (e_m * (w @ (half * 2.0))).squeeze(-1)  # (..., nc)
        h_end = _scan_level(2.0 * m.squeeze(-1), end_loc, levels - 1)  # (..., nc)
        h_prev = F.pad(h_end[..., :-1], (1, 0))  # state entering each chunk, (..., nc)
        # exp(S_t) h_prev = e_t * (exp(m) h_prev), so acc = inclusive sums of w + exp(m) h_prev
        # at every step: one MatMul of [w | exp(m) h_prev] with [tri; 1]. The plain broadcast
        # add of a (..., nc, 1) column costs 5x a same-shape add in onnxruntime (measured).
        carry = e_m * h_prev[..., None]  # (..., nc, 1)
        tri_carry = torch.cat([tri, torch.ones_like(tri[:1])], 0)  # (T + 1, T)
        acc = torch.cat([w, carry], -1) @ tri_carry  # (..., nc, T)
    else:
        acc = w @ tri  # (..., nc, T): inclusive sums, so h_loc = e_t * acc (zero-start states)
    h = (e_t * acc).reshape(*lead, nc * CHUNK)
    return h[..., :L] if (pad or not first) else h


def _softplus(x: Tensor) -> Tensor:
    """softplus(x) = max(x, 0) + log1p(exp(-|x|)): exact, stable, and far faster than
    onnxruntime's Softplus kernel (measured ~10x on the detector's shapes)."""
    return torch.relu(x) + torch.log1p(torch.exp(-x.abs()))


def selective_scan_chunked(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    z: Tensor | None = None,
    delta_bias: Tensor | None = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
    *,
    return_chunk_states: bool = False,
) -> Tensor | tuple[Tensor, ...]:
    """Chunked selective scan: same arguments and results as :func:`selective_scan_ref`.

    Computes in fp32 for fp32/fp16 inputs and in bf16 for bf16 inputs (halving memory on GPU),
    returning u's dtype. Differentiable with plain autograd (trains on GPU), exports to ONNX
    (opset 17) with a node count independent of L (up to ``CHUNK ** LEVELS`` steps).

    Args:
        u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state: as in
            :func:`selective_scan_ref`.
        return_chunk_states: also return the states at chunk boundaries,
            (batch, D, N, ceil(L / CHUNK)): the state after steps CHUNK-1, 2*CHUNK-1, ...
            (the last one after step L-1 when L is not a multiple of CHUNK). Used by the
            state-alignment distillation loss.

    Returns:
        out (batch, D, L), then last_state (batch, D, N) if requested, then chunk states if
        requested.
    """
    dt, uf, Af, _, groups = _prepare(u, delta, A, B, C, delta_bias, delta_softplus)
    cdt = torch.bfloat16 if u.dtype == torch.bfloat16 else torch.float32
    b, d, L = u.shape
    n = A.shape[1]
    Bx = _expand_bc(B.to(cdt), groups, d // groups)  # (b, G or 1, 1, N, L)
    Cx = _expand_bc(C.to(cdt), groups, d // groups)
    g = Bx.shape[1]
    dt5 = dt.to(cdt).view(b, g, d // g, 1, L)  # (b, G, E, 1, L)
    u5 = uf.to(cdt).view(b, g, d // g, 1, L)
    a = dt5 * Af.to(cdt).view(g, d // g, n, 1)  # (b, G, E, N, L) log-decays
    x = (dt5 * u5) * Bx  # (b, G, E, N, L)
    h = _scan_level(a, x, LEVELS)  # (b, G, E, N, L)
    y = (h * Cx).sum(3).float().reshape(b, d, L)  # (b, D, L)
    out = _finish(y, uf, D, z).to(u.dtype)
    results: list[Tensor] = [out]
    if return_last_state:
        results.append(h[..., -1].float().reshape(b, d, n))
    if return_chunk_states:
        ends = h[..., CHUNK - 1 :: CHUNK]  # (b, G, E, N, L // CHUNK)
        if L % CHUNK:
            ends = torch.cat([ends, h[..., -1:]], -1)  # the last, partial chunk ends at L-1
        results.append(ends.float().reshape(b, d, n, -1))
    return results[0] if len(results) == 1 else tuple(results)
