"""Access to the internals that Structure-Aware Distillation aligns.

* :func:`capture` records, per SS2D block, its output (B, H, W, C) and the scan's hidden
  states at chunk boundaries (B, K*E, N, ceil(L / CHUNK)) during a forward pass;
* :func:`factor_pairs` lists every factorized matrix of a student with the teacher's dense
  weight it approximates (the L_SVD targets).
"""

from __future__ import annotations

from collections.abc import Iterator
import contextlib

from torch import Tensor, nn

from dlrmamba_core.layers import SS2D, LowRankLinear, Mlp
from dlrmamba_core.models.student import dense_weight, kept_states, restrict_x_proj


@contextlib.contextmanager
def capture(model: nn.Module) -> Iterator[dict[str, dict[str, Tensor]]]:
    """Record every SS2D block's output and chunk-boundary states during forward passes.

    Usage::

        with capture(model) as rec:
            model(rgb, thermal)
        rec["backbone.stages.1.blocks.0.ssm"]["states"]  # (B, K*E, N, n_chunks)
        rec["backbone.stages.1.blocks.0.ssm"]["output"]  # (B, H, W, C)

    The dict is keyed by module name (``model.named_modules()``); each value is filled by the
    block's forward (the last forward wins). Tensors keep their autograd graph. Blocks using
    the reference scan record only their output.
    """
    blocks = {name: m for name, m in model.named_modules() if isinstance(m, SS2D)}
    for m in blocks.values():
        m.capture = True
        m.captured = {}
    try:
        yield {name: m.captured for name, m in blocks.items()}
    finally:
        for m in blocks.values():
            m.capture = False
            m.captured = {}


def factor_pairs(student: nn.Module, teacher: nn.Module) -> list[tuple[nn.Module, Tensor]]:
    """(low-rank module of the student, teacher's dense weight it approximates), in module order.

    Dense weights are (out, in) for :class:`LowRankLinear` and (K, out, in) for ``DirLowRank``.
    For x_proj, the teacher's B and C rows are restricted to the states the student kept
    (``models.student.kept_states``, deterministic for a frozen teacher), so shapes match at
    every state ratio. Each module's ``from_dense(weight, rank)`` gives the SVD targets.

    Raises:
        ValueError: the two models do not have the same block structure.
    """
    t_mods = dict(teacher.named_modules())
    pairs: list[tuple[nn.Module, Tensor]] = []
    for name, mod in student.named_modules():
        if isinstance(mod, SS2D) and isinstance(mod.in_proj, LowRankLinear):
            t = t_mods.get(name)
            if not isinstance(t, SS2D):
                raise ValueError(f"teacher has no SS2D block {name!r} matching the student's")
            x_w = dense_weight(t.x_proj)  # (K, R + 2N, E)
            x_sel = restrict_x_proj(x_w, t.dt_rank, t.d_state, kept_states(t, mod.d_state))
            pairs.append((mod.in_proj, dense_weight(t.in_proj)))
            pairs.append((mod.x_proj, x_sel))
            pairs.append((mod.dt_proj, dense_weight(t.dt_proj)))
            pairs.append((mod.out_proj, dense_weight(t.out_proj)))
        elif isinstance(mod, Mlp) and isinstance(mod.fc1, LowRankLinear):
            t = t_mods.get(name)
            if not isinstance(t, Mlp):
                raise ValueError(f"teacher has no MLP {name!r} matching the student's")
            pairs.append((mod.fc1, dense_weight(t.fc1)))
            pairs.append((mod.fc2, dense_weight(t.fc2)))
    for mod, dense in pairs:
        expect = tuple(dense_weight(mod).shape)
        if tuple(dense.shape) != expect:
            raise ValueError(f"teacher weight {tuple(dense.shape)} != student {expect}")
    return pairs
