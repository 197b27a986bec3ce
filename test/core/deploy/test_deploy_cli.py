"""``dlrmamba export | bench`` end to end (files in tmp_path, real sessions)."""

from __future__ import annotations

import json
from pathlib import Path
import subprocess
import sys

import pytest

from dlrmamba_core.cli import main
from dlrmamba_core.runtime import Detector


def test_export_command(nano_ckpt: Path, tmp_path: Path,
                        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "m" / "nano.onnx"
    assert main(["export", str(nano_ckpt), "--out", str(out), "--input-size", "96x128",
                 "--parity-samples", "1"]) == 0
    text = capsys.readouterr().out
    assert "identical after NMS: True" in text and "input 96x128" in text
    assert Detector(out, require_card=True).input_hw == (96, 128)


def test_export_command_errors(nano_ckpt: Path, tmp_path: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", str(nano_ckpt), "--out", str(tmp_path / "a.onnx"),
                 "--input-size", "100x128"]) == 2
    assert "multiples of 32" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "none.pt"), "--out", str(tmp_path / "b.onnx")]) == 2
    assert "none.pt" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_bench_quick_writes_a_table(tmp_path: Path) -> None:
    out = tmp_path / "bench.md"
    raw = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "dlrmamba_core.deploy.bench", "--quick", "--threads", "1",
         "--backends", "torch", "ort-fp32", "ort-int8", "--out", str(out), "--json", str(raw)],
        capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = out.read_text()
    assert "CPU:" in text and "| nano | untrained |" in text
    rows = [ln for ln in text.splitlines() if ln.startswith("| nano |")]
    assert [r.split("|")[5].strip() for r in rows] == ["torch", "ort-fp32", "ort-int8"]
    res = json.loads(raw.read_text())["results"]
    assert all(r["result"]["p50_ms"] > 0 and r["result"]["peak_rss_mb"] > 10 for r in res)
    # the ORT children never load torch: that is what a robot runs
    assert [r["result"]["torch_imported"] for r in res] == [True, False, False]
