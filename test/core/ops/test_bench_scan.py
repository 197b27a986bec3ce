"""bench_scan's CPU limits and the extra columns they add to the CPU table."""

from __future__ import annotations

import math

from dlrmamba_core.ops.bench_scan import CPU_GRID, cpu_limits, cpu_rows


def test_cpu_limits_are_positive_rates() -> None:
    exp_rate, bw = cpu_limits(numel=1 << 16, repeat=2)
    assert math.isfinite(exp_rate) and exp_rate > 1e6  # elements/s: any CPU does > 1 M/s
    assert math.isfinite(bw) and bw > 0.1  # GB/s


def test_cpu_rows_add_floor_columns_from_the_limits() -> None:
    L = 16
    rows = cpu_rows(threads=1, repeat=1, lengths=[L], with_onnx=False, limits=(1e9, 10.0))
    assert len(rows) == len(CPU_GRID)
    for row, (d, n) in zip(rows, CPU_GRID, strict=True):
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert len(cells) == 10
        ref_ms = float(cells[3])
        # ref ms is printed rounded to 0.1, so its /50 may round to the neighbouring 0.1
        assert abs(float(cells[7]) - ref_ms / 50) <= 0.05 + 0.05 / 50 + 1e-9
        assert float(cells[8]) == round(d * n * L / 1e9 * 1e3, 1)  # exp floor, ms
        assert float(cells[9]) == round(4 * d * n * L / 10e9 * 1e3, 1)  # state write, ms
