"""numpy NMS on detector predictions (the function the edge runtime uses)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from dlrmamba_core.errors import InputError
from dlrmamba_core.runtime.detections import Detections
from dlrmamba_core.runtime.postprocess import box_iou, nms, nms_batch


def make_pred(boxes: list[list[float]], probs: list[list[float]]) -> np.ndarray:
    """(4 + nc, A) from per-anchor boxes and class probabilities."""
    return np.concatenate([np.asarray(boxes, np.float32).T, np.asarray(probs, np.float32).T])


def test_box_iou() -> None:
    a = np.array([[0, 0, 10, 10]], np.float32)
    b = np.array([[5, 0, 15, 10], [20, 20, 30, 30], [0, 0, 10, 10]], np.float32)
    np.testing.assert_allclose(box_iou(a, b), [[1 / 3, 0.0, 1.0]], rtol=1e-6)


def test_class_aware_suppression_and_sorting() -> None:
    pred = make_pred(
        [[0, 0, 10, 10], [1, 1, 11, 11], [0, 0, 10, 10], [50, 50, 60, 60], [2, 0, 12, 10]],
        [[0.9, 0.1], [0.8, 0.1], [0.1, 0.7], [0.3, 0.2], [0.05, 0.1]],
    )
    det = nms(pred, conf_threshold=0.25, iou_threshold=0.5)
    assert isinstance(det, Detections) and det.class_names == []
    boxes, scores, cls = det.boxes, det.scores, det.class_ids
    # anchor 1 overlaps anchor 0 (same class) -> removed; anchor 2 is class 1 -> kept;
    # anchor 4 is below the threshold.
    np.testing.assert_allclose(scores, [0.9, 0.7, 0.3])
    assert cls.tolist() == [0, 1, 0] and cls.dtype == np.int64
    assert boxes.dtype == np.float32 and boxes.shape == (3, 4)
    np.testing.assert_allclose(boxes[2], [50, 50, 60, 60])
    # Class-agnostic: anchor 2 (class 1) is suppressed by anchor 0 too.
    scores_ag = nms(pred, 0.25, 0.5, class_agnostic=True).scores
    np.testing.assert_allclose(scores_ag, [0.9, 0.3])
    # max_detections keeps the best.
    top1 = nms(pred, 0.25, 0.5, max_detections=1, class_names=["a", "b"])
    np.testing.assert_allclose(top1.scores, [0.9])
    assert top1.labels == ["a"]


def test_batch_input_returns_one_result_per_image_and_empty_is_typed() -> None:
    p = make_pred([[0, 0, 10, 10]], [[0.9]])
    out = nms_batch(np.stack([p, p * np.array([[1], [1], [1], [1], [0]], np.float32)]), 0.5,
                    0.5)
    assert isinstance(out, list) and len(out) == 2
    assert len(out[0]) == 1
    empty = out[1]
    assert isinstance(empty, Detections) and len(empty) == 0
    assert empty.boxes.shape == (0, 4) and empty.scores.shape == (0,)
    assert empty.class_ids.dtype == np.int64
    assert nms(p, 0.5, 0.5).boxes.tolist() == out[0].boxes.tolist()  # one image == batch of one


def test_matches_brute_force_reference_on_random_boxes() -> None:
    rng = np.random.default_rng(0)
    n, nc = 300, 3
    xy = rng.uniform(0, 200, (n, 2))
    wh = rng.uniform(5, 60, (n, 2))
    boxes = np.concatenate([xy, xy + wh], 1).astype(np.float32)
    probs = rng.uniform(0, 1, (n, nc)).astype(np.float32)
    got = nms(make_pred(boxes.tolist(), probs.tolist()), 0.3, 0.45, 1000)
    got_b, got_s, got_c = got.boxes, got.scores, got.class_ids
    # Reference: per class, plain greedy loop over boxes sorted by score.
    cls = probs.argmax(1)
    score = probs.max(1)
    keep = []
    for c in range(nc):
        idx = [i for i in np.argsort(-score) if cls[i] == c and score[i] > 0.3]
        kept: list[int] = []
        for i in idx:
            if all(box_iou(boxes[i : i + 1], boxes[j : j + 1])[0, 0] <= 0.45 for j in kept):
                kept.append(i)
        keep += kept
    keep.sort(key=lambda i: -score[i])
    np.testing.assert_allclose(got_s, score[keep])
    np.testing.assert_allclose(got_b, boxes[keep])
    assert got_c.tolist() == cls[keep].tolist()


def test_bad_inputs() -> None:
    with pytest.raises(InputError, match="4 \\+ nc"):
        nms(np.zeros((4, 10), np.float32))
    with pytest.raises(InputError, match="conf_threshold"):
        nms(np.zeros((6, 10), np.float32), conf_threshold=1.5)
    with pytest.raises(InputError, match="max_detections"):
        nms(np.zeros((6, 10), np.float32), max_detections=0)
    with pytest.raises(InputError, match="nms_batch takes"):
        nms(np.zeros((2, 6, 10), np.float32))
    with pytest.raises(InputError, match="nms takes one image"):
        nms_batch(np.zeros((6, 10), np.float32))
    with pytest.raises(InputError, match="conf_threshold"):
        nms_batch(np.zeros((1, 6, 10), np.float32), conf_threshold=-0.1)


def test_imports_without_torch() -> None:
    code = ("import sys; sys.modules['torch'] = None; "
            "import dlrmamba_core.runtime.postprocess as p; print(p.nms.__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "nms"
