"""Detection loss pieces: CIoU, target padding, task-aligned assignment, the full loss."""

from __future__ import annotations

import math

import pytest
import torch

from dlrmamba_core.errors import InputError
from dlrmamba_core.losses import DetectionLoss, TaskAlignedAssigner, ciou, targets_to_padded
from dlrmamba_core.models import build_model


def test_ciou_values() -> None:
    a = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    torch.testing.assert_close(ciou(a, a), torch.tensor([1.0]), atol=1e-6, rtol=0)
    # Same size, shifted by half a width: IoU 1/3, centre distance 5, enclosing 15x10.
    b = torch.tensor([[5.0, 0.0, 15.0, 10.0]])
    expect = 1 / 3 - 25 / (15**2 + 10**2)
    torch.testing.assert_close(ciou(a, b), torch.tensor([expect]), atol=1e-5, rtol=0)
    # Aspect-ratio term only: same centre, 10x10 vs 20x5 boxes.
    c = torch.tensor([[-5.0, 2.5, 15.0, 7.5]])
    iou = 50 / (100 + 100 - 50)
    v = 4 / math.pi**2 * (math.atan(4.0) - math.atan(1.0)) ** 2
    expect = iou - v * v / (v - iou + 1)
    torch.testing.assert_close(ciou(a, c), torch.tensor([expect]), atol=1e-5, rtol=0)


def test_targets_to_padded() -> None:
    t = torch.tensor([[1, 0, 1, 1, 2, 2], [0, 2, 3, 3, 4, 4], [1, 1, 5, 5, 6, 6.0]])
    boxes, cls, valid = targets_to_padded(t, 3)
    assert boxes.shape == (3, 2, 4)
    assert valid.tolist() == [[True, False], [True, True], [False, False]]
    assert cls[1].tolist() == [0, 1] and boxes[0, 0].tolist() == [3, 3, 4, 4]
    with pytest.raises(InputError, match="batch indices"):
        targets_to_padded(t, 1)
    with pytest.raises(InputError, match=r"\(M, 6\)"):
        targets_to_padded(t[:, :5], 3)


def test_assigner_picks_anchors_inside_the_box_with_best_alignment() -> None:
    # 1 image, 4 anchors on a line; a gt box covering anchors 1 and 2 only.
    anchors = torch.tensor([[4.0, 4.0], [12.0, 4.0], [20.0, 4.0], [28.0, 4.0]])
    gt = torch.tensor([[[8.0, 0.0, 24.0, 8.0]]])
    pred = torch.tensor([[[0, 0, 8, 8], [8, 0, 24, 8], [9, 1, 23, 7], [24, 0, 32, 8.0]]])
    scores = torch.full((1, 4, 2), 0.5)
    assigner = TaskAlignedAssigner(topk=1)
    t_boxes, t_scores, fg = assigner(scores, pred, anchors, gt, torch.tensor([[1]]),
                                     torch.tensor([[True]]))
    assert fg.tolist() == [[False, True, False, False]]  # top-1: the perfect prediction
    assert t_scores[0, 1, 1] == pytest.approx(1.0) and t_scores[0, 1, 0] == 0
    assert t_boxes[0, 1].tolist() == gt[0, 0].tolist()
    _, _, fg2 = TaskAlignedAssigner(topk=10)(scores, pred, anchors, gt, torch.tensor([[1]]),
                                             torch.tensor([[True]]))
    assert fg2.tolist() == [[False, True, True, False]]  # only anchors inside the box


def test_loss_decreases_under_optimization_and_handles_empty_targets() -> None:
    torch.manual_seed(0)
    model = build_model("nano", 2).train()
    crit = DetectionLoss(model)
    rgb, th = torch.rand(2, 3, 64, 64), torch.rand(2, 1, 64, 64)
    targets = torch.tensor([[0, 0, 8, 8, 40, 40.0], [1, 1, 20, 10, 60, 50.0]])
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = None
    for _ in range(15):
        loss, _parts = crit(model(rgb, th), targets)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.7 * first
    loss, parts = crit(model(rgb, th), torch.zeros(0, 6))
    assert torch.isfinite(loss) and parts["box"] == 0 and parts["cls"] > 0
    loss.backward()
    with pytest.raises(InputError, match="num_classes"):
        crit(model(rgb, th), torch.tensor([[0, 5, 1, 1, 9, 9.0]]))


def test_assigner_reaches_boxes_narrower_than_the_stride() -> None:
    # Anchors every 8 px; a 6 px wide box between two anchor centres.
    anchors = torch.tensor([[4.0, 4.0], [12.0, 4.0], [20.0, 4.0]])
    strides = torch.full((3, 1), 8.0)
    gt = torch.tensor([[[5.0, 0.0, 11.0, 8.0]]])
    pred = gt.expand(1, 3, 4).clone()
    scores = torch.full((1, 3, 1), 0.5)
    args = (scores, pred, anchors, gt, torch.tensor([[0]]), torch.tensor([[True]]))
    assert not TaskAlignedAssigner()(*args)[2].any()  # plain centre-in-box: unreachable
    _, _, fg = TaskAlignedAssigner()(*args, strides)
    assert fg.tolist() == [[True, True, False]]
