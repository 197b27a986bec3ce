"""The end-to-end latency breakdown behind docs/runtime.md (a real Detector, real sessions)."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.mark.parametrize("spin", [False, True])
def test_e2e_breakdown_times_each_stage(nano_export: Any, spin: bool) -> None:
    from dlrmamba_core.deploy.arch_latency import e2e_breakdown

    r = e2e_breakdown(str(nano_export.onnx_path), rgb_hw=(256, 320), thermal_hw=(128, 160),
                      threads=1, iters=3, spin=spin)
    for stage in ("preprocess", "inference", "postprocess", "total"):
        assert r[f"{stage}_ms"] > 0, r
    assert r["total_ms"] >= r["inference_ms"]
    assert r["total_over_network"] >= 1.0


def test_busy_processes_run_and_stop() -> None:
    from dlrmamba_core.deploy.arch_latency import busy_processes

    with busy_processes(2) as procs:
        assert len(procs) == 2 and all(p.is_alive() for p in procs)
    assert not any(p.is_alive() for p in procs)
