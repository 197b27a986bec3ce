"""Instance segmentation loss: the detection loss plus a prototype-mask loss.

For every positive anchor of the task-aligned assigner, the predicted mask logits are
``coeffs . protos`` (K coefficients of the anchor, K prototypes of its image) and the target
is the instance mask of the ground truth the anchor was matched to. The loss is binary cross
entropy (optionally + dice) over the cells inside that ground-truth box only, averaged over
the box (so large and small objects weigh the same), then over the positives. Outside the box
the mask is cropped away at inference, so it is not supervised.
"""

from __future__ import annotations

from typing import Any, cast

import torch
from torch import Tensor, nn
import torch.nn.functional as F

from dlrmamba_core.errors import ConfigError, InputError
from dlrmamba_core.losses.detection import DetectionLoss, padded_rows


def box_cells(boxes: Tensor, hw: tuple[int, int]) -> Tensor:
    """Cells of an (h, w) grid whose centres lie inside each box.

    Args:
        boxes: (P, 4) xyxy in grid units (input pixels / stride).
        hw: (h, w) of the grid.

    Returns:
        (P, h, w) bool; cell (r, c) has its centre at (c + 0.5, r + 0.5).
    """
    h, w = hw
    xs = torch.arange(w, device=boxes.device, dtype=boxes.dtype) + 0.5  # (w,)
    ys = torch.arange(h, device=boxes.device, dtype=boxes.dtype) + 0.5  # (h,)
    in_x = (xs[None] >= boxes[:, 0:1]) & (xs[None] < boxes[:, 2:3])  # (P, w)
    in_y = (ys[None] >= boxes[:, 1:2]) & (ys[None] < boxes[:, 3:4])  # (P, h)
    return in_y[:, :, None] & in_x[:, None, :]


def instance_mask_loss(logits: Tensor, gt: Tensor, boxes: Tensor, dice_gain: float = 0.0
                       ) -> Tensor:
    """Per-instance mask loss inside the box.

    Args:
        logits: (P, h, w) predicted mask logits.
        gt: (P, h, w) target masks in {0, 1} (float).
        boxes: (P, 4) xyxy crop in grid units (a box with no cell centre inside gets loss 0:
            its area is clamped to one cell).
        dice_gain: weight of the dice term (1 - soft dice inside the box; 0: BCE only).

    Returns:
        (P,) BCE averaged over the box's cells (+ ``dice_gain`` * dice).
    """
    inside = box_cells(boxes, (logits.shape[-2], logits.shape[-1])).to(logits.dtype)
    area = inside.sum((1, 2)).clamp(min=1.0)  # (P,) cells in the box
    bce = F.binary_cross_entropy_with_logits(logits, gt, reduction="none")  # (P, h, w)
    loss = (bce * inside).sum((1, 2)) / area
    if dice_gain > 0:
        p = logits.sigmoid() * inside
        g = gt * inside
        # +1 on both sides: an empty target predicted empty scores 0, not 0/0.
        dice = 1.0 - (2.0 * (p * g).sum((1, 2)) + 1.0) / (p.sum((1, 2)) + g.sum((1, 2)) + 1.0)
        loss = loss + dice_gain * dice
    return loss


class SegmentLoss(nn.Module):
    """Loss of a segment model: ``DetectionLoss + mask_gain * mask loss``.

    Usage: ``loss, parts = SegmentLoss(model)(model(rgb, thermal), targets, masks)`` with the
    model in train mode, targets (M, 6) [batch_idx, class, x1, y1, x2, y2] in input pixels and
    masks (M, H/4, W/4) row-aligned with targets (``data.torch_dataset.collate``).

    Args:
        model: a segment detector (reads ``num_classes``, ``reg_max``, ``strides``,
            ``cfg.num_protos``).
        mask_gain: weight of the mask loss.
        dice_gain: weight of the dice term inside the mask loss (0: BCE only).
        **detection: keyword arguments of :class:`DetectionLoss` (gains, assigner settings).

    Raises:
        ConfigError: ``model`` is not a segment model.
    """

    def __init__(self, model: nn.Module, mask_gain: float = 7.5, dice_gain: float = 0.0,
                 **detection: float) -> None:
        super().__init__()
        cfg = cast(Any, model).cfg
        if cfg.task != "segment":
            raise ConfigError(f"SegmentLoss needs a segment model; {cfg.variant!r} is a "
                              f"{cfg.task} model (build it with task='segment')")
        self.detection = DetectionLoss(model, **detection)  # type: ignore[arg-type]
        self.num_protos = int(cfg.num_protos)
        self.mask_gain, self.dice_gain = float(mask_gain), float(dice_gain)

    def forward(self, preds: tuple[list[Tensor], Tensor], targets: Tensor, masks: Tensor
                ) -> tuple[Tensor, dict[str, Tensor]]:
        """Compute the loss.

        Args:
            preds: train-mode outputs: (per level (B, 4 * reg_max + nc + K, Hi, Wi), protos
                (B, K, h, w)).
            targets: (M, 6) float [batch_idx, cls, x1, y1, x2, y2] in input pixels.
            masks: (M, h, w) {0, 1} instance masks on the prototypes' grid, row j for
                ``targets[j]``.

        Returns:
            (scalar loss, {"box", "cls", "dfl", "mask"} detached parts).

        Raises:
            InputError: masks not one per target row, or on another grid than the protos.
        """
        levels, protos = preds
        k = self.num_protos
        det = [p[:, :-k] for p in levels]
        b, _, h, w = protos.shape
        if masks.dim() != 3 or masks.shape[0] != targets.shape[0]:
            raise InputError(f"masks {tuple(masks.shape)} must be (M, h, w) with one row per "
                             f"target ({targets.shape[0]}); build the batch with "
                             "DetectionDataset(..., masks=True) and collate")
        if tuple(masks.shape[1:]) != (h, w):
            raise InputError(f"masks are {tuple(masks.shape[1:])} cells but the prototypes "
                             f"{(h, w)}: build the dataset with mask_stride = the prototype "
                             "stride (models.segment.PROTO_STRIDE)")
        loss, parts, asg = self.detection.loss_and_assignment(det, targets)
        coef = torch.cat([p[:, -k:].flatten(2) for p in levels], 2).transpose(1, 2)  # (B,A,K)
        dev = protos.device
        targets = targets.to(dev).float()
        rows = padded_rows(targets, b)  # (B, G) target row of each padded slot
        # Prototype stride (input pixels per cell): the finest level is at strides[0].
        stride = float(self.detection.strides[0]) * levels[0].shape[-1] / w
        per_inst: list[Tensor] = []
        for i in range(b):
            pos = asg.fg[i].nonzero().squeeze(1)  # (P,) positive anchors of image i
            if pos.numel() == 0:
                continue
            j = rows[i, asg.gt_idx[i, pos]]  # (P,) target rows they were matched to
            logits = (coef[i, pos] @ protos[i].reshape(k, h * w)).view(-1, h, w)  # (P, h, w)
            gt = masks[j].to(dev).float()
            boxes = targets[j, 2:6] / stride  # (P, 4) xyxy input pixels -> grid units
            per_inst.append(instance_mask_loss(logits.float(), gt, boxes, self.dice_gain))
        if per_inst:
            loss_mask = torch.cat(per_inst).mean()
        else:
            loss_mask = protos.sum() * 0.0 + coef.sum() * 0.0  # keeps the graph connected (DDP)
        loss = loss + self.mask_gain * loss_mask
        return loss, {**parts, "mask": loss_mask.detach()}
