"""``dlrmamba detect`` end to end (files in tmp_path, real sessions)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from dlrmamba_core.cli import main
from dlrmamba_core.runtime import Detector


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
