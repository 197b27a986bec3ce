"""COCO-style detection evaluation with pycocotools.

Two layers:

* :func:`coco_metrics` takes plain numpy predictions and ground truth (one entry per image)
  and returns mAP50, mAP50:95 and per-class AP computed by ``pycocotools.cocoeval.COCOeval``,
  plus the data behind PR curves and a confusion matrix. Anything that produces boxes (the
  INT8 check, the rosbag evaluation, the trainer) can call it.
* :func:`evaluate` runs a model over a dataset first: a torch detector (``nn.Module``), a
  runtime ``Detector``, or a path to an ``.onnx`` / ``.pt`` file.

:func:`write_report` writes ``metrics.json``, ``pr_curves.png`` and ``confusion_matrix.png``.
"""

from __future__ import annotations

from collections.abc import Sequence
import contextlib
from dataclasses import dataclass
import io
import logging
import math
import os
from pathlib import Path
import sys
from typing import Any

import numpy as np

from dlrmamba_core.engine.fileio import save_figure, write_json
from dlrmamba_core.errors import ConfigError, DatasetError, ModelFileError
from dlrmamba_core.runtime.detections import Detections
from dlrmamba_core.runtime.postprocess import box_iou

log = logging.getLogger(__name__)

#: IoU threshold and minimum score used for the confusion matrix (mAP uses all scores).
CONFUSION_IOU = 0.5
CONFUSION_CONF = 0.25


@dataclass
class ImageTruth:
    """Ground truth of one image.

    Attributes:
        boxes: (M, 4) float32 xyxy pixels, in the same frame as the predictions.
        labels: (M,) int64 class indices.
        width: image width in pixels (only used to fill the COCO image record).
        height: image height in pixels.
    """

    boxes: np.ndarray
    labels: np.ndarray
    width: int = 0
    height: int = 0


def _as_pred(p: Detections | Sequence[np.ndarray]) -> Detections:
    if isinstance(p, Detections):
        return p
    boxes, scores, class_ids = p
    return Detections.of(boxes, scores, class_ids)


def _as_truth(t: ImageTruth | Sequence[np.ndarray]) -> ImageTruth:
    if isinstance(t, ImageTruth):
        return t
    boxes, labels = t[0], t[1]
    return ImageTruth(np.asarray(boxes, np.float32).reshape(-1, 4),
                      np.asarray(labels, np.int64).reshape(-1))


def confusion_matrix(
    predictions: Sequence[Detections],
    truths: Sequence[ImageTruth],
    num_classes: int,
    iou_threshold: float = CONFUSION_IOU,
    conf_threshold: float = CONFUSION_CONF,
) -> np.ndarray:
    """Detection confusion matrix.

    Detections with score >= ``conf_threshold`` are matched greedily (highest score first) to
    the unmatched ground-truth box of highest IoU >= ``iou_threshold``, whatever its class.

    Returns:
        (nc + 1, nc + 1) int64, rows = true class, columns = predicted class; the last row
        counts false detections (background predicted as a class), the last column missed
        objects (a class predicted as background).
    """
    nc = num_classes
    cm = np.zeros((nc + 1, nc + 1), np.int64)
    for p, t in zip(predictions, truths, strict=True):
        keep = p.scores >= conf_threshold
        boxes, scores, cls = p.boxes[keep], p.scores[keep], p.class_ids[keep]
        order = np.argsort(-scores, kind="stable")
        matched = np.zeros(len(t.labels), bool)
        ious = box_iou(boxes, t.boxes, dtype=None) if len(boxes) and len(t.boxes) else None
        for i in order:
            j = -1
            if ious is not None:
                cand = np.where(~matched & (ious[i] >= iou_threshold), ious[i], -1.0)
                if cand.max() >= 0:
                    j = int(cand.argmax())
            if j >= 0:
                matched[j] = True
                cm[int(t.labels[j]), int(cls[i])] += 1
            else:
                cm[nc, int(cls[i])] += 1
        for j in np.where(~matched)[0]:
            cm[int(t.labels[j]), nc] += 1
    return cm


def coco_metrics(
    predictions: Sequence[Detections | Sequence[np.ndarray]],
    truths: Sequence[ImageTruth | Sequence[np.ndarray]],
    class_names: Sequence[str],
    max_detections: int = 100,
) -> dict[str, Any]:
    """COCO mAP of numpy detections against numpy ground truth (pycocotools).

    Args:
        predictions: per image ``Detections`` or a ``(boxes, scores, class_ids)`` tuple.
        truths: per image ``ImageTruth`` or a ``(boxes, labels)`` tuple, same order and
            pixel frame as ``predictions``.
        class_names: the class map (index -> name).
        max_detections: detections kept per image, highest scores first (COCO's maxDets).

    Returns:
        ``{"mAP50", "mAP50_95"`` (percent, 0..100), ``"per_class"`` {name: {"AP50",
        "AP50_95", "num_gt"}} (AP None for a class without ground truth), ``"num_images",
        "num_gt", "num_det", "pr_curves"`` {name: [precision at recall 0, 0.01, .., 1] at
        IoU 0.5}, ``"confusion_matrix"`` (list of rows, see :func:`confusion_matrix`)}.

    Raises:
        ConfigError: lengths differ or a class id is outside ``class_names``.
    """
    preds = [_as_pred(p) for p in predictions]
    gts = [_as_truth(t) for t in truths]
    nc = len(class_names)
    if len(preds) != len(gts):
        raise ConfigError(f"coco_metrics: {len(preds)} prediction entries but {len(gts)} "
                          "ground-truth entries; pass one of each per image, in the same order")
    for name, arr in (("prediction", [p.class_ids for p in preds]),
                      ("ground-truth", [t.labels for t in gts])):
        for i, a in enumerate(arr):
            if len(a) and (a.min() < 0 or a.max() >= nc):
                raise ConfigError(f"coco_metrics: image {i} has a {name} class id outside "
                                  f"0..{nc - 1} ({nc} class names given)")

    images: list[dict[str, Any]] = []
    anns: list[dict[str, Any]] = []
    dets: list[dict[str, Any]] = []
    for img_id, (p, t) in enumerate(zip(preds, gts, strict=True), start=1):
        w = t.width or math.ceil(max(t.boxes[:, 2].max(initial=1), 1))
        h = t.height or math.ceil(max(t.boxes[:, 3].max(initial=1), 1))
        images.append({"id": img_id, "width": w, "height": h})
        for b, c in zip(t.boxes, t.labels, strict=True):
            bw, bh = float(b[2] - b[0]), float(b[3] - b[1])
            anns.append({"id": len(anns) + 1, "image_id": img_id, "category_id": int(c) + 1,
                         "bbox": [float(b[0]), float(b[1]), bw, bh], "area": bw * bh,
                         "iscrowd": 0})
        order = np.argsort(-p.scores, kind="stable")[:max_detections]
        for k in order:
            b = p.boxes[k]
            dets.append({"image_id": img_id, "category_id": int(p.class_ids[k]) + 1,
                         "bbox": [float(b[0]), float(b[1]), float(b[2] - b[0]),
                                  float(b[3] - b[1])],
                         "score": float(p.scores[k])})

    num_gt = np.bincount(np.concatenate([t.labels for t in gts] or [np.zeros(0, np.int64)]),
                         minlength=nc)
    result: dict[str, Any] = {
        "mAP50": 0.0, "mAP50_95": 0.0, "per_class": {},
        "num_images": len(images), "num_gt": len(anns), "num_det": len(dets),
        "pr_curves": {}, "recall_thresholds": [round(r, 2) for r in np.linspace(0, 1, 101)],
    }
    precision = None
    if anns and dets:
        stats, precision = _cocoeval(images, anns, dets, class_names, "bbox", max_detections)
        result["mAP50_95"], result["mAP50"] = stats
    _per_class(result, precision, num_gt, class_names)
    result["confusion_matrix"] = confusion_matrix(preds, gts, nc).tolist()
    return result


def _cocoeval(images: list[dict[str, Any]], anns: list[dict[str, Any]],
              dets: list[dict[str, Any]], class_names: Sequence[str], iou_type: str,
              max_detections: int) -> tuple[tuple[float, float], np.ndarray]:
    """pycocotools COCOeval of COCO-format records -> ((mAP50:95, mAP50) in percent,
    precision (T iou thresholds, R = 101 recall points, K classes) at all areas)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    coco_gt = COCO()
    coco_gt.dataset = {"info": {}, "images": images, "annotations": anns,
                       "categories": [{"id": i + 1, "name": n}
                                      for i, n in enumerate(class_names)]}
    # pycocotools prints progress to stdout; keep library output off our stdout.
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(dets)
        ev = COCOeval(coco_gt, coco_dt, iouType=iou_type)
        ev.params.maxDets = [1, 10, max_detections]
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    stats = (round(100.0 * max(float(ev.stats[0]), 0.0), 3),
             round(100.0 * max(float(ev.stats[1]), 0.0), 3))
    # precision: (T iou thresholds, R=101 recall points, K classes, A areas, M maxDets)
    return stats, ev.eval["precision"][:, :, :, 0, -1]  # all areas, largest maxDets


def _per_class(result: dict[str, Any], precision: np.ndarray | None, num_gt: np.ndarray,
               class_names: Sequence[str]) -> None:
    """Fill ``result["per_class"]`` and ``result["pr_curves"]`` from COCOeval's precision."""
    for k, name in enumerate(class_names):
        ap50 = ap = None
        curve = [0.0] * 101
        if num_gt[k] > 0:
            ap50 = ap = 0.0
            if precision is not None:
                pk = precision[:, :, k]  # (T, R); -1 marks "no data"
                valid = pk[pk > -1]
                ap = round(100.0 * float(valid.mean()), 3) if valid.size else 0.0
                p50 = pk[0][pk[0] > -1]
                ap50 = round(100.0 * float(p50.mean()), 3) if p50.size else 0.0
                curve = [round(float(max(v, 0.0)), 4) for v in pk[0]]
        result["per_class"][name] = {"AP50": ap50, "AP50_95": ap, "num_gt": int(num_gt[k])}
        result["pr_curves"][name] = curve


def coco_segm_metrics(
    predictions: Sequence[Detections],
    pred_masks: Sequence[Sequence[dict[str, Any]]],
    truth_labels: Sequence[np.ndarray],
    truth_masks: Sequence[Sequence[dict[str, Any]]],
    class_names: Sequence[str],
    max_detections: int = 100,
) -> dict[str, Any]:
    """COCO mask mAP (pycocotools, ``iouType="segm"``) of instance masks as COCO RLE.

    Args:
        predictions: per image the detections (scores and classes are used; mask IoU, not
            boxes, decides the matches).
        pred_masks: per image one RLE (``data.masks.rle_encode``) per detection, in order.
        truth_labels: per image (M,) class indices.
        truth_masks: per image one RLE per ground-truth object, same pixel frame and image
            size as the predicted masks.
        class_names: the class map.
        max_detections: detections kept per image, highest scores first.

    Returns:
        ``{"mAP50", "mAP50_95"`` (percent), ``"per_class"`` {name: {"AP50", "AP50_95",
        "num_gt"}}, ``"pr_curves"``, ``"num_gt", "num_det"}``.

    Raises:
        ConfigError: per-image lengths that differ.
    """
    from dlrmamba_core.data.masks import rle_decode

    n = len(predictions)
    if not (len(pred_masks) == len(truth_labels) == len(truth_masks) == n):
        raise ConfigError(f"coco_segm_metrics: {n} prediction, {len(pred_masks)} mask, "
                          f"{len(truth_labels)} label and {len(truth_masks)} truth-mask "
                          "entries; pass one of each per image")
    images: list[dict[str, Any]] = []
    anns: list[dict[str, Any]] = []
    dets: list[dict[str, Any]] = []
    for img_id in range(1, n + 1):
        p, pm = predictions[img_id - 1], pred_masks[img_id - 1]
        labels, tm = truth_labels[img_id - 1], truth_masks[img_id - 1]
        if len(pm) != len(p.scores) or len(tm) != len(labels):
            raise ConfigError(f"coco_segm_metrics: image {img_id - 1} has {len(p.scores)} "
                              f"detections but {len(pm)} masks, {len(labels)} objects but "
                              f"{len(tm)} masks")
        size = (tm[0] if len(tm) else pm[0] if len(pm) else {"size": [1, 1]})["size"]
        images.append({"id": img_id, "height": int(size[0]), "width": int(size[1])})
        for rle, c in zip(tm, labels, strict=True):
            area = float(rle_decode(rle).sum())  # COCO: a mask's area is its pixel count
            anns.append({"id": len(anns) + 1, "image_id": img_id, "category_id": int(c) + 1,
                         "segmentation": rle, "area": area, "iscrowd": 0,
                         "bbox": [0.0, 0.0, 0.0, 0.0]})
        for k in np.argsort(-p.scores, kind="stable")[:max_detections]:
            dets.append({"image_id": img_id, "category_id": int(p.class_ids[k]) + 1,
                         "segmentation": pm[k], "score": float(p.scores[k])})
    nc = len(class_names)
    num_gt = np.bincount(np.concatenate([np.asarray(t, np.int64) for t in truth_labels]
                                        or [np.zeros(0, np.int64)]), minlength=nc)
    result: dict[str, Any] = {"mAP50": 0.0, "mAP50_95": 0.0, "per_class": {}, "pr_curves": {},
                              "num_gt": len(anns), "num_det": len(dets)}
    precision = None
    if anns and dets:
        stats, precision = _cocoeval(images, anns, dets, class_names, "segm", max_detections)
        result["mAP50_95"], result["mAP50"] = stats
    _per_class(result, precision, num_gt, class_names)
    return result


def plot_pr_curves(metrics: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """PR curve per class at IoU 0.5 (from :func:`coco_metrics`) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 5))
    rec = metrics["recall_thresholds"]
    for name, curve in metrics["pr_curves"].items():
        ap = metrics["per_class"][name]["AP50"]
        label = f"{name} (AP50 {ap:.1f})" if ap is not None else f"{name} (no GT)"
        ax.plot(rec, curve, label=label)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_title(f"PR @ IoU 0.5, mAP50 {metrics['mAP50']:.1f}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower left")
    return save_figure(path, fig)


def plot_confusion(metrics: dict[str, Any], class_names: Sequence[str],
                   path: str | os.PathLike[str]) -> Path:
    """Confusion matrix (rows true, columns predicted, + background) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.asarray(metrics["confusion_matrix"], np.float64)
    labels = [*class_names, "background"]
    # Normalize each true-class row so rare classes are readable; background row by its sum.
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(1.0 + 0.55 * len(labels), 0.8 + 0.5 * len(labels)))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            if cm[i, j]:
                ax.text(j, i, str(int(cm[i, j])), ha="center", va="center", fontsize=7,
                        color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"confusion (IoU>={CONFUSION_IOU}, score>={CONFUSION_CONF})")
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    return save_figure(path, fig)


def write_report(metrics: dict[str, Any], class_names: Sequence[str],
                 out_dir: str | os.PathLike[str], plots: bool = True) -> Path:
    """Write ``metrics.json`` (+ ``pr_curves.png``, ``confusion_matrix.png``) into ``out_dir``.

    Returns:
        The path of ``metrics.json``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if plots:
        plot_pr_curves(metrics, out / "pr_curves.png")
        plot_confusion(metrics, class_names, out / "confusion_matrix.png")
    return write_json(out / "metrics.json", metrics)


# --------------------------------------------------------------------------------------------
# Running a model over a dataset
# --------------------------------------------------------------------------------------------

def blank_modality(rgb: Any, thermal: Any, modality: str) -> tuple[Any, Any]:
    """Zero the input a single-modality model does not use.

    A single-modality model is the same fused detector trained (and run) with the other
    camera's input replaced by zeros, so its ONNX keeps both inputs.

    Args:
        rgb: (B, 3, H, W) tensor or array in [0, 1].
        thermal: (B, 1, H, W) tensor or array in [0, 1].
        modality: "fused", "rgb" or "thermal".
    """
    if modality == "fused":
        return rgb, thermal
    if modality == "rgb":
        return rgb, thermal * 0
    if modality == "thermal":
        return rgb * 0, thermal
    raise ConfigError(f"modality must be fused, rgb or thermal, got {modality!r}")


def _progress_bar(enabled: bool | None, total: int) -> Any:
    """A tqdm bar over ``total`` images like ``train`` and ``bag-eval`` (None: disabled).

    ``enabled`` None shows it only when stderr is a terminal (library calls stay quiet).
    """
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="img", desc="eval", leave=False)


@dataclass
class SegmRecords:
    """Instance masks collected while evaluating a segment model, per image (COCO RLE in
    original RGB pixels; see :func:`coco_segm_metrics`).

    Attributes:
        pred: one RLE per detection, in the detections' order.
        truth: one RLE per ground-truth object.
        labels: (M,) class indices of the ground-truth objects.
    """

    pred: list[list[dict[str, Any]]]
    truth: list[list[dict[str, Any]]]
    labels: list[np.ndarray]


def truth_masks(dataset: Any, i: int, src_hw: tuple[int, int]
                ) -> tuple[list[dict[str, Any]], np.ndarray] | None:
    """Ground-truth instance masks of pair ``i`` as COCO RLE in original RGB pixels, and its
    labels; None when ``dataset`` (a reader's ``PairDataset``, or a torch dataset over one)
    has no masks.

    Raises:
        DatasetError: an image with objects but no masks in a dataset that has masks.
    """
    from dlrmamba_core.data.masks import render_masks, rle_encode

    pairs = _mask_source(dataset)
    if pairs is None:
        return None
    e = pairs.entries[i]
    labels = np.asarray(e.labels, np.int64).reshape(-1)
    if e.masks is None:
        if len(labels):
            raise DatasetError(f"{e.rgb_path}: {len(labels)} objects without instance masks "
                               "in a dataset that has masks; its reader is inconsistent")
        return [], labels
    return [rle_encode(m) for m in render_masks(e.masks, src_hw)], labels


def _mask_source(dataset: Any) -> Any:
    """The reader's ``PairDataset`` behind ``dataset`` when it has instance masks, else None."""
    pairs = dataset if hasattr(dataset, "entries") else getattr(dataset, "pairs", None)
    return pairs if getattr(pairs, "has_masks", False) else None


def _torch_predictions(model: Any, dataset: Any, input_hw: tuple[int, int], batch_size: int,
                       device: str, modality: str, conf: float, iou: float, max_det: int,
                       num_workers: int, limit: int | None, progress: bool | None = None,
                       segm: SegmRecords | None = None
                       ) -> tuple[list[Detections], list[ImageTruth]]:
    """Detections and truth (network-input pixels) of a torch model over ``dataset``; a
    segment model's masks (and the ground truth's) go into ``segm`` when given."""
    import torch

    from dlrmamba_core.data.masks import rle_encode
    from dlrmamba_core.engine.datasets import collate, detection_dataset
    from dlrmamba_core.runtime.postprocess import detections_at, nms_batch, nms_indices
    from dlrmamba_core.runtime.segment import decode_masks

    ds = dataset if isinstance(dataset, torch.utils.data.Dataset) else detection_dataset(
        dataset, input_hw, augment=False)
    if limit is not None:
        ds = torch.utils.data.Subset(ds, range(min(limit, len(ds))))
    loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=False,
                                         num_workers=num_workers, collate_fn=collate)
    was_training = model.training
    model.eval()
    preds: list[Detections] = []
    truths: list[ImageTruth] = []
    dev = torch.device(device)
    h, w = input_hw
    bar = _progress_bar(progress, len(ds))  # type: ignore[arg-type]  # map-style: sized
    try:
        with torch.inference_mode():
            for batch in loader:
                rgb, thermal = blank_modality(batch["rgb"].to(dev), batch["thermal"].to(dev),
                                              modality)
                raw = model(rgb, thermal)
                if isinstance(raw, tuple):  # segment model: (B, 4 + nc + K, A), protos
                    out = raw[0].float().cpu().numpy()
                    protos = raw[1].float().cpu().numpy()  # (B, K, h/4, w/4)
                    c = out.shape[1] - protos.shape[1]  # 4 + nc
                    dets = []
                    for b in range(len(out)):
                        idx = nms_indices(out[b, :c], conf, iou, max_det)
                        dets.append(detections_at(out[b, :c], idx))
                        if segm is not None:
                            m = decode_masks(out[b][c:, idx].T, protos[b], dets[-1].boxes,
                                             batch["meta"][b]["letterbox"])
                            segm.pred.append([rle_encode(x) for x in m])
                            gt = truth_masks(dataset, len(preds) + b,
                                             batch["meta"][b]["letterbox"].src_hw)
                            if gt is None:
                                raise DatasetError("segm evaluation needs a dataset with "
                                                   "instance masks")
                            segm.truth.append(gt[0])
                            segm.labels.append(gt[1])
                else:
                    out = raw.float().cpu().numpy()  # (B, 4 + nc, A)
                    dets = nms_batch(out, conf, iou, max_det)
                tg = batch["targets"].numpy()  # (M, 6) [batch_idx, cls, x1, y1, x2, y2]
                for b, det in enumerate(dets):
                    clip_to_content(det.boxes, batch["meta"][b]["letterbox"])
                    preds.append(det)
                    sel = tg[:, 0] == b
                    truths.append(ImageTruth(tg[sel, 2:6].astype(np.float32),
                                             tg[sel, 1].astype(np.int64), w, h))
                if bar is not None:
                    bar.update(len(dets))
    finally:
        model.train(was_training)
        if bar is not None:
            bar.close()
    return preds, truths


def clip_to_content(boxes: np.ndarray, lb: Any) -> np.ndarray:
    """Clip (N, 4) network-input boxes, in place, to the letterboxed image (not its padding).

    The runtime Detector clips its boxes to the original image when it maps them back
    (``unletterbox_boxes``); scoring a torch model in network pixels must do the same, or a
    box that runs off the image edge (people cut by the bottom of the frame) scores a lower
    IoU here than the same box from the exported model.

    Args:
        boxes: (N, 4) float ``x1, y1, x2, y2`` in network-input pixels.
        lb: the image's :class:`~dlrmamba_core.data.letterbox.Letterbox`.

    Returns:
        ``boxes``, clipped.
    """
    nh, nw = lb.new_hw
    np.clip(boxes[:, 0::2], lb.pad_x, lb.pad_x + nw, out=boxes[:, 0::2])
    np.clip(boxes[:, 1::2], lb.pad_y, lb.pad_y + nh, out=boxes[:, 1::2])
    return boxes


def _detector_predictions(detector: Any, dataset: Any, modality: str, limit: int | None,
                          progress: bool | None = None, segm: SegmRecords | None = None
                          ) -> tuple[list[Detections], list[ImageTruth]]:
    preds: list[Detections] = []
    truths: list[ImageTruth] = []
    n = len(dataset) if limit is None else min(limit, len(dataset))
    bar = _progress_bar(progress, n)
    try:
        _detect_all(detector, dataset, modality, n, preds, truths, bar, segm)
    finally:
        if bar is not None:
            bar.close()
    return preds, truths


def _detect_all(detector: Any, dataset: Any, modality: str, n: int,
                preds: list[Detections], truths: list[ImageTruth], bar: Any,
                segm: SegmRecords | None = None) -> None:
    from dlrmamba_core.data.masks import rle_encode

    for i in range(n):
        # Ground-truth masks are rendered only for segm scoring (truth_masks below).
        s = dataset.load(i, masks=False) if hasattr(dataset, "load") else dataset[i]
        rgb, thermal = s.rgb, s.thermal
        if modality == "rgb":
            thermal = np.zeros_like(thermal)
        elif modality == "thermal":
            rgb = np.zeros_like(rgb)
        d = detector.detect(rgb, thermal, homography=s.homography, masks=segm is not None)
        preds.append(d)
        truths.append(ImageTruth(s.boxes, s.labels, s.rgb.shape[1], s.rgb.shape[0]))
        if segm is not None:  # a segment model: its masks and the pair's, original pixels
            gt = truth_masks(dataset, i, s.rgb.shape[:2])
            if d.masks is None or gt is None:
                raise DatasetError("segm evaluation needs a segment model and a dataset with "
                                   "instance masks")
            segm.pred.append([rle_encode(m) for m in d.masks])
            segm.truth.append(gt[0])
            segm.labels.append(gt[1])
        if bar is not None:
            bar.update(1)


def evaluate(
    model_or_detector: Any,
    dataset: Any,
    class_names: Sequence[str] | None = None,
    input_hw: tuple[int, int] | None = None,
    batch_size: int = 16,
    device: str = "cpu",
    modality: str = "fused",
    conf_threshold: float = 0.001,
    iou_threshold: float = 0.6,
    max_detections: int = 100,
    num_workers: int = 0,
    limit: int | None = None,
    group_by: str | None = None,
    progress: bool | None = None,
    class_map: Any = None,
    model_class_names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Run a model over a dataset and compute COCO metrics.

    Args:
        model_or_detector: a torch detector (``nn.Module`` with the eval-mode output of the
            interface contract), a runtime ``Detector``, or a path to ``.onnx`` (run with the
            runtime Detector) or ``.pt`` (loaded with ``models.io.load_model``).
        dataset: a ``PairDataset`` (reader output) or a torch dataset of network-ready
            samples (``DetectionDataset``) for torch models.
        class_names: defaults to the dataset's ``class_names``.
        input_hw: network input (h, w) for torch models; defaults to the checkpoint's.
        batch_size: torch batch size.
        device: torch device string.
        modality: "fused", "rgb" or "thermal" (the other input is zeroed).
        conf_threshold: minimum score kept before NMS (low, so the PR curve is complete).
        iou_threshold: NMS IoU.
        max_detections: detections per image.
        num_workers: DataLoader workers (torch path).
        limit: evaluate only the first ``limit`` images.
        group_by: also compute mAP per value of this image attribute of the reader (e.g.
            ``condition`` or ``scene`` of the synthetic benchmark); images without it form
            the group ``"n/a"``.
        progress: a progress bar over the images (None: only when stderr is a terminal).
        class_map: when the model's classes differ from the dataset's: ``--class-map`` text
            (``MODEL=DATA,...``), a ``data.classmap.ClassMapping``, or None (match by name
            automatically, ``data.classmap.match_classes``). Detections of model classes the
            data lacks are dropped, boxes of data classes the model lacks are not scored;
            both are listed in ``metrics["class_map"]``.
        model_class_names: the classes of a torch ``nn.Module`` (default: ``class_names``).

    Returns:
        The dict of :func:`coco_metrics` over the scored data classes; with ``group_by``
        also ``"groups"``: ``{"by": group_by, "values": {value: {"mAP50", "mAP50_95",
        "num_images", "num_gt"}}}``; with a class mapping also ``"class_map"``.

    Raises:
        DatasetError: the dataset is empty.
        ModelFileError: the model file is missing or its classes differ from the dataset's.
    """
    if len(dataset) == 0:
        raise DatasetError("evaluate: the dataset has no samples; check the path and split")
    names = list(class_names if class_names is not None else _dataset_class_names(dataset))
    model_names = list(model_class_names) if model_class_names is not None else None
    segm: SegmRecords | None = None
    target = model_or_detector
    if isinstance(target, (str, os.PathLike)):
        path = Path(target)
        if not path.is_file():
            raise ModelFileError(f"{path}: no such model file; pass a .onnx or .pt file")
        if path.suffix == ".onnx":
            from dlrmamba_core.runtime import Detector

            target = Detector(str(path), conf_threshold=conf_threshold,
                              iou_threshold=iou_threshold, max_detections=max_detections)
        else:
            from dlrmamba_core.models.io import load_model

            target, meta = load_model(path, map_location=device)
            hw = meta["input_hw"]
            input_hw = input_hw or (int(hw[0]), int(hw[1]))
            model_names = list(meta["class_names"])
            modality = (meta.get("extra") or {}).get("modality", modality)
    if hasattr(target, "detect"):
        model_names = list(getattr(target, "class_names", names))
        mapping = _class_mapping(model_or_detector, model_names, names, class_map)
        segm = _segm_records(bool(getattr(target, "segment", False)), mapping, dataset)
        preds, truths = _detector_predictions(target, dataset, modality, limit, progress, segm)
    else:
        import torch

        if input_hw is None:
            raise ConfigError("evaluate: input_hw is required for a torch model")
        nc = getattr(target, "num_classes", len(names))
        model_names = model_names or (names if nc == len(names) else None)
        if model_names is None or len(model_names) != nc:
            raise ModelFileError(f"evaluate: the model predicts {nc} classes but the dataset "
                                 f"has {len(names)} ({names}); pass the model's class names "
                                 "(model_class_names=) to map them onto the dataset's")
        mapping = _class_mapping(model_or_detector, model_names, names, class_map)
        target = target.to(torch.device(device))
        segm = _segm_records(
            getattr(getattr(target, "cfg", None), "task", "detect") == "segment", mapping,
            dataset)
        preds, truths = _torch_predictions(target, dataset, tuple(input_hw), batch_size,
                                           device, modality, conf_threshold, iou_threshold,
                                           max_detections, num_workers, limit, progress, segm)
    scored = names
    if mapping is not None:
        preds, truths, scored, not_scored = map_to_data(preds, truths, mapping)
    metrics = coco_metrics(preds, truths, scored, max_detections=max_detections)
    if segm is not None:
        metrics["segm"] = coco_segm_metrics(preds, segm.pred, segm.labels, segm.truth, scored,
                                            max_detections=max_detections)
    if mapping is not None:
        metrics["class_map"] = {**mapping.to_dict(), "boxes_not_scored": not_scored}
    if group_by:
        metrics["groups"] = group_metrics(preds, truths, scored,
                                          image_attribute(dataset, group_by, len(preds)),
                                          group_by, max_detections)
    return metrics


def _segm_records(segment: bool, mapping: Any, dataset: Any) -> SegmRecords | None:
    """Empty records when a segment model's masks are to be scored too: not through a class
    map (boxes only then), and only against a dataset with instance masks (logged)."""
    if not segment:
        return None
    if mapping is None and _mask_source(dataset) is not None:
        return SegmRecords([], [], [])
    log.warning("segment model: mask mAP not computed (%s)", "a class map is in use"
                if mapping is not None else "the dataset has no instance masks")
    return None


def _class_mapping(source: Any, model_names: list[str], data_names: list[str],
                   class_map: Any) -> Any:
    """None when the classes agree and no map is given; else the ``ClassMapping``.

    Raises:
        ModelFileError: no model class matches any data class.
    """
    from dlrmamba_core.data.classmap import ClassMapping, match_classes

    if class_map is None and model_names == data_names:
        return None
    mapping = class_map if isinstance(class_map, ClassMapping) else match_classes(
        model_names, data_names, class_map)
    if not mapping.model_to_data:
        raise ModelFileError(
            f"{source}: none of the model's classes {model_names} matches the dataset's "
            f"{data_names} by name; pass --class-map MODEL_CLASS=DATA_CLASS,... (e.g. "
            f"{model_names[0]}={data_names[0]})")
    if not mapping.is_identity:
        for line in mapping.describe():
            log.info("class map: %s", line)
    return mapping


def map_to_data(preds: Sequence[Detections], truths: Sequence[ImageTruth], mapping: Any
                ) -> tuple[list[Detections], list[ImageTruth], list[str], dict[str, int]]:
    """Predictions in model classes and truth in data classes -> both in the scored classes.

    The scored classes are the data classes some model class maps to (in data order).
    Detections of unmapped model classes are dropped; truth boxes of data classes the model
    does not know are removed (and counted).

    Returns:
        (predictions, truths, scored class names, {data class: boxes not scored}).
    """
    scored_ids = mapping.evaluated_data_ids()
    to_scored = np.full(len(mapping.data_names), -1, np.int64)
    to_scored[scored_ids] = np.arange(len(scored_ids))
    out_p: list[Detections] = []
    for p in preds:
        boxes, scores, cls = mapping.predictions_to_data(p.boxes, p.scores, p.class_ids)
        out_p.append(Detections(boxes, scores, to_scored[cls]))
    out_t: list[ImageTruth] = []
    not_scored: dict[str, int] = {}
    for t in truths:
        lab = to_scored[t.labels] if len(t.labels) else t.labels
        for j in t.labels[lab < 0]:
            name = mapping.data_names[int(j)]
            not_scored[name] = not_scored.get(name, 0) + 1
        out_t.append(ImageTruth(t.boxes[lab >= 0], lab[lab >= 0], t.width, t.height))
    return out_p, out_t, [mapping.data_names[j] for j in scored_ids], not_scored


def image_attribute(dataset: Any, key: str, n: int) -> list[str]:
    """``key`` of the first ``n`` images' reader metadata (no image is decoded)."""
    entries = getattr(dataset, "entries", None)
    if entries is None:
        raise ConfigError(f"grouping by {key!r} needs a reader's PairDataset (its image "
                          "metadata), not a torch dataset")
    return [str((getattr(e, "meta", None) or {}).get(key, "n/a")) for e in entries[:n]]


def group_metrics(preds: Sequence[Detections], truths: Sequence[ImageTruth],
                  class_names: Sequence[str], values: Sequence[str], key: str,
                  max_detections: int = 100) -> dict[str, Any]:
    """COCO mAP of each group of images (``values[i]`` is image ``i``'s group)."""
    out: dict[str, Any] = {"by": key, "values": {}}
    for v in sorted(set(values)):
        idx = [i for i, x in enumerate(values) if x == v]
        m = coco_metrics([preds[i] for i in idx], [truths[i] for i in idx], class_names,
                         max_detections=max_detections)
        out["values"][v] = {"mAP50": m["mAP50"], "mAP50_95": m["mAP50_95"],
                            "num_images": len(idx), "num_gt": m["num_gt"]}
    return out


def _dataset_class_names(dataset: Any) -> list[str]:
    for obj in (dataset, getattr(dataset, "dataset", None), getattr(dataset, "pairs", None)):
        if obj is not None and hasattr(obj, "class_names"):
            return list(obj.class_names)
    raise ConfigError("evaluate: the dataset has no class_names; pass class_names=")


def summarize(metrics: dict[str, Any]) -> str:
    """A short human-readable summary (one line per class)."""
    lines = [f"mAP50 {metrics['mAP50']:.2f}  mAP50:95 {metrics['mAP50_95']:.2f}  "
             f"images {metrics['num_images']}  objects {metrics['num_gt']}"]
    segm = metrics.get("segm")
    if segm:
        lines[0] = "bbox " + lines[0]
        lines.append(f"segm mAP50 {segm['mAP50']:.2f}  mAP50:95 {segm['mAP50_95']:.2f}  "
                     f"(instance masks in original RGB pixels)")
    for name, pc in metrics["per_class"].items():
        ap50 = "  n/a" if pc["AP50"] is None else f"{pc['AP50']:5.1f}"
        lines.append(f"  {name:<16} AP50 {ap50}  objects {pc['num_gt']}")
    no_gt = [n for n, pc in metrics["per_class"].items() if not pc["num_gt"]]
    if no_gt:
        lines.append(f"not in the mean (no ground truth in this data): {', '.join(no_gt)}")
    cmap = metrics.get("class_map")
    if cmap:
        pairs = ", ".join(f"{m}->{d}" for m, d in cmap["matched"].items())
        lines.append(f"class map: {pairs}")
        if cmap["model_classes_ignored"]:
            lines.append("model classes not in the data (detections dropped, not in the "
                         f"mean): {', '.join(cmap['model_classes_ignored'])}")
        if cmap["data_classes_unknown_to_model"]:
            counts = cmap.get("boxes_not_scored", {})
            lines.append("data classes the model does not know (boxes not scored): " + ", ".join(
                f"{n} ({counts.get(n, 0)} boxes)" for n in cmap["data_classes_unknown_to_model"]))
    groups = metrics.get("groups")
    if groups:
        lines.append(f"by {groups['by']}:")
        for v, g in groups["values"].items():
            lines.append(f"  {v:<16} mAP50 {g['mAP50']:5.1f}  mAP50:95 {g['mAP50_95']:5.1f}  "
                         f"images {g['num_images']}  objects {g['num_gt']}")
    return "\n".join(lines)

