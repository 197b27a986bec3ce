"""Benchmark bookkeeping: shipped-model discovery and the target ratios of the report."""

from __future__ import annotations

from pathlib import Path
import shutil
from typing import Any

from dlrmamba_core.deploy.bench import (
    BenchConfig,
    Prepared,
    render_markdown,
    shipped_models,
    target_lines,
)


def _cfg(model: str, backend: str, threads: int, p50: float | None) -> BenchConfig:
    c = BenchConfig(model, "untrained", backend, threads, (512, 640), "640x512", "x")
    c.result = {"error": "exit 1"} if p50 is None else {
        "p50_ms": p50, "p95_ms": p50 * 1.1, "fps": 1000 / p50, "e2e_p50_ms": p50 + 2,
        "peak_rss_mb": 100.0, "iters": 5}
    return c


def test_target_ratios_are_computed_from_the_results() -> None:
    res = [_cfg("student", "ort-fp32", 2, 50.0), _cfg("teacher", "ort-fp32", 2, 200.0),
           _cfg("student", "torch-ref", 2, 600.0), _cfg("cnn", "ort-fp32", 2, 20.0),
           _cfg("student", "ort-fp32", 1, 80.0), _cfg("teacher", "ort-fp32", 1, None)]
    lines = target_lines(res, [1, 2])
    assert lines[0] == "| target | bound | 1 thread | 2 threads |"
    assert lines[2].endswith("| not measured | 0.25 (met) |")  # 50 / 200; teacher t=1 failed
    assert lines[3].endswith("| not measured | 12.0 (met) |")  # 600 / 50
    assert lines[4].endswith("| not measured | 2.50 (NOT met) |")  # 50 / 20 > 1.5
    assert lines[5].endswith("| 80.0 | 50.0 |")
    assert len(lines) == 6  # no fast student measured: no rows for them
    fast = target_lines([*res, _cfg("student_p5", "ort-fp32", 2, 30.0)], [1, 2])
    assert fast[6] == ("| student_p5 ORT fp32 / cnn ORT fp32 latency | <= 2.0 | not measured | "
                       "1.50 (met) |")
    assert fast[7].endswith("| <= 0.4 | not measured | 0.15 (met) |") and len(fast) == 8
    header = {"date": "d", "cpu": "c", "cores": 2, "load_before": "0", "load_after": "0",
              "python": "3", "torch": "t", "onnxruntime": "o", "numpy": "n", "command": "x",
              "elapsed_s": 1.0}
    md = render_markdown(res, header, [Prepared("student", "untrained", (512, 640), "640x512",
                                                None, None, None, 1_190_000)])
    assert "| student | untrained | 1.19 | 512x640 | ort-fp32 | 2 | 50.0 | 55.0 | 20.00 |" in md
    assert "| teacher | untrained | — | 512x640 | ort-fp32 | 1 | failed: exit 1" in md


def test_shipped_models_pairs_fp32_and_int8(nano_export: Any, tmp_path: Path) -> None:
    shutil.copy(nano_export.onnx_path, tmp_path / "student.onnx")
    shutil.copy(nano_export.onnx_path, tmp_path / "cnn.onnx")
    shutil.copy(nano_export.onnx_path, tmp_path / "student.int8.onnx")
    found = {p.model: p for p in shipped_models(tmp_path)}
    assert sorted(found) == ["cnn", "student"]
    assert found["student"].int8 == str(tmp_path / "student.int8.onnx")
    assert found["cnn"].int8 is None and found["cnn"].pt is None
    assert found["student"].input_hw == (128, 160) and found["student"].size_label == "native"
    assert shipped_models(tmp_path / "absent") == []
