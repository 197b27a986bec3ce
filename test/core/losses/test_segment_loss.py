"""Prototype-mask loss: crop and normalization, gradients, a zero case, a tiny overfit."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dlrmamba_core.errors import InputError
from dlrmamba_core.losses import SegmentLoss, instance_mask_loss, padded_rows, targets_to_padded
from dlrmamba_core.losses.segment import box_cells


def test_padded_rows_follow_targets_to_padded() -> None:
    t = torch.tensor([[1, 0, 0, 0, 4, 4], [0, 1, 1, 1, 5, 5], [1, 2, 2, 2, 6, 6],
                      [0, 0, 3, 3, 7, 7]], dtype=torch.float32)
    boxes, _, valid = targets_to_padded(t, 3)
    rows = padded_rows(t, 3)
    assert rows.shape == valid.shape
    assert ((rows >= 0) == valid).all()
    torch.testing.assert_close(t[rows[valid], 2:6], boxes[valid])


def test_box_cells_use_cell_centres() -> None:
    cells = box_cells(torch.tensor([[1.0, 0.4, 3.0, 2.6]]), (4, 5))[0]
    # columns 1, 2 (centres 1.5, 2.5 in [1, 3)); rows 0..2 (centres 0.5..2.5 in [0.4, 2.6))
    expect = torch.zeros(4, 5, dtype=torch.bool)
    expect[0:3, 1:3] = True
    assert torch.equal(cells, expect)


def test_mask_loss_is_zero_for_a_perfect_mask_and_ignores_outside_the_box() -> None:
    gt = torch.zeros(1, 8, 8)
    gt[0, 2:5, 3:6] = 1.0
    box = torch.tensor([[2.0, 1.0, 7.0, 6.0]])
    logits = (gt * 2 - 1) * 40.0  # +40 object, -40 background
    assert float(instance_mask_loss(logits, gt, box, dice_gain=1.0)[0]) < 1e-6
    wrong_outside = logits.clone()
    wrong_outside[0, 7, :] = 40.0  # row 7 is outside the box: not supervised
    wrong_outside[0, :, 0] = 40.0
    assert float(instance_mask_loss(wrong_outside, gt, box, dice_gain=1.0)[0]) < 1e-6
    wrong_inside = logits.clone()
    wrong_inside[0, 1, 2] = 40.0
    assert float(instance_mask_loss(wrong_inside, gt, box)[0]) == pytest.approx(40.0 / 25,
                                                                                rel=1e-4)


def test_mask_loss_is_normalized_by_box_area() -> None:
    small, big = torch.zeros(1, 16, 16), torch.zeros(1, 16, 16)
    small[0, 2:4, 2:4] = 1
    big[0, 2:10, 2:10] = 1
    zeros = torch.zeros(1, 16, 16)  # p = 0.5 everywhere: BCE log(2) per cell
    l_small = instance_mask_loss(zeros, small, torch.tensor([[1.0, 1.0, 5.0, 5.0]]))
    l_big = instance_mask_loss(zeros, big, torch.tensor([[1.0, 1.0, 13.0, 13.0]]))
    torch.testing.assert_close(l_small, l_big)
    torch.testing.assert_close(l_small, torch.tensor([float(np.log(2.0))]))


def _nano_segment(nc: int = 2, k: int = 8) -> torch.nn.Module:
    from dlrmamba_core.models import build_model

    return build_model("nano", nc, task="segment", num_protos=k)


def test_segment_loss_is_finite_with_gradients_into_protonet_and_coefficients() -> None:
    torch.manual_seed(0)
    model = _nano_segment().train()
    rgb, thermal = torch.rand(2, 3, 64, 96), torch.rand(2, 1, 64, 96)
    targets = torch.tensor([[0, 0, 10, 8, 40, 40], [1, 1, 50, 20, 90, 60],
                            [1, 0, 4, 30, 30, 60]], dtype=torch.float32)
    masks = torch.zeros(3, 16, 24, dtype=torch.uint8)
    for j, (x1, y1, x2, y2) in enumerate(targets[:, 2:6].int().tolist()):
        masks[j, y1 // 4 + 1 : y2 // 4 - 1, x1 // 4 + 1 : x2 // 4 - 1] = 1
    loss, parts = SegmentLoss(model)(model(rgb, thermal), targets, masks)
    assert torch.isfinite(loss) and set(parts) == {"box", "cls", "dfl", "mask"}
    assert float(parts["mask"]) > 0
    loss.backward()
    for p in (model.protonet.out.weight, model.protonet.conv1.conv.weight):
        assert p.grad is not None and float(p.grad.abs().sum()) > 0
    # Coefficients get gradients on the levels that hold positives (P3 at least, here).
    coef_grads = [float(lvl[-1].weight.grad.abs().sum()) for lvl in model.mask_coef.levels]
    assert coef_grads[0] > 0
    # No targets: no positives; the mask term is 0 and still in the graph.
    model.zero_grad()
    loss, parts = SegmentLoss(model)(model(rgb, thermal), torch.zeros(0, 6),
                                     torch.zeros(0, 16, 24, dtype=torch.uint8))
    assert float(parts["mask"]) == 0.0
    loss.backward()
    assert model.protonet.out.weight.grad is not None


def test_segment_loss_refuses_masks_that_do_not_fit() -> None:
    from dlrmamba_core.errors import ConfigError
    from dlrmamba_core.models import build_model

    with pytest.raises(ConfigError, match="needs a segment model"):
        SegmentLoss(build_model("nano", 2))
    model = _nano_segment().train()
    preds = model(torch.rand(1, 3, 64, 96), torch.rand(1, 1, 64, 96))
    targets = torch.tensor([[0, 0, 10, 8, 40, 40]], dtype=torch.float32)
    with pytest.raises(InputError, match="one row per target"):
        SegmentLoss(model)(preds, targets, torch.zeros(2, 16, 24))
    with pytest.raises(InputError, match="mask_stride"):
        SegmentLoss(model)(preds, targets, torch.zeros(1, 8, 12))


def synthetic_mask_crops(n: int, hw: tuple[int, int] = (64, 96), stride: int = 4
                         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """n windows of synthetic frames around an object -> rgb, thermal, targets (M, 6), masks
    (M, h / stride, w / stride) row-aligned with targets."""
    from dlrmamba_core.data.letterbox import letterbox_boxes, letterbox_masks
    from dlrmamba_core.data.masks import downsample_masks
    from dlrmamba_core.data.preprocess import prepare_inputs
    from dlrmamba_core.data.synthetic import SynthConfig, generate_frame

    h, w = hw
    rgbs, ths, rows, masks = [], [], [], []
    seed = 0
    while len(rgbs) < n:
        s = generate_frame(SynthConfig(), seed)
        seed += 1
        if len(s.boxes) == 0 or s.masks is None:
            continue
        p = prepare_inputs(s.rgb, s.thermal, s.homography, (384, 512))
        boxes = letterbox_boxes(s.boxes, p.letterbox)
        m = letterbox_masks(s.masks, p.letterbox)
        cx, cy = (boxes[0, :2] + boxes[0, 2:]) / 2
        x0 = int(np.clip(cx - w / 2 + 6, 0, 512 - w)) // stride * stride
        y0 = int(np.clip(cy - h / 2 + 2, 0, 384 - h)) // stride * stride
        crop = m[:, y0 : y0 + h, x0 : x0 + w]
        keep = crop.reshape(len(crop), -1).sum(1) >= 0.6 * m.reshape(len(m), -1).sum(1)
        keep &= crop.reshape(len(crop), -1).sum(1) > 0
        if not keep.any():
            continue
        i = len(rgbs)
        rgbs.append(torch.from_numpy(p.rgb[:, y0 : y0 + h, x0 : x0 + w].copy()))
        ths.append(torch.from_numpy(p.thermal[:, y0 : y0 + h, x0 : x0 + w].copy()))
        b = np.clip(boxes[keep] - np.float32([x0, y0, x0, y0]), 0, [w, h, w, h])
        for box, label in zip(b, s.labels[keep], strict=True):
            rows.append([i, float(label), *box.tolist()])
        masks.append(downsample_masks(crop[keep], stride))
    return (torch.stack(rgbs), torch.stack(ths), torch.tensor(rows, dtype=torch.float32),
            torch.from_numpy(np.concatenate(masks)))


def test_nano_segment_mask_loss_falls_on_four_synthetic_pairs() -> None:
    from dlrmamba_core.data.synthetic import SYNTH_CLASSES

    torch.manual_seed(0)
    rgb, thermal, targets, masks = synthetic_mask_crops(4)
    model = _nano_segment(len(SYNTH_CLASSES), 16).train()
    crit = SegmentLoss(model, mask_gain=7.5, dice_gain=0.5)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
    history = []
    for _ in range(40):
        loss, parts = crit(model(rgb, thermal), targets, masks)
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append(float(parts["mask"]))
    first, last = np.mean(history[:3]), np.mean(history[-3:])
    assert last < 0.25 * first, f"mask loss {first:.3f} -> {last:.3f} in 40 steps"


def test_tiny_trained_segment_model_scores_segm_map() -> None:
    """nano-segment memorises 4 synthetic crops: its masks, decoded and scored as `eval` does
    (nms_indices -> runtime.segment.decode_masks -> RLE -> pycocotools segm), go from mAP50 0
    to >= 80 against the full-resolution ground-truth masks (measured: 100 after 60 steps)."""
    from dlrmamba_core.data.letterbox import letterbox_params
    from dlrmamba_core.data.masks import downsample_masks, rle_encode
    from dlrmamba_core.data.synthetic import SYNTH_CLASSES
    from dlrmamba_core.engine.evaluate import coco_segm_metrics
    from dlrmamba_core.runtime.postprocess import detections_at, nms_indices
    from dlrmamba_core.runtime.segment import decode_masks

    torch.manual_seed(0)
    rgb, thermal, targets, full = synthetic_mask_crops(4, stride=1)  # full-resolution masks
    masks = torch.from_numpy(downsample_masks(full.numpy(), 4))
    nc = len(SYNTH_CLASSES)
    model = _nano_segment(nc, 16).train()
    crit = SegmentLoss(model, dice_gain=0.5)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
    lb = letterbox_params(tuple(rgb.shape[2:]), tuple(rgb.shape[2:]))  # crops = the input
    tg = targets.numpy()

    def segm_map50() -> float:
        model.eval()
        with torch.no_grad():
            pred_t, protos_t = model(rgb, thermal)
        model.train()
        pred, protos = pred_t.numpy(), protos_t.numpy()
        dets, pred_rles, labels, truth_rles = [], [], [], []
        for b in range(len(pred)):
            idx = nms_indices(pred[b, : 4 + nc], 0.001, 0.6, 100)
            dets.append(detections_at(pred[b, : 4 + nc], idx))
            m = decode_masks(pred[b][4 + nc :, idx].T, protos[b], dets[-1].boxes, lb)
            pred_rles.append([rle_encode(x) for x in m])
            sel = tg[:, 0] == b
            labels.append(tg[sel, 1].astype(np.int64))
            truth_rles.append([rle_encode(x) for x in full.numpy()[sel]])
        return float(coco_segm_metrics(dets, pred_rles, labels, truth_rles,
                                       list(SYNTH_CLASSES))["mAP50"])

    before = segm_map50()
    for _ in range(80):
        loss, _ = crit(model(rgb, thermal), targets, masks)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = segm_map50()
    assert before < 20.0
    assert after >= 80.0, f"segm mAP50 {before:.1f} -> {after:.1f} after 80 steps"
