"""models.measure: the one params / GFLOPs / alternating-latency measurement."""

from __future__ import annotations

import numpy as np
import torch

from dlrmamba_core.models.measure import (
    p50_and_ratio,
    params_and_gflops,
    random_pair,
    time_alternately,
)


def test_time_alternately_warms_up_then_alternates_rounds() -> None:
    calls: list[str] = []
    times = time_alternately({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")},
                             rounds=2, iters=3, warmup=2)
    assert calls == ["a", "a", "b", "b"] + (["a"] * 3 + ["b"] * 3) * 2
    assert [len(r) for r in times["a"]] == [3, 3] and len(times["b"]) == 2
    assert all(t >= 0 for rounds in times.values() for r in rounds for t in r)


def test_p50_and_ratio_use_round_medians() -> None:
    times = {"ref": [[1.0, 3.0], [2.0, 2.0]], "x": [[4.0, 4.0], [2.0, 6.0]]}
    out = p50_and_ratio(times, "ref")
    assert out["ref"] == {"p50_ms": 2.0, "ratio": 1.0}
    assert out["x"] == {"p50_ms": 4.0, "ratio": 2.0}  # rounds: 4/2 and 4/2


def test_params_and_gflops_of_a_linear_layer() -> None:
    class Two(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = torch.nn.Linear(8, 4, bias=False)

        def forward(self, rgb: torch.Tensor, thermal: torch.Tensor) -> torch.Tensor:
            return self.fc(rgb + thermal)

    params, gflops = params_and_gflops(Two(), torch.rand(3, 8), torch.rand(3, 8))
    assert params == 32
    assert gflops == 2 * 3 * 8 * 4 / 1e9  # one multiply-add = 2 FLOPs


def test_random_pair_is_fixed() -> None:
    rgb, th = random_pair((32, 64))
    assert rgb.shape == (1, 3, 32, 64) and th.shape == (1, 1, 32, 64)
    assert rgb.dtype == th.dtype == np.float32
    np.testing.assert_array_equal(rgb, random_pair((32, 64))[0])
