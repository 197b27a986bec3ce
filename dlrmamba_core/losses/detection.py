"""Detection loss: task-aligned assignment, BCE classification, CIoU + distribution focal loss.

Written from the TOOD (task-aligned assignment) and GFL (distribution focal loss) papers'
descriptions and the anchor-free YOLOv8 head layout.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor, nn
import torch.nn.functional as F

from dlrmamba_core.errors import InputError
from dlrmamba_core.models.detector import decode_boxes, make_anchors

_EPS = 1e-9


def box_iou_pairwise(a: Tensor, b: Tensor) -> Tensor:
    """IoU of broadcastable xyxy boxes a (..., 4), b (..., 4) -> (...)."""
    lt = torch.maximum(a[..., :2], b[..., :2])
    rb = torch.minimum(a[..., 2:], b[..., 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area_a = (a[..., 2:] - a[..., :2]).clamp(min=0).prod(-1)
    area_b = (b[..., 2:] - b[..., :2]).clamp(min=0).prod(-1)
    return inter / (area_a + area_b - inter + _EPS)


def ciou(a: Tensor, b: Tensor) -> Tensor:
    """Complete IoU of matching xyxy boxes a (..., 4), b (..., 4) -> (...) in [-1.5, 1].

    CIoU = IoU - (centre distance^2 / enclosing diagonal^2) - alpha * v, where v measures the
    aspect-ratio mismatch and alpha = v / (1 - IoU + v) weighs it.
    """
    iou = box_iou_pairwise(a, b)
    wa, ha = a[..., 2] - a[..., 0], (a[..., 3] - a[..., 1]).clamp(min=_EPS)
    wb, hb = b[..., 2] - b[..., 0], (b[..., 3] - b[..., 1]).clamp(min=_EPS)
    enc_wh = torch.maximum(a[..., 2:], b[..., 2:]) - torch.minimum(a[..., :2], b[..., :2])
    c2 = (enc_wh**2).sum(-1) + _EPS
    rho2 = (((a[..., :2] + a[..., 2:]) - (b[..., :2] + b[..., 2:])) ** 2).sum(-1) / 4.0
    v = (4 / math.pi**2) * (torch.atan(wb / hb) - torch.atan(wa / ha)) ** 2
    with torch.no_grad():
        alpha = v / (v - iou + 1 + _EPS)
    return iou - rho2 / c2 - alpha * v


def targets_to_padded(targets: Tensor, batch: int) -> tuple[Tensor, Tensor, Tensor]:
    """(M, 6) [batch_idx, cls, x1, y1, x2, y2] -> boxes (B, G, 4), classes (B, G), valid (B, G).

    G is the largest number of boxes in one image (at least 1).
    """
    if targets.dim() != 2 or targets.shape[1] != 6:
        raise InputError(
            f"targets must be (M, 6) [batch_idx, cls, x1, y1, x2, y2]; got {tuple(targets.shape)}"
        )
    bidx = targets[:, 0].long()
    if targets.numel() and (bidx.min() < 0 or bidx.max() >= batch):
        raise InputError(f"target batch indices must be in [0, {batch}); got {bidx.unique()}")
    counts = torch.bincount(bidx, minlength=batch) if targets.numel() else torch.zeros(
        batch, dtype=torch.long, device=targets.device)
    g = max(1, int(counts.max().item()) if batch else 1)
    boxes = targets.new_zeros(batch, g, 4)
    classes = torch.zeros(batch, g, dtype=torch.long, device=targets.device)
    valid = torch.zeros(batch, g, dtype=torch.bool, device=targets.device)
    if targets.numel():
        order = torch.argsort(bidx, stable=True)
        bs = bidx[order]
        starts = torch.cumsum(counts, 0) - counts  # first row of each image in sorted order
        slot = torch.arange(len(bs), device=targets.device) - starts[bs]
        boxes[bs, slot] = targets[order, 2:6]
        classes[bs, slot] = targets[order, 1].long()
        valid[bs, slot] = True
    return boxes, classes, valid


def padded_rows(targets: Tensor, batch: int) -> Tensor:
    """Row of ``targets`` behind each slot of :func:`targets_to_padded`: (B, G) long, -1 for
    empty slots (e.g. to index per-target instance masks by an assigned slot)."""
    bidx = targets[:, 0].long()
    counts = torch.bincount(bidx, minlength=batch) if targets.numel() else torch.zeros(
        batch, dtype=torch.long, device=targets.device)
    g = max(1, int(counts.max().item()) if batch else 1)
    rows = torch.full((batch, g), -1, dtype=torch.long, device=targets.device)
    if targets.numel():
        order = torch.argsort(bidx, stable=True)  # the same order as targets_to_padded
        bs = bidx[order]
        slot = torch.arange(len(bs), device=targets.device) - (torch.cumsum(counts, 0)
                                                                - counts)[bs]
        rows[bs, slot] = order
    return rows


class Assignment(NamedTuple):
    """What :class:`TaskAlignedAssigner` decided, per anchor.

    Attributes:
        target_boxes: (B, A, 4) xyxy pixels of the matched ground truth.
        target_scores: (B, A, nc) soft class targets (IoU-normalized alignment).
        fg: (B, A) bool, the positive anchors.
        gt_idx: (B, A) long, slot of the matched ground truth in the padded (B, G) layout of
            :func:`targets_to_padded` (meaningful where ``fg``; :func:`padded_rows` maps it
            to a row of the targets).
    """

    target_boxes: Tensor
    target_scores: Tensor
    fg: Tensor
    gt_idx: Tensor


class TaskAlignedAssigner(nn.Module):
    """Assign each ground truth its top-k anchors by ``score^alpha * IoU^beta`` (TOOD).

    Candidates are anchors whose centre lies inside the box, the box being widened to at least
    one anchor stride around its centre (a box narrower than the stride may contain no anchor
    centre at all and would never be learned); an anchor claimed by several boxes goes to the
    one it overlaps most.

    Args:
        topk: anchors per ground truth.
        alpha: exponent of the predicted class score.
        beta: exponent of the IoU.
    """

    def __init__(self, topk: int = 10, alpha: float = 1.0, beta: float = 6.0):
        super().__init__()
        self.topk, self.alpha, self.beta = topk, alpha, beta

    def forward(
        self,
        scores: Tensor,
        pred_boxes: Tensor,
        anchors: Tensor,
        gt_boxes: Tensor,
        gt_classes: Tensor,
        gt_valid: Tensor,
        strides: Tensor | None = None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """(target_boxes, target_scores, fg) of :meth:`assign` (same arguments)."""
        a = self.assign(scores, pred_boxes, anchors, gt_boxes, gt_classes, gt_valid, strides)
        return a.target_boxes, a.target_scores, a.fg

    @torch.no_grad()
    def assign(
        self,
        scores: Tensor,
        pred_boxes: Tensor,
        anchors: Tensor,
        gt_boxes: Tensor,
        gt_classes: Tensor,
        gt_valid: Tensor,
        strides: Tensor | None = None,
    ) -> Assignment:
        """Assign.

        Args:
            scores: (B, A, nc) predicted probabilities.
            pred_boxes: (B, A, 4) predicted xyxy boxes (pixels).
            anchors: (A, 2) anchor centres (pixels).
            gt_boxes: (B, G, 4), gt_classes (B, G), gt_valid (B, G).
            strides: (A, 1) stride of each anchor (pixels); None = plain centre-in-box test.

        Returns:
            The :class:`Assignment`: target boxes (B, A, 4), soft target scores (B, A, nc),
            foreground mask (B, A), matched ground-truth slot (B, A).
        """
        _, a, nc = scores.shape
        g = gt_boxes.shape[1]
        centre = (gt_boxes[..., :2] + gt_boxes[..., 2:]) / 2  # (B, G, 2)
        half = (gt_boxes[..., 2:] - gt_boxes[..., :2]) / 2  # (B, G, 2)
        offset = (anchors[None, None] - centre[:, :, None]).abs()  # (B, G, A, 2)
        if strides is None:
            inside = (offset < half[:, :, None]).all(-1)  # (B, G, A)
        else:
            reach = torch.maximum(half[:, :, None], strides[None, None] / 2)  # (B, G, A, 2)
            inside = (offset <= reach).all(-1)
        inside &= gt_valid[:, :, None]
        iou = box_iou_pairwise(gt_boxes[:, :, None], pred_boxes[:, None]).clamp(min=0)  # (B,G,A)
        cls_idx = gt_classes.clamp(0, nc - 1)[:, :, None].expand(-1, -1, a)  # (B, G, A)
        s = scores.transpose(1, 2).gather(1, cls_idx)  # (B, G, A) score of the gt's class
        align = s.pow(self.alpha) * iou.pow(self.beta) * inside
        k = min(self.topk, a)
        top = align.topk(k, dim=-1).indices  # (B, G, k)
        in_top = torch.zeros_like(inside).scatter_(-1, top, True)
        pos = in_top & inside & (align > 0)  # (B, G, A)
        # Anchors claimed by several gts keep only the gt with the highest IoU.
        multi = pos.sum(1, keepdim=True) > 1  # (B, 1, A)
        best = F.one_hot(iou.argmax(1), g).transpose(1, 2).bool()  # (B, G, A)
        pos = torch.where(multi, best & pos, pos)
        fg = pos.any(1)  # (B, A)
        gt_idx = pos.float().argmax(1)  # (B, A)
        target_boxes = gt_boxes.gather(1, gt_idx[..., None].expand(-1, -1, 4))  # (B, A, 4)
        target_cls = gt_classes.gather(1, gt_idx)  # (B, A)
        # Soft targets: alignment normalized per gt so its best anchor gets that gt's best IoU.
        align = align * pos
        norm = align / (align.amax(-1, keepdim=True) + _EPS) * (iou * pos).amax(-1, keepdim=True)
        t_score = norm.amax(1)  # (B, A)
        target_scores = F.one_hot(target_cls.clamp(0, nc - 1), nc).float() * (
            t_score * fg
        )[..., None]
        return Assignment(target_boxes, target_scores, fg, gt_idx)


class DetectionLoss(nn.Module):
    """Loss of the anchor-free head: ``box * CIoU + cls * BCE + dfl * DFL``.

    Usage: ``loss, parts = DetectionLoss(model)(model(rgb, thermal), targets)`` with the model
    in train mode and targets (M, 6) [batch_idx, class, x1, y1, x2, y2] in input pixels.
    The loss is normalized by the sum of the soft target scores (scale independent of the batch
    size and the number of objects).

    Args:
        model: the detector (reads ``num_classes``, ``reg_max``, ``strides``).
        box_gain, cls_gain, dfl_gain: term weights (the YOLOv8 defaults 7.5, 0.5, 1.5).
        topk, alpha, beta: assigner settings.
    """

    def __init__(
        self,
        model: nn.Module,
        box_gain: float = 7.5,
        cls_gain: float = 0.5,
        dfl_gain: float = 1.5,
        topk: int = 10,
        alpha: float = 1.0,
        beta: float = 6.0,
    ):
        super().__init__()
        self.nc = int(model.num_classes)  # type: ignore[arg-type]
        self.reg_max = int(model.reg_max)  # type: ignore[arg-type]
        self.strides = tuple(model.strides)  # type: ignore[arg-type]
        self.box_gain, self.cls_gain, self.dfl_gain = box_gain, cls_gain, dfl_gain
        self.assigner = TaskAlignedAssigner(topk, alpha, beta)

    def forward(self, preds: list[Tensor], targets: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """Compute the loss.

        Args:
            preds: train-mode outputs, per level (B, 4 * reg_max + nc, Hi, Wi).
            targets: (M, 6) float [batch_idx, cls, x1, y1, x2, y2] in input pixels.

        Returns:
            (scalar loss, {"box", "cls", "dfl"} detached parts).
        """
        loss, parts, _ = self.loss_and_assignment(preds, targets)
        return loss, parts

    def loss_and_assignment(self, preds: list[Tensor], targets: Tensor
                            ) -> tuple[Tensor, dict[str, Tensor], Assignment]:
        """:meth:`forward` and the assignment it used (for losses of further outputs, e.g.
        instance masks of the positive anchors)."""
        if len(preds) != len(self.strides):
            raise InputError(f"expected {len(self.strides)} levels, got {len(preds)}")
        b = preds[0].shape[0]
        r, nc = self.reg_max, self.nc
        dev = preds[0].device
        flat = torch.cat([p.flatten(2) for p in preds], 2).transpose(1, 2).float()  # (B, A, C)
        if flat.shape[-1] != 4 * r + nc:
            raise InputError(f"prediction channels {flat.shape[-1]} != 4*{r}+{nc}")
        pred_dist, pred_cls = flat.split([4 * r, nc], -1)
        anchors, stride = [], []
        for p, s in zip(preds, self.strides, strict=True):
            h, w = p.shape[-2:]
            anchors.append(make_anchors(h, w, dev, torch.float32).T * s)  # (HW, 2) pixels
            stride.append(torch.full((h * w, 1), float(s), device=dev))
        anchor_px = torch.cat(anchors)  # (A, 2)
        stride_t = torch.cat(stride)  # (A, 1)
        logits = pred_dist.reshape(b, -1, 4, r)  # (B, A, 4, R)
        # The detector's own decode (models.detector.decode_boxes), in float32.
        pred_boxes = decode_boxes([p.float() for p in preds], self.strides, r
                                  ).transpose(1, 2)  # (B, 4, A) -> (B, A, 4) pixels
        gt_boxes, gt_cls, gt_valid = targets_to_padded(targets.to(dev).float(), b)
        if gt_cls.numel() and gt_valid.any() and int(gt_cls[gt_valid].max()) >= nc:
            raise InputError(f"target class {int(gt_cls[gt_valid].max())} >= num_classes {nc}")
        assignment = self.assigner.assign(
            pred_cls.detach().sigmoid(), pred_boxes.detach(), anchor_px, gt_boxes, gt_cls,
            gt_valid, stride_t,
        )
        t_boxes, t_scores, fg = assignment.target_boxes, assignment.target_scores, assignment.fg
        norm = t_scores.sum().clamp(min=1.0)
        loss_cls = F.binary_cross_entropy_with_logits(pred_cls, t_scores, reduction="sum") / norm
        if fg.any():
            weight = t_scores.sum(-1)[fg]  # (P,)
            loss_box = ((1.0 - ciou(pred_boxes[fg], t_boxes[fg])) * weight).sum() / norm
            # DFL: the target distance t (in strides) splits between its two neighbouring bins.
            anc = (anchor_px / stride_t)[None].expand(b, -1, -1)[fg]  # (P, 2) grid units
            tb = t_boxes[fg] / stride_t[None].expand(b, -1, -1)[fg]  # (P, 4) grid units
            t = torch.cat([anc - tb[:, :2], tb[:, 2:] - anc], -1).clamp(0, r - 1 - 0.01)
            left = t.floor().long()
            w_right = t - left
            lg = logits[fg]  # (P, 4, R)
            ce_l = F.cross_entropy(lg.reshape(-1, r), left.reshape(-1), reduction="none")
            ce_r = F.cross_entropy(lg.reshape(-1, r), (left + 1).reshape(-1), reduction="none")
            dfl = (ce_l * (1 - w_right).reshape(-1) + ce_r * w_right.reshape(-1)).view(-1, 4)
            loss_dfl = (dfl.mean(-1) * weight).sum() / norm
        else:
            loss_box = pred_boxes.sum() * 0.0  # keeps the graph connected for DDP
            loss_dfl = pred_dist.sum() * 0.0
        loss = self.box_gain * loss_box + self.cls_gain * loss_cls + self.dfl_gain * loss_dfl
        parts = {"box": loss_box.detach(), "cls": loss_cls.detach(), "dfl": loss_dfl.detach()}
        return loss, parts, assignment
