"""COCO evaluation on numpy predictions (pycocotools, real plots)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dlrmamba_core.engine.evaluate import (
    ImageTruth,
    coco_metrics,
    confusion_matrix,
    write_report,
)
from dlrmamba_core.errors import ConfigError
from dlrmamba_core.runtime.detections import Detections

NAMES = ["boat", "person", "car"]


def _truths(rng: np.random.Generator, n_img: int = 6) -> list[ImageTruth]:
    out = []
    for _ in range(n_img):
        k = int(rng.integers(1, 5))
        xy = rng.uniform(0, 200, (k, 2))
        wh = rng.uniform(15, 60, (k, 2))
        boxes = np.concatenate([xy, xy + wh], 1).astype(np.float32)
        out.append(ImageTruth(boxes, rng.integers(0, 2, k).astype(np.int64), 320, 256))
    return out


def test_perfect_predictions_score_100_and_missing_class_is_none() -> None:
    truths = _truths(np.random.default_rng(0))
    preds = [Detections(t.boxes.copy(), np.full(len(t.labels), 0.9, np.float32),
                              t.labels.copy()) for t in truths]
    m = coco_metrics(preds, truths, NAMES)
    assert m["mAP50"] == pytest.approx(100.0)
    assert m["mAP50_95"] == pytest.approx(100.0)
    assert m["per_class"]["car"]["AP50"] is None  # no ground truth for class 2
    assert m["per_class"]["boat"]["num_gt"] + m["per_class"]["person"]["num_gt"] == m["num_gt"]
    cm = np.array(m["confusion_matrix"])
    assert cm.trace() == m["num_gt"] and cm[:, -1].sum() == 0 and cm[-1].sum() == 0


def test_wrong_class_and_shifted_boxes_lower_the_score() -> None:
    truths = _truths(np.random.default_rng(1))
    shifted = []
    for t in truths:
        b = t.boxes.copy()
        w = b[:, 2] - b[:, 0]
        b[:, [0, 2]] += 0.3 * w[:, None]  # IoU ~0.54: counts at 0.5, not at >= 0.55
        shifted.append(Detections(b, np.full(len(b), 0.8, np.float32), t.labels))
    m = coco_metrics(shifted, truths, NAMES)
    assert m["mAP50"] == pytest.approx(100.0)
    assert 5.0 < m["mAP50_95"] < 20.0
    wrong = [Detections(t.boxes, np.full(len(t.labels), 0.8, np.float32),
                              1 - t.labels) for t in truths]
    m2 = coco_metrics(wrong, truths, NAMES)
    assert m2["mAP50"] == 0.0
    cm = np.array(m2["confusion_matrix"])
    assert cm.trace() == 0 and cm[0, 1] + cm[1, 0] == m2["num_gt"]


def test_no_detections_gives_zero_not_error() -> None:
    truths = _truths(np.random.default_rng(2), 3)
    empty = [(np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int64)) for _ in truths]
    m = coco_metrics(empty, truths, NAMES)
    assert m["mAP50"] == 0.0 and m["num_det"] == 0
    assert m["per_class"]["boat"]["AP50"] == 0.0


def test_confusion_matrix_counts_false_positives_and_misses() -> None:
    t = ImageTruth(np.array([[0, 0, 10, 10], [50, 50, 70, 70]], np.float32),
                   np.array([0, 1]))
    p = Detections(np.array([[0, 0, 10, 10], [100, 100, 120, 120], [50, 50, 70, 70]],
                                  np.float32),
                         np.array([0.9, 0.8, 0.1], np.float32), np.array([0, 2, 1]))
    cm = confusion_matrix([p], [t], 3)
    assert cm[0, 0] == 1  # matched
    assert cm[3, 2] == 1  # false positive of class 2
    assert cm[1, 3] == 1  # person missed: its detection is below the score threshold
    assert cm.sum() == 3


def test_bad_input_is_reported() -> None:
    truths = _truths(np.random.default_rng(3), 2)
    with pytest.raises(ConfigError, match="prediction entries"):
        coco_metrics([], truths, NAMES)
    bad = [Detections(t.boxes, np.ones(len(t.labels), np.float32),
                            np.full(len(t.labels), 7)) for t in truths]
    with pytest.raises(ConfigError, match=r"outside 0\.\.2"):
        coco_metrics(bad, truths, NAMES)


def test_write_report_writes_json_and_pngs(tmp_path) -> None:
    truths = _truths(np.random.default_rng(4))
    preds = [Detections(t.boxes, np.linspace(0.2, 0.9, len(t.labels)).astype(np.float32),
                              t.labels) for t in truths]
    m = coco_metrics(preds, truths, NAMES)
    path = write_report(m, NAMES, tmp_path / "ev")
    assert json.loads(path.read_text())["mAP50"] == m["mAP50"]
    for name in ("pr_curves.png", "confusion_matrix.png"):
        data = (tmp_path / "ev" / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    assert not [p for p in (tmp_path / "ev").iterdir() if p.name.endswith(".tmp")]


def test_group_by_splits_the_images_by_reader_attribute() -> None:
    from dlrmamba_core.engine.evaluate import group_metrics

    names = ["a", "b"]
    truths = [ImageTruth(np.array([[0, 0, 10, 10]], np.float32), np.array([0]), 64, 64)
              for _ in range(4)]
    good = Detections(np.array([[0, 0, 10, 10]], np.float32), np.array([0.9], np.float32),
                            np.array([0]))
    bad = Detections(np.array([[40, 40, 50, 50]], np.float32), np.array([0.9], np.float32),
                           np.array([0]))
    g = group_metrics([good, good, bad, bad], truths, names, ["day", "day", "night", "night"],
                      "condition")
    assert g["by"] == "condition" and list(g["values"]) == ["day", "night"]
    assert g["values"]["day"]["mAP50"] == pytest.approx(100.0)
    assert g["values"]["night"]["mAP50"] == pytest.approx(0.0)
    assert g["values"]["day"]["num_images"] == 2 and g["values"]["night"]["num_gt"] == 2


def test_eval_cli_group_by_condition(nano_teacher, synth_root, tmp_path, capsys) -> None:
    from dlrmamba_core.cli import main as cli_main

    out = tmp_path / "ev"
    assert cli_main(["eval", str(nano_teacher), "--data", str(synth_root), "--split", "test",
                     "--out", str(out), "--group-by", "condition"]) == 0
    met = json.loads((out / "metrics.json").read_text())
    groups = met["groups"]["values"]
    assert sum(v["num_images"] for v in groups.values()) == met["num_images"] == 6
    assert sum(v["num_gt"] for v in groups.values()) == met["num_gt"]
    assert set(groups) <= {"day", "dusk", "night", "fog", "glint", "crossover"}
    assert "by condition:" in capsys.readouterr().out


def test_torch_path_clips_boxes_to_the_image_like_the_runtime() -> None:
    """A box running into the letterbox padding is scored as the Detector reports it: cut at
    the image edge (the exported model and the .pt then agree on people cut by the frame)."""
    from dlrmamba_core.data.letterbox import letterbox_boxes, letterbox_params, unletterbox_boxes
    from dlrmamba_core.engine.evaluate import clip_to_content

    lb = letterbox_params((480, 640), (256, 320))  # 320x240 image, 8 px padding top/bottom
    net = np.array([[-4.0, 200.0, 100.0, 252.0], [10.0, 20.0, 30.0, 40.0]], np.float32)
    runtime = letterbox_boxes(unletterbox_boxes(net, lb), lb)  # what the Detector reports
    out = clip_to_content(net.copy(), lb)
    np.testing.assert_allclose(out, runtime, atol=1e-4)
    assert out[0].tolist() == [0.0, 200.0, 100.0, 248.0]
    assert out[1].tolist() == [10.0, 20.0, 30.0, 40.0]  # inside: unchanged
