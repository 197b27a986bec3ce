"""research.bench_real: which model the real-data benchmark starts from, and its table line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dlrmamba_core.errors import ModelFileError

REPO = Path(__file__).resolve().parents[3]


def test_starts_from_the_default_that_default_json_names() -> None:
    from dlrmamba_core.research.bench_real import shipped_model

    name = json.loads((REPO / "models" / "default.json").read_text())["model"]
    assert shipped_model() == (REPO / "models" / name).resolve()
    assert name != "dlrmamba_student.onnx"  # the old hard-coded file is no longer the default


def test_model_option_and_missing_files(tmp_path: Path) -> None:
    from dlrmamba_core.research import bench_real

    other = tmp_path / "m.onnx"
    other.write_bytes(b"not read here")
    assert bench_real.shipped_model(other) == other
    with pytest.raises(ModelFileError, match="does not exist"):
        bench_real.shipped_model(tmp_path / "absent.onnx")
    card = tmp_path / "default.json"
    card.write_text(json.dumps({"model": "gone.onnx"}))
    with pytest.raises(ModelFileError, match=r"gone\.onnx"):
        bench_real.shipped_model(card)


def test_table_names_the_starting_model() -> None:
    from dlrmamba_core.research.bench_real import _table

    res = {"sets": {}, "model": "models/dlrmamba_student_p5.onnx", "created_utc": "t",
           "cpu": "cpu", "threads": 2, "total_s": 1.0}
    assert "Starting model: `models/dlrmamba_student_p5.onnx`." in _table(res)
