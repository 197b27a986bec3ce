"""The ``make demo`` pipeline end to end (real node, real player) on a small synthetic bag."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import pytest

from .conftest import build_grid_model

pytestmark = pytest.mark.ros


def test_demo_end_to_end(tmp_path: Path) -> None:
    from dlrmamba_core.data.synthetic import SYNTH_CLASSES
    from dlrmamba_core.demo import run_demo, write_docs

    # A 7-class grid detector (brightness -> class 0, heat -> class 1) at the demo's classes.
    model = build_grid_model(tmp_path / "grid7.onnx", class_names=list(SYNTH_CLASSES))
    out = tmp_path / "demo"
    s = run_demo(out, str(model), duration_s=1.5, seed=1, rate=0.5, size=(160, 128),
                 threads=1)
    assert s["synthetic_data"] is True
    assert json.loads((out / "metrics.json").read_text()) == s
    live, cmp = s["live"], s["live_vs_offline"]
    assert live["frames_processed"] > 0
    assert live["coco"] is not None and live["coco"]["num_gt"] > 0
    assert s["offline"]["pairing"]["pairs"] == s["offline"]["pairing"]["thermal"]["paired"] > 0
    assert cmp["common_frames"] > 0 and cmp["frames_agreeing"] > 0
    assert live["latency_ms_rgb_publish_to_detections"]["p50"] > 0
    # the scenario: a day segment then a night segment, boats and people in the ground truth
    assert [g["condition"] for g in s["bag"]["segments"]] == ["day", "night"]
    assert s["node_error_lines"] == []  # a clean start, replay and shutdown
    assert "no ERROR line" in (out / "report.md").read_text()
    shot = cv2.imread(str(out / "showcase.png"))
    assert shot is not None and shot.shape[1] == 2 * 480  # one panel per segment
    for name in ("report.md", "annotated_live.mp4", "annotated_live_preview.png",
                 "offline/metrics.json", "offline/annotated.mp4", "live/latency.json",
                 "node.log", "player.log"):
        assert (out / name).is_file(), name
    assert "SYNTHETIC" in (out / "report.md").read_text()
    docs = write_docs(s, out, docs=tmp_path / "docs")
    assert [p.name for p in docs] == ["demo_frame.png", "demo.md"]
    assert "images/demo_frame.png" in (tmp_path / "docs" / "demo.md").read_text()
    # A second run replaces its own previous output; a foreign directory is refused.
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("x")
    from dlrmamba_core.errors import DlrmambaError

    with pytest.raises(DlrmambaError, match="not a previous demo output"):
        run_demo(foreign, str(model), 1.0, 1, 1.0, (160, 128), 1)
    assert (foreign / "keep.txt").is_file()


def test_demo_without_model_fails_clearly(tmp_path: Path) -> None:
    from dlrmamba_core.demo import main

    # An explicit missing model (the default one may or may not be shipped yet).
    assert main(["--out", str(tmp_path / "d"), "--model", str(tmp_path / "none.onnx")]) == 2
    assert not (tmp_path / "d").exists()
