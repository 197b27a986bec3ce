"""One way to measure a detector: parameters, GFLOPs and latency timed in alternation.

Used by the variant table (``models.table``, ``dlrmamba models``), the results page
(``research.results``), the candidate-architecture timings (``deploy.arch_latency``) and the
exporter comparison (``deploy.profile``), so their numbers are comparable.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
import time
from typing import Any

import numpy as np


def random_pair(input_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The timing input: RGB (1, 3, h, w) from seed 0 and thermal (1, 1, h, w) from seed 1,
    float32 in [0, 1) (latency does not depend on the values)."""
    h, w = input_hw
    return (np.random.default_rng(0).random((1, 3, h, w), dtype=np.float32),
            np.random.default_rng(1).random((1, 1, h, w), dtype=np.float32))


def params_and_gflops(model: Any, rgb: Any, thermal: Any) -> tuple[int, float]:
    """(parameter count, GFLOPs of one forward pass on ``rgb``, ``thermal`` tensors).

    GFLOPs are ``torch.utils.flop_counter.FlopCounterMode``'s count (matmuls and convolutions,
    2 FLOPs per multiply-add; element-wise work such as the selective scan's exp/mul/add is
    not counted). Runs under ``torch.no_grad``.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(rgb, thermal)
    return sum(p.numel() for p in model.parameters()), counter.get_total_flops() / 1e9


def time_alternately(calls: Mapping[str, Callable[[], object]], rounds: int, iters: int = 1,
                     warmup: int = 1) -> dict[str, list[list[float]]]:
    """Time each call in alternation: a load change on a shared machine hits all alike.

    Args:
        calls: name -> a call to time (e.g. one onnxruntime run on fixed inputs).
        rounds: rounds; each round calls every entry ``iters`` times in turn.
        iters: consecutive calls of one entry per round.
        warmup: untimed calls of each entry first (all of one entry, then the next).

    Returns:
        name -> one list per round of its ``iters`` call times (ms).
    """
    for call in calls.values():
        for _ in range(warmup):
            call()
    out: dict[str, list[list[float]]] = {name: [] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            ts = []
            for _ in range(iters):
                t0 = time.perf_counter()
                call()
                ts.append((time.perf_counter() - t0) * 1e3)
            out[name].append(ts)
    return out


def p50_and_ratio(times: dict[str, list[list[float]]], ref: str) -> dict[str, dict[str, float]]:
    """From :func:`time_alternately`: each entry's median ms (``p50_ms``) and its ``ratio`` to
    ``ref`` (the median over rounds of round-median / ``ref``'s round-median)."""
    ref_rounds = np.array([np.median(ts) for ts in times[ref]])
    return {name: {"p50_ms": float(np.median([t for ts in per_round for t in ts])),
                   "ratio": float(np.median(np.array([float(np.median(ts)) for ts in per_round])
                                            / ref_rounds))}
            for name, per_round in times.items()}
