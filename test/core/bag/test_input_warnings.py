"""The runtime Detector and ``dlrmamba detect`` warn about implausible thermal inputs."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest

from dlrmamba_core.cli import main as cli_main
from dlrmamba_core.runtime import Detector

RGB = np.full((96, 128, 3), 120, np.uint8)


def test_detector_counts_each_kind_and_logs_it_once(grid_model: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    det = Detector(grid_model)
    caplog.set_level(logging.WARNING)
    det.detect(RGB, np.full((48, 64), 2000, np.uint16))  # same aspect, half size: fine
    assert det.input_warnings == {}
    for _ in range(3):
        det.detect(RGB, np.full((64, 48), 2000, np.uint16))  # portrait thermal
    det.detect(RGB, np.full((64, 48), 2000, np.uint16), homography=np.eye(3))
    assert det.input_warnings == {"thermal_aspect": 3}
    assert sum("thermal_aspect" in r.getMessage() for r in caplog.records) == 1
    assert "48x64" in det.input_warning_messages["thermal_aspect"]


def test_detect_cli_reports_a_colour_photo_given_as_thermal(
        grid_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(1)
    cv2.imwrite(str(tmp_path / "rgb.png"), RGB)
    cv2.imwrite(str(tmp_path / "photo.png"), rng.integers(0, 256, (96, 128, 3), np.uint8))
    rc = cli_main(["detect", str(grid_model), str(tmp_path / "rgb.png"),
                   str(tmp_path / "photo.png"), "--json", str(tmp_path / "d.json")])
    assert rc == 0
    assert "input warnings: thermal_colour" in capsys.readouterr().out
    assert list(json.loads((tmp_path / "d.json").read_text())["input_warnings"]) == [
        "thermal_colour"]
    # a grey thermal of the same size gives no warning
    cv2.imwrite(str(tmp_path / "grey.png"), np.full((96, 128), 50, np.uint8))
    assert cli_main(["detect", str(grid_model), str(tmp_path / "rgb.png"),
                     str(tmp_path / "grey.png")]) == 0
    assert "input warnings" not in capsys.readouterr().out
