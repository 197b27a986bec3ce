"""Torch dataset of network-ready RGB-thermal pairs, with the paired training augmentation.

``DetectionDataset(pairs, input_hw, augment)`` wraps any reader's ``PairDataset``: each item
goes through the shared pre-processing (``preprocess.prepare_inputs``: thermal normalization,
registration into the RGB frame, letterbox; the same code the edge runtime runs), then, when
``augment`` is on, through ``augment.mosaic`` and ``augment.augment_pair``. ``collate`` batches
items into the layout of docs/design/interfaces.md::

    rgb (B, 3, H, W) float32, thermal (B, 1, H, W) float32,
    targets (M, 6) float32 = [batch_idx, class, x1, y1, x2, y2] in network-input pixels,
    meta: list of dicts (image_id, letterbox; mosaic: the 4 dataset indices, if one)

With ``masks=True`` (instance segmentation; the dataset must have masks) every item and the
batch also carry the instance masks, one per target row::

    masks (M, H / s, W / s) uint8 {0, 1}, s = mask_stride (default 4):
        masks[j] is the object of targets[j] (same order, same batch index), at 1/s of the
        network input: cell (r, c) covers input pixels [s*c, s*c + s) x [s*r, s*r + s) and is
        1 when at least half of them belong to the object. The box of targets[j] divided by
        s is the crop for a loss "inside the box" in this grid.

Why this layout: a prototype-mask head (YOLACT-style) predicts, for each positive anchor
matched to target ``j``, ``sigmoid(coeffs . protos)`` and compares it with ``masks[j]`` inside
``targets[j, 2:6] / s``; per-object masks row-aligned with ``targets`` make that one index,
and 1/4 resolution keeps a batch small (16 images x 10 objects at 512x640: 3.3 MB) while
staying finer than stride-8 prototypes (upsample the protos x2, as YOLACT does, or
average-pool the masks x2 to compare at stride 8). Objects never share a mask row, so
overlapping instances (COCO) stay separate. Masks follow every geometric augmentation with
their images and boxes; an object dropped by a crop, or left without a mask pixel, is dropped
with its box.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from dlrmamba_core.data.augment import AugmentConfig, train_augment
from dlrmamba_core.errors import ConfigError, DatasetError


class DetectionDataset(Dataset):
    """Network-ready samples of a ``PairDataset``, augmented for training on request.

    Item ``i`` is a dict: rgb (3, h, w) float32 [0, 1], thermal (1, h, w) float32 [0, 1],
    boxes (N, 4) float32 xyxy network-input pixels, labels (N,) int64, meta dict; with
    ``masks=True`` also masks (N, h / mask_stride, w / mask_stride) uint8 {0, 1}, row ``i``
    for box ``i`` (layout and rationale in the module docstring).

    Randomness (augmentation, the three extra samples of a mosaic) comes from numpy's global
    RNG: seed it per sample (the trainer does) for reproducible batches. The random draws do
    not depend on ``masks``: the same seed gives the same images and boxes either way.

    Args:
        pairs: a ``PairDataset`` of ``data.readers``.
        input_hw: network input (h, w), pixels.
        augment: apply the training augmentation.
        config: augmentation settings (default :class:`AugmentConfig`).
        masks: carry instance masks (the dataset must have them: ``pairs.has_masks``).
        mask_stride: the masks' downsampling factor from the network input (1, 2, 4, 8 ...;
            must divide ``input_hw``).

    Raises:
        DatasetError: ``masks=True`` on a dataset without instance masks.
        ConfigError: a ``mask_stride`` that does not divide the input size.
    """

    def __init__(self, pairs: Any, input_hw: tuple[int, int], augment: bool = False,
                 config: AugmentConfig | None = None, masks: bool = False,
                 mask_stride: int = 4) -> None:
        self.pairs = pairs
        self.input_hw = (int(input_hw[0]), int(input_hw[1]))
        self.augment = augment
        self.config = config or AugmentConfig()
        self.config.validate()
        self.class_names = list(pairs.class_names)
        self.masks = bool(masks)
        self.mask_stride = int(mask_stride)
        if self.masks and not getattr(pairs, "has_masks", False):
            raise DatasetError(
                f"{getattr(pairs, 'name', 'the')} dataset at {getattr(pairs, 'root', '?')} has "
                "no instance masks (COCO segmentation or YOLO-seg rows): train a detector "
                "on it, or use a dataset with masks (`dlrmamba data gen` writes them)")
        if self.masks and (self.mask_stride < 1 or self.input_hw[0] % self.mask_stride
                           or self.input_hw[1] % self.mask_stride):
            raise ConfigError(f"mask_stride {self.mask_stride} does not divide the input size "
                              f"{self.input_hw}: use a power of two up to 32")

    def __len__(self) -> int:
        return len(self.pairs)

    def _prepare(self, i: int, masks: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                     np.ndarray, np.ndarray | None,
                                                     dict[str, Any]]:
        from dlrmamba_core.data.letterbox import letterbox_boxes, letterbox_masks
        from dlrmamba_core.data.preprocess import prepare_inputs

        load = getattr(self.pairs, "load", None)
        s = load(i, masks=masks) if load is not None else self.pairs[i]
        p = prepare_inputs(s.rgb, s.thermal, s.homography, self.input_hw)
        boxes = letterbox_boxes(np.asarray(s.boxes, np.float32).reshape(-1, 4), p.letterbox)
        labels = np.asarray(s.labels, np.int64).reshape(-1)
        m = None
        if masks:
            if s.masks is None:
                raise DatasetError(f"pair {s.image_id} has no instance masks in a dataset "
                                   "that has them; its reader is inconsistent")
            m = letterbox_masks(s.masks, p.letterbox)
        return (np.asarray(p.rgb, np.float32), np.asarray(p.thermal, np.float32),
                np.asarray(boxes, np.float32).reshape(-1, 4), labels, m,
                {"image_id": s.image_id, "letterbox": p.letterbox})

    def prepared(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                                        dict[str, Any]]:
        """Sample ``i`` pre-processed, not augmented: (rgb, thermal, boxes, labels, meta)."""
        rgb, thermal, boxes, labels, _, meta = self._prepare(i, masks=False)
        return rgb, thermal, boxes, labels, meta

    def prepared_with_masks(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                   np.ndarray, np.ndarray, dict[str, Any]]:
        """Sample ``i`` pre-processed with its instance masks at the full input size:
        (rgb, thermal, boxes, labels, masks (N, h, w) uint8 {0, 1}, meta)."""
        rgb, thermal, boxes, labels, m, meta = self._prepare(i, masks=True)
        assert m is not None  # _prepare raised otherwise
        return rgb, thermal, boxes, labels, m, meta

    def __getitem__(self, i: int) -> dict[str, Any]:
        masks = None
        if self.masks:
            rgb, thermal, boxes, labels, masks, meta = self.prepared_with_masks(i)
        else:
            rgb, thermal, boxes, labels, meta = self.prepared(i)
        if self.augment:
            if self.masks:
                (rgb, thermal, boxes, labels, masks), parts = train_augment(
                    i, len(self), (rgb, thermal, boxes, labels, masks),
                    lambda j: self.prepared_with_masks(j)[:5], self.config)
            else:
                (rgb, thermal, boxes, labels), parts = train_augment(
                    i, len(self), (rgb, thermal, boxes, labels),
                    lambda j: self.prepared(j)[:4], self.config)
            if parts is not None:
                meta = {**meta, "mosaic": parts}  # dataset indices of the 4 parts
        item = {"rgb": torch.from_numpy(np.ascontiguousarray(rgb, np.float32)),
                "thermal": torch.from_numpy(np.ascontiguousarray(thermal, np.float32)),
                "boxes": torch.from_numpy(np.asarray(boxes, np.float32).reshape(-1, 4)),
                "labels": torch.from_numpy(np.asarray(labels, np.int64).reshape(-1)),
                "meta": meta}
        if masks is not None:
            from dlrmamba_core.data.masks import downsample_masks

            item["masks"] = torch.from_numpy(np.ascontiguousarray(
                downsample_masks(masks, self.mask_stride)))
        return item


def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Batch :class:`DetectionDataset` items (layout in the module docstring).

    Raises:
        DatasetError: some items carry masks and others do not.
    """
    rows = []
    for b, it in enumerate(items):
        n = len(it["labels"])
        rows.append(torch.cat([torch.full((n, 1), float(b)), it["labels"][:, None].float(),
                               it["boxes"]], 1))
    batch = {"rgb": torch.stack([it["rgb"] for it in items]),
             "thermal": torch.stack([it["thermal"] for it in items]),
             "targets": torch.cat(rows) if rows else torch.zeros(0, 6),
             "meta": [it["meta"] for it in items]}
    with_masks = ["masks" in it for it in items]
    if any(with_masks):
        if not all(with_masks):
            raise DatasetError("collate: some items have instance masks and some do not; "
                               "build them all with DetectionDataset(..., masks=True)")
        batch["masks"] = torch.cat([it["masks"] for it in items])  # rows follow targets
    return batch
