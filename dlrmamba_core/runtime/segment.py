"""Instance masks of a segment model's detections, in numpy/OpenCV (torch-free).

A segment model (``DetectorConfig.task == "segment"``) outputs, beside the (4 + nc) rows of
each anchor, K mask coefficients ((B, 4 + nc + K, A)) and K prototype masks (B, K, h, w) at
stride ``dst_h / h`` (4) of the network input. The mask of a kept detection is
``sigmoid(coeffs . protos)``: the logits are sampled bilinearly at every original RGB pixel
centre inside the detection's box (the letterbox undone) and a pixel is object where the
sigmoid of its sample is >= 0.5; pixels outside the box are 0.
"""

from __future__ import annotations

from collections.abc import Sequence
import math

import cv2
import numpy as np

from dlrmamba_core.data.letterbox import Letterbox, unletterbox_boxes
from dlrmamba_core.errors import InputError
from dlrmamba_core.runtime.detections import Detections
from dlrmamba_core.runtime.postprocess import detections_at, nms_indices

__all__ = ["decode_masks", "instance_index_image", "instance_mask_encoding", "mask_logits",
           "segment_outputs"]


def _checked(coeffs: np.ndarray, protos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(coeffs (N, K), protos (K, h, w)) as float32 arrays.

    Raises:
        InputError: other ranks or two different K.
    """
    c = np.asarray(coeffs, np.float32)
    p = np.asarray(protos, np.float32)
    if c.ndim != 2 or p.ndim != 3 or c.shape[1] != p.shape[0]:
        raise InputError(f"mask coefficients {c.shape} and prototypes {p.shape} must be (N, K) "
                         "and (K, h, w) with the same K (one image's outputs)")
    return c, p


def mask_logits(coeffs: np.ndarray, protos: np.ndarray) -> np.ndarray:
    """``coeffs . protos``: (N, K) x (K, h, w) -> (N, h, w) float32 logits (the whole grid;
    :func:`decode_masks` computes them only under each box)."""
    c, p = _checked(coeffs, protos)
    k, h, w = p.shape
    return (c @ p.reshape(k, h * w)).reshape(-1, h, w)  # (N, h, w)


def decode_masks(coeffs: np.ndarray, protos: np.ndarray, boxes: np.ndarray, lb: Letterbox,
                 threshold: float = 0.5) -> np.ndarray:
    """Instance masks of N detections of one image in original RGB pixels.

    Args:
        coeffs: (N, K) mask coefficients of the kept anchors.
        protos: (K, h, w) prototypes of the image, covering the network input ``lb.dst_hw``
            at one stride on both axes.
        boxes: (N, 4) xyxy detection boxes in network-input pixels.
        lb: the RGB letterbox of the input.
        threshold: mask probability at and above which a pixel is object.

    Returns:
        (N, H, W) uint8 {0, 1} at ``lb.src_hw``: the pixels whose centre lies in the box
        (mapped back to original pixels) and where the sigmoid of the bilinearly sampled
        logit is >= ``threshold``.

    Raises:
        InputError: shapes that do not fit, or prototypes whose stride differs by axis.
    """
    c, p = _checked(coeffs, protos)
    b = np.asarray(boxes, np.float32).reshape(-1, 4)
    if len(b) != len(c):
        raise InputError(f"{len(b)} boxes for {len(c)} mask coefficient rows")
    (dh, dw), (sh, sw) = lb.dst_hw, lb.src_hw
    kp, mh, mw = p.shape
    stride = dh / mh
    if abs(dw / mw - stride) > 1e-6:
        raise InputError(f"prototypes {(mh, mw)} do not cover the input {lb.dst_hw} at one "
                         "stride on both axes")
    # Thresholding the logit at logit(threshold) is thresholding the sigmoid at threshold.
    t = float(np.log(threshold / (1.0 - threshold))) if 0.0 < threshold < 1.0 else (
        -np.inf if threshold <= 0.0 else np.inf)
    out = np.zeros((len(b), sh, sw), np.uint8)
    ob = unletterbox_boxes(b, lb, clip=True)  # (N, 4) original pixels
    k = lb.scale / stride
    # Original pixel centre x + 0.5 -> input u = (x + 0.5) * scale + pad -> grid index
    # g = u / stride - 0.5 = k * x + off (OpenCV puts pixel centres on integers).
    off_x = (0.5 * lb.scale + lb.pad_x) / stride - 0.5
    off_y = (0.5 * lb.scale + lb.pad_y) / stride - 0.5
    for i in range(len(b)):
        # Pixels c with centre c + 0.5 in [x1, x2): c in [ceil(x1 - 0.5), ceil(x2 - 0.5)).
        x0, x1 = math.ceil(ob[i, 0] - 0.5), math.ceil(ob[i, 2] - 0.5)
        y0, y1 = math.ceil(ob[i, 1] - 0.5), math.ceil(ob[i, 3] - 0.5)
        if x1 <= x0 or y1 <= y0:
            continue
        # Logits only on the prototype cells the box's pixels sample (bilinear: floor(g) and
        # floor(g) + 1, one more cell each side for safety): cost grows with the box, not the
        # image.
        gx0 = max(0, math.floor(k * x0 + off_x) - 1)
        gx1 = min(mw, math.floor(k * (x1 - 1) + off_x) + 3)
        gy0 = max(0, math.floor(k * y0 + off_y) - 1)
        gy1 = min(mh, math.floor(k * (y1 - 1) + off_y) + 3)
        cells = p[:, gy0:gy1, gx0:gx1]  # (K, gh, gw)
        logits = (c[i] @ cells.reshape(kp, -1)).reshape(gy1 - gy0, gx1 - gx0)
        # Output pixel (x', y') = original (x0 + x', y0 + y') -> cell of the crop.
        affine = np.array([[k, 0.0, k * x0 + off_x - gx0], [0.0, k, k * y0 + off_y - gy0]])
        region = cv2.warpAffine(logits, affine, (x1 - x0, y1 - y0),
                                flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                borderMode=cv2.BORDER_REPLICATE)
        out[i, y0:y1, x0:x1] = region >= t
    return out


def segment_outputs(predictions: np.ndarray, protos: np.ndarray, lb: Letterbox,
                    conf_threshold: float = 0.25, iou_threshold: float = 0.5,
                    max_detections: int = 100, class_names: Sequence[str] = (),
                    mask_threshold: float = 0.5) -> tuple[Detections, np.ndarray]:
    """One image's segment-model outputs (the eval / ONNX outputs ``predictions`` and
    ``protos``) -> detections and instance masks, both in original RGB pixels.

    Args:
        predictions: (4 + nc + K, A) or (1, 4 + nc + K, A): boxes (input pixels), class
            probabilities, K mask coefficients per anchor.
        protos: (K, h, w) or (1, K, h, w) prototypes.
        lb: the RGB letterbox of the input.
        conf_threshold, iou_threshold, max_detections: NMS settings
            (``runtime.postprocess.nms``).
        class_names: the model's class map, stored in the result.
        mask_threshold: mask probability at and above which a pixel is object.

    Returns:
        (detections with boxes unletterboxed to original RGB pixels, by descending score;
        masks (N, H, W) uint8 {0, 1} at ``lb.src_hw``, row i for detection i).

    Raises:
        InputError: shapes that do not fit together.
    """
    pred = np.asarray(predictions)
    pro = np.asarray(protos)
    pred = pred[0] if pred.ndim == 3 and pred.shape[0] == 1 else pred
    pro = pro[0] if pro.ndim == 4 and pro.shape[0] == 1 else pro
    if pred.ndim != 2 or pro.ndim != 3 or pred.shape[0] < 5 + pro.shape[0]:
        raise InputError(f"segment outputs {np.asarray(predictions).shape} and "
                         f"{np.asarray(protos).shape}: need (4 + nc + K, A) and (K, h, w) "
                         "of one image (nc >= 1)")
    c = pred.shape[0] - pro.shape[0]  # 4 + nc
    idx = nms_indices(pred[:c], conf_threshold, iou_threshold, max_detections)
    det = detections_at(pred[:c], idx, class_names)
    masks = decode_masks(pred[c:, idx].T, pro, det.boxes, lb, mask_threshold)  # (N, H, W)
    boxes = unletterbox_boxes(det.boxes, lb, clip=True)
    return Detections(boxes, det.scores, det.class_ids, list(class_names)), masks


MONO8_MAX_DETECTIONS = 255  # index values 1..255 fit in mono8


def instance_mask_encoding(max_detections: int) -> str:
    """The encoding of ``~/instance_masks`` for a node allowed ``max_detections`` per frame.

    ``mono8`` while every index value 1..max_detections fits in 8 bits (max_detections <=
    255, the default 100 included), ``mono16`` above: the encoding stays the same from frame
    to frame for one configuration.
    """
    return "mono8" if max_detections <= MONO8_MAX_DETECTIONS else "mono16"


def instance_index_image(masks: np.ndarray, scores: np.ndarray, boxes: np.ndarray,
                         encoding: str = "mono8") -> np.ndarray:
    """Composite N instance masks into one index image (conversion only, no inference).

    Args:
        masks: (N, H, W) uint8 {0, 1} in RGB pixels, row i for detection i
            (``Detections.masks``); a mask is 0 outside its box (``runtime.segment`` crops
            each mask to its box), so only the box's pixels are read.
        scores: (N,) detection scores.
        boxes: (N, 4) xyxy boxes in RGB pixels (``Detections.boxes``).
        encoding: ``mono8`` (N <= 255) or ``mono16`` (N <= 65535).

    Returns:
        (H, W) uint8 (mono8) or uint16 (mono16): 1 + i where detection i's mask is set, 0 for
        background. Where masks overlap the higher score wins (equal scores: the lower index).

    Raises:
        InputError: shapes that do not agree, or more detections than the encoding holds.
    """
    m = np.asarray(masks)
    s = np.asarray(scores, np.float64).reshape(-1)
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    if m.ndim != 3 or not len(m) == len(s) == len(b):
        raise InputError(f"masks {m.shape}, scores {s.shape} and boxes {b.shape} must be "
                         "(N, H, W), (N,) and (N, 4) with the same N")
    dtype = {"mono8": np.uint8, "mono16": np.uint16}.get(encoding)
    if dtype is None:
        raise InputError(f"instance mask encoding {encoding!r} is not mono8 or mono16")
    if len(m) > np.iinfo(dtype).max:
        raise InputError(f"{len(m)} detections do not fit in {encoding} index values")
    n, h, w = m.shape
    out = np.zeros((h, w), dtype)
    # Paint from the lowest priority to the highest, so the winner is written last: ascending
    # score, and among equal scores the higher index first.
    order = np.lexsort((-np.arange(n), s))
    for i in order.tolist():
        x1, y1, x2, y2 = b[i].tolist()
        # Every pixel whose centre lies in the box, with one pixel of margin each side.
        c0, c1 = max(math.floor(x1) - 1, 0), min(math.ceil(x2) + 1, w)
        r0, r1 = max(math.floor(y1) - 1, 0), min(math.ceil(y2) + 1, h)
        if c1 <= c0 or r1 <= r0:
            continue
        region = out[r0:r1, c0:c1]  # a view: writes land in ``out``
        region[m[i, r0:r1, c0:c1] != 0] = i + 1
    return out
