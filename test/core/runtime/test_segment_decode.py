"""Numpy mask decoding of a segment model's outputs and COCO segm scoring (torch-free)."""

from __future__ import annotations

import numpy as np
import pytest

from dlrmamba_core.data.letterbox import letterbox_boxes, letterbox_masks, letterbox_params
from dlrmamba_core.data.masks import downsample_masks, rle_encode
from dlrmamba_core.engine.evaluate import coco_segm_metrics
from dlrmamba_core.errors import InputError
from dlrmamba_core.runtime.detections import Detections
from dlrmamba_core.runtime.postprocess import detections_at, nms, nms_indices
from dlrmamba_core.runtime.segment import decode_masks


def test_nms_indices_pick_what_nms_keeps() -> None:
    rng = np.random.default_rng(0)
    a, nc = 400, 3
    xy = rng.uniform(0, 200, (2, a))
    wh = rng.uniform(5, 40, (2, a))
    pred = np.concatenate([xy, xy + wh, rng.uniform(0, 1, (nc, a))]).astype(np.float32)
    ref = nms(pred, 0.3, 0.5, 50)
    idx = nms_indices(pred, 0.3, 0.5, 50)
    got = detections_at(pred, idx)
    assert len(idx) == len(ref.boxes) > 5
    np.testing.assert_array_equal(got.boxes, ref.boxes)
    np.testing.assert_array_equal(got.scores, ref.scores)
    np.testing.assert_array_equal(got.class_ids, ref.class_ids)
    with pytest.raises(InputError):
        nms_indices(pred[:4], 0.3, 0.5, 50)


def _frame() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from dlrmamba_core.data.synthetic import SynthConfig, generate_frame

    s = generate_frame(SynthConfig(), 1)
    assert s.masks is not None and len(s.masks) >= 3
    return s.masks, np.asarray(s.boxes, np.float32), np.asarray(s.labels, np.int64)


def test_ground_truth_as_prototypes_decodes_back_to_the_ground_truth() -> None:
    """Prototypes = the letterboxed ground-truth masks at stride 4 (logit +-20), one-hot
    coefficients, ground-truth boxes: the decoded masks in original pixels match the ground
    truth up to the stride-4 grid, and score segm AP50 100 against it."""
    masks, boxes, labels = _frame()
    lb = letterbox_params(masks.shape[1:], (256, 320))
    grid = downsample_masks(letterbox_masks(masks, lb), 4)  # (N, 64, 80)
    protos = 20.0 * (2.0 * grid.astype(np.float32) - 1.0)
    coeffs = np.eye(len(masks), dtype=np.float32)
    out = decode_masks(coeffs, protos, letterbox_boxes(boxes, lb), lb)
    assert out.shape == masks.shape and out.dtype == np.uint8
    for i in range(len(masks)):
        inter = np.logical_and(out[i], masks[i]).sum()
        union = np.logical_or(out[i], masks[i]).sum()
        assert inter / union > 0.6, f"object {i}: IoU {inter / union:.2f}"
        x1, y1, x2, y2 = boxes[i]
        ys, xs = np.nonzero(out[i])
        # cropped to its box (pixel centres inside)
        assert xs.min() + 0.5 >= x1 and xs.max() + 0.5 < x2 + 1e-3
        assert ys.min() + 0.5 >= y1 and ys.max() + 0.5 < y2 + 1e-3
    det = Detections(boxes, np.linspace(1.0, 0.5, len(boxes)).astype(np.float32), labels)
    m = coco_segm_metrics([det], [[rle_encode(x) for x in out]], [labels],
                          [[rle_encode(x) for x in masks]], [f"c{k}" for k in range(8)])
    assert m["mAP50"] == 100.0 and m["num_gt"] == len(masks)


def test_ground_truth_fed_as_predictions_scores_segm_ap_one() -> None:
    masks, boxes, labels = _frame()
    rles = [rle_encode(x) for x in masks]
    det = Detections(boxes, np.full(len(boxes), 0.9, np.float32), labels)
    m = coco_segm_metrics([det, det], [rles, rles], [labels, labels], [rles, rles],
                          [f"c{k}" for k in range(8)])
    assert m["mAP50"] == 100.0 and m["mAP50_95"] == 100.0
    # One mask shifted off its object: that object is missed at IoU 0.5.
    moved = list(rles)
    moved[0] = rle_encode(np.roll(masks[0], 200, axis=1))
    m2 = coco_segm_metrics([det], [moved], [labels], [rles], [f"c{k}" for k in range(8)])
    assert m2["mAP50"] < 100.0


def test_decode_masks_errors() -> None:
    lb = letterbox_params((48, 64), (64, 96))
    with pytest.raises(InputError, match="same K"):
        decode_masks(np.zeros((1, 3)), np.zeros((4, 16, 24)), np.zeros((1, 4)), lb)
    with pytest.raises(InputError, match="one stride"):
        decode_masks(np.zeros((1, 4)), np.zeros((4, 16, 16)), np.zeros((1, 4)), lb)


@pytest.mark.parametrize(("src_hw", "dst_hw"), [((480, 640), (256, 320)), ((100, 60), (128, 96)),
                                                ((64, 96), (64, 96))])
def test_decode_masks_equals_the_whole_image_reference(src_hw: tuple[int, int],
                                                       dst_hw: tuple[int, int]) -> None:
    """decode_masks computes logits only on the prototype cells under each box; the
    reference computes them on the whole grid, unletterboxes the whole map
    (data.letterbox.unletterbox_masks) and crops to the box afterwards."""
    from dlrmamba_core.data.letterbox import unletterbox_boxes, unletterbox_masks
    from dlrmamba_core.runtime.segment import mask_logits

    rng = np.random.default_rng(3)
    k, n = 6, 12
    protos = rng.standard_normal((k, dst_hw[0] // 4, dst_hw[1] // 4)).astype(np.float32)
    coeffs = rng.standard_normal((n, k)).astype(np.float32)
    xy = rng.uniform(-10, [dst_hw[1] - 5, dst_hw[0] - 5], (n, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(1, 60, (n, 2))], 1).astype(np.float32)
    lb = letterbox_params(src_hw, dst_hw)
    got = decode_masks(coeffs, protos, boxes, lb)
    full = unletterbox_masks(mask_logits(coeffs, protos), lb, threshold=None)  # (n, H, W)
    ob = unletterbox_boxes(boxes, lb)
    xs, ys = np.arange(src_hw[1]) + 0.5, np.arange(src_hw[0]) + 0.5
    in_y = (ys[None] >= ob[:, 1:2]) & (ys[None] < ob[:, 3:4])  # (n, H)
    in_x = (xs[None] >= ob[:, 0:1]) & (xs[None] < ob[:, 2:3])  # (n, W)
    inside = in_y[:, :, None] & in_x[:, None, :]  # (n, H, W)
    ref = ((full >= 0.0) & inside).astype(np.uint8)
    assert ref.any()
    assert (got != ref).sum() <= 2  # float summation order may flip a pixel at logit ~0
