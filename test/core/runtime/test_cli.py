"""``dlrmamba export | detect | bench`` end to end (files in tmp_path, real sessions)."""

from __future__ import annotations

import json
from pathlib import Path
import subprocess
import sys
from typing import Any

import cv2
import numpy as np
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


def test_detect_command_writes_json_and_overlay(nano_onnx: Path, synth_frames: list[Any],
                                                tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    s = synth_frames[0]
    rgb_file, th_file, h_file = tmp_path / "rgb.png", tmp_path / "th.png", tmp_path / "h.json"
    cv2.imwrite(str(rgb_file), s.rgb[:, :, ::-1])  # OpenCV writes BGR
    cv2.imwrite(str(th_file), s.thermal)  # 16-bit PNG keeps raw counts
    h_file.write_text(json.dumps({"homography": s.homography.tolist()}))
    out_json, out_png = tmp_path / "dets.json", tmp_path / "overlay.png"
    assert main(["detect", str(nano_onnx), str(rgb_file), str(th_file), "--homography",
                 str(h_file), "--threads", "1", "--json", str(out_json), "--draw",
                 str(out_png)]) == 0
    got = json.loads(out_json.read_text())["detections"]
    want = Detector(nano_onnx, threads=1).detect(s.rgb, s.thermal, s.homography)
    assert len(got) == len(want) > 0
    assert [g["class_id"] for g in got] == want.class_ids.tolist()
    np.testing.assert_allclose([g["box_xyxy"] for g in got], want.boxes, atol=0.01)
    assert f"{len(want)} detections" in capsys.readouterr().out
    overlay = cv2.imread(str(out_png))
    assert overlay.shape == s.rgb.shape and not np.array_equal(overlay[:, :, ::-1], s.rgb)


def test_detect_command_errors(nano_onnx: Path, tmp_path: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    img = tmp_path / "a.png"
    cv2.imwrite(str(img), np.zeros((32, 32, 3), np.uint8))
    assert main(["detect", str(tmp_path / "none.onnx"), str(img), str(img)]) == 2
    assert "no such model file" in capsys.readouterr().err
    bad_h = tmp_path / "h.txt"
    bad_h.write_text("1 0 0\n0 1 0\n")
    assert main(["detect", str(nano_onnx), str(img), str(img), "--homography",
                 str(bad_h)]) == 2
    assert "expected 9" in capsys.readouterr().err
    assert main(["detect", str(nano_onnx), str(tmp_path / "no.png"), str(img)]) == 2
    assert "no.png" in capsys.readouterr().err


@pytest.mark.slow
def test_bench_quick_writes_a_table(tmp_path: Path) -> None:
    out = tmp_path / "bench.md"
    raw = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "dlrmamba_core.runtime.bench", "--quick", "--threads", "1",
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
