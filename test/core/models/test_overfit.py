"""``nano`` memorises 8 SYNTHETIC RGB + thermal crops (data.synthetic) to a high mAP50.

The crops (64 x 96 windows of frames prepared at 384 x 512, centred on an object) keep the
test short on 2 CPU cores; mAP50 is computed by pycocotools on the numpy NMS output.
"""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
import torch

CROP_HW = (64, 96)


def synthetic_crops(n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """n crops -> rgb (n, 3, h, w), thermal (n, 1, h, w), targets (M, 6) in crop pixels."""
    from dlrmamba_core.data.letterbox import letterbox_boxes
    from dlrmamba_core.data.preprocess import prepare_inputs
    from dlrmamba_core.data.synthetic import SynthConfig, generate_frame

    cfg = SynthConfig()
    h, w = CROP_HW
    rgbs, ths, rows = [], [], []
    seed = 0
    while len(rgbs) < n:
        s = generate_frame(cfg, seed)
        seed += 1
        if len(s.boxes) == 0:
            continue
        p = prepare_inputs(s.rgb, s.thermal, s.homography, (384, 512))
        boxes = letterbox_boxes(s.boxes, p.letterbox)
        cx, cy = (boxes[0, :2] + boxes[0, 2:]) / 2
        x0 = int(np.clip(cx - w / 2 + 5, 0, 512 - w))  # +5: off the anchor grid's symmetry
        y0 = int(np.clip(cy - h / 2 + 3, 0, 384 - h))
        shifted = boxes - np.array([x0, y0, x0, y0], np.float32)
        clipped = np.clip(shifted, 0, [w, h, w, h]).astype(np.float32)
        area = lambda b: np.prod(np.clip(b[:, 2:] - b[:, :2], 0, None), 1)  # noqa: E731
        keep = area(clipped) >= 0.6 * area(shifted)  # mostly inside the crop
        if not keep.any():
            continue
        i = len(rgbs)
        rgbs.append(torch.from_numpy(p.rgb[:, y0 : y0 + h, x0 : x0 + w].copy()))
        ths.append(torch.from_numpy(p.thermal[:, y0 : y0 + h, x0 : x0 + w].copy()))
        for b, label in zip(clipped[keep], s.labels[keep], strict=True):
            rows.append([i, float(label), *b.tolist()])
    return torch.stack(rgbs), torch.stack(ths), torch.tensor(rows, dtype=torch.float32)


def map50(pred: np.ndarray, targets: np.ndarray, n_images: int, nc: int) -> float:
    """COCO mAP at IoU 0.5 (pycocotools) of eval-mode predictions (B, 4 + nc, A)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    from dlrmamba_core.runtime.postprocess import nms_batch

    h, w = CROP_HW
    gt = COCO()
    gt.dataset = {
        "images": [{"id": i, "width": w, "height": h} for i in range(n_images)],
        "annotations": [
            {"id": k + 1, "image_id": int(r[0]), "category_id": int(r[1]),
             "bbox": [float(r[2]), float(r[3]), float(r[4] - r[2]), float(r[5] - r[3])],
             "area": float((r[4] - r[2]) * (r[5] - r[3])), "iscrowd": 0}
            for k, r in enumerate(targets)
        ],
        "categories": [{"id": c} for c in range(nc)],
    }
    dets = nms_batch(pred, 0.001, 0.6, 100)
    res = [
        {"image_id": i, "category_id": int(c), "score": float(s),
         "bbox": [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])]}
        for i, det in enumerate(dets)
        for b, s, c in zip(det.boxes, det.scores, det.class_ids, strict=True)
    ]
    if not res:
        return 0.0
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        ev = COCOeval(gt, gt.loadRes(res), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return float(ev.stats[1])


@pytest.mark.slow
def test_nano_overfits_eight_synthetic_pairs() -> None:
    from dlrmamba_core.data.synthetic import SYNTH_CLASSES

    torch.manual_seed(0)
    # One intra-op thread: on a shared 2-core machine, OpenMP spin-waiting with 2 threads was
    # measured 10-100x slower than 1 thread.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _overfit(len(SYNTH_CLASSES))
    finally:
        torch.set_num_threads(threads)


def _overfit(nc: int) -> None:
    from dlrmamba_core.losses import DetectionLoss
    from dlrmamba_core.models import build_model

    rgb, thermal, targets = synthetic_crops(8)
    model = build_model("nano", nc).train()
    crit = DetectionLoss(model)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)

    def evaluate() -> float:
        model.eval()
        with torch.no_grad():
            pred = model(rgb, thermal).numpy()
        model.train()
        return map50(pred, targets.numpy(), len(rgb), nc)

    before = evaluate()
    for _ in range(ITERATIONS):
        loss, _ = crit(model(rgb, thermal), targets)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = evaluate()
    assert before < 0.3
    assert after >= 0.9, f"mAP50 {after:.3f} after {ITERATIONS} steps (before {before:.3f})"


ITERATIONS = 100
