"""Decode + non-maximum suppression in numpy (torch-free: this runs on the robot).

The detector's eval output (and the ONNX output ``predictions``) is (B, 4 + nc, A): xyxy boxes in
network-input pixels, then per-class probabilities. :func:`nms` turns one image's into
:class:`~dlrmamba_core.runtime.detections.Detections`, :func:`nms_batch` a batch's into a list.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from dlrmamba_core.errors import InputError
from dlrmamba_core.runtime.detections import Detections

_MAX_CANDIDATES = 3000
"""Candidates kept (by score) before NMS: bounds the O(n^2) IoU work on noisy frames."""


def box_iou(a: np.ndarray, b: np.ndarray,
            dtype: type[np.floating] | None = np.float32) -> np.ndarray:
    """Pairwise IoU of xyxy boxes a (N, 4) and b (M, 4) -> (N, M).

    Args:
        a: (N, 4) boxes.
        b: (M, 4) boxes.
        dtype: of the result (default float32); None keeps the precision it was computed in
            (the COCO evaluation's matching).
    """
    lt = np.maximum(a[:, None, :2], b[None, :, :2])  # (N, M, 2)
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0.0, None).prod(-1)
    area_a = np.clip(a[:, 2:] - a[:, :2], 0.0, None).prod(-1)
    area_b = np.clip(b[:, 2:] - b[:, :2], 0.0, None).prod(-1)
    union = area_a[:, None] + area_b[None, :] - inter
    iou = inter / np.maximum(union, 1e-9)
    return iou if dtype is None else iou.astype(dtype)


def nms_boxes(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy NMS: indices of kept boxes, by descending score.

    Args:
        boxes: (N, 4) xyxy.
        scores: (N,).
        iou_threshold: a box is dropped when its IoU with a kept, higher-scoring box is above
            this.
    """
    order = np.argsort(-scores, kind="stable")
    boxes = boxes[order]
    iou = box_iou(boxes, boxes)  # (N, N), N <= _MAX_CANDIDATES
    n = len(order)
    suppressed = np.zeros(n, dtype=bool)
    keep = []
    for i in range(n):
        if suppressed[i]:
            continue
        keep.append(i)
        suppressed |= iou[i] > iou_threshold
    return order[np.asarray(keep, dtype=np.int64)]


def _check_thresholds(conf_threshold: float, iou_threshold: float, max_detections: int) -> None:
    if not 0.0 <= conf_threshold <= 1.0 or not 0.0 <= iou_threshold <= 1.0:
        raise InputError(
            f"conf_threshold ({conf_threshold}) and iou_threshold ({iou_threshold}) must be in "
            "[0, 1]"
        )
    if max_detections < 1:
        raise InputError(f"max_detections must be >= 1; got {max_detections}")


def _nms_single(
    pred: np.ndarray,
    conf_threshold: float,
    iou_threshold: float,
    max_detections: int,
    class_agnostic: bool,
    class_names: Sequence[str],
) -> Detections:
    """pred (4 + nc, A) -> detections of one image."""
    keep = _keep_single(pred, conf_threshold, iou_threshold, max_detections, class_agnostic)
    if keep.size == 0:
        return Detections.empty(list(class_names))
    return detections_at(pred, keep, class_names)


def _keep_single(pred: np.ndarray, conf_threshold: float, iou_threshold: float,
                 max_detections: int, class_agnostic: bool) -> np.ndarray:
    """pred (4 + nc, A) -> (N,) int64 anchor indices kept by NMS, by descending score."""
    boxes = pred[:4].T.astype(np.float32)  # (A, 4)
    probs = pred[4:]  # (nc, A)
    class_ids = probs.argmax(0)  # one class per anchor: the best one
    scores = probs[class_ids, np.arange(probs.shape[1])].astype(np.float32)
    sel = np.flatnonzero(scores > conf_threshold)
    if sel.size > _MAX_CANDIDATES:
        sel = sel[np.argsort(-scores[sel], kind="stable")[:_MAX_CANDIDATES]]
    if sel.size == 0:
        return np.zeros(0, np.int64)
    boxes, scores, class_ids = boxes[sel], scores[sel], class_ids[sel].astype(np.int64)
    if class_agnostic:
        shifted = boxes
    else:
        # Class-aware in one pass: move each class to its own region so boxes of different
        # classes never overlap (the offset exceeds every coordinate).
        offset = float(np.abs(boxes).max()) * 2.0 + 1.0
        shifted = boxes + (class_ids.astype(np.float32) * offset)[:, None]
    keep = nms_boxes(shifted, scores, iou_threshold)[:max_detections]
    return sel[keep].astype(np.int64)


def detections_at(pred: np.ndarray, idx: np.ndarray, class_names: Sequence[str] = ()
                  ) -> Detections:
    """The detections of anchors ``idx`` of one image's predictions (4 + nc, A) (e.g. the
    indices of :func:`nms_indices`): boxes, best class and its probability."""
    boxes = pred[:4, idx].T.astype(np.float32)  # (N, 4)
    probs = pred[4:, idx]  # (nc, N)
    class_ids = probs.argmax(0).astype(np.int64)
    scores = probs[class_ids, np.arange(len(idx))].astype(np.float32)
    return Detections(boxes, scores, class_ids, list(class_names))


def nms_indices(
    pred: np.ndarray,
    conf_threshold: float = 0.25,
    iou_threshold: float = 0.5,
    max_detections: int = 100,
    class_agnostic: bool = False,
) -> np.ndarray:
    """The anchors :func:`nms` keeps, as indices into the columns of ``pred`` (4 + nc, A), by
    descending score: ``detections_at(pred, nms_indices(pred, ...))`` equals ``nms(pred,
    ...)``, and the indices pick further per-anchor outputs (a segment model's mask
    coefficients).

    Raises:
        InputError: not (4 + nc, A) with nc >= 1, or thresholds out of range.
    """
    arr = np.asarray(pred)
    if arr.ndim != 2 or arr.shape[0] < 5:
        raise InputError(f"predictions of one image must be (4 + nc, A) with nc >= 1; got "
                         f"shape {arr.shape}")
    _check_thresholds(conf_threshold, iou_threshold, max_detections)
    return _keep_single(arr, conf_threshold, iou_threshold, max_detections, class_agnostic)


def nms(
    pred: np.ndarray,
    conf_threshold: float = 0.25,
    iou_threshold: float = 0.5,
    max_detections: int = 100,
    class_agnostic: bool = False,
    class_names: Sequence[str] = (),
) -> Detections:
    """Threshold, then class-aware (default) greedy NMS of one image's raw predictions.

    Args:
        pred: (4 + nc, A): xyxy boxes then class probabilities, as output by the detector in
            eval mode / the ONNX model for one image (``output[i]``).
        conf_threshold: minimum class probability (strictly greater is kept).
        iou_threshold: IoU above which the lower-scoring box of the same class is removed.
        max_detections: at most this many detections.
        class_agnostic: suppress across classes too.
        class_names: the model's class map, stored in the result (default: empty).

    Returns:
        :class:`Detections` (boxes in network-input pixels), sorted by descending score.

    Raises:
        InputError: not (4 + nc, A) with nc >= 1, or thresholds out of range.
    """
    arr = np.asarray(pred)
    if arr.ndim != 2 or arr.shape[0] < 5:
        raise InputError(
            f"predictions of one image must be (4 + nc, A) with nc >= 1; got shape "
            f"{arr.shape}: pass output[i] of the detector's eval/ONNX output (nms_batch takes "
            "the whole batch)"
        )
    _check_thresholds(conf_threshold, iou_threshold, max_detections)
    return _nms_single(arr, conf_threshold, iou_threshold, max_detections, class_agnostic,
                       class_names)


def nms_batch(
    pred: np.ndarray,
    conf_threshold: float = 0.25,
    iou_threshold: float = 0.5,
    max_detections: int = 100,
    class_agnostic: bool = False,
    class_names: Sequence[str] = (),
) -> list[Detections]:
    """:func:`nms` of each image of a batch ``pred`` (B, 4 + nc, A): one result per image.

    Raises:
        InputError: not (B, 4 + nc, A) with nc >= 1, or thresholds out of range.
    """
    arr = np.asarray(pred)
    if arr.ndim != 3 or arr.shape[1] < 5:
        raise InputError(
            f"batch predictions must be (B, 4 + nc, A) with nc >= 1; got shape {arr.shape}: "
            "pass the detector's eval/ONNX output (nms takes one image)"
        )
    _check_thresholds(conf_threshold, iou_threshold, max_detections)
    return [
        _nms_single(p, conf_threshold, iou_threshold, max_detections, class_agnostic,
                    class_names)
        for p in arr
    ]
