"""Torch dataset of network-ready RGB-thermal pairs, with the paired training augmentation.

``DetectionDataset(pairs, input_hw, augment)`` wraps any reader's ``PairDataset``: each item
goes through the shared pre-processing (``preprocess.prepare_inputs``: thermal normalization,
registration into the RGB frame, letterbox; the same code the edge runtime runs), then, when
``augment`` is on, through ``augment.mosaic`` and ``augment.augment_pair``. ``collate`` batches
items into the layout of docs/design/interfaces.md::

    rgb (B, 3, H, W) float32, thermal (B, 1, H, W) float32,
    targets (M, 6) float32 = [batch_idx, class, x1, y1, x2, y2] in network-input pixels,
    meta: list of dicts (image_id, letterbox; mosaic: the 4 dataset indices, if one)
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from dlrmamba_core.data.augment import AugmentConfig, train_augment


class DetectionDataset(Dataset):
    """Network-ready samples of a ``PairDataset``, augmented for training on request.

    Item ``i`` is a dict: rgb (3, h, w) float32 [0, 1], thermal (1, h, w) float32 [0, 1],
    boxes (N, 4) float32 xyxy network-input pixels, labels (N,) int64, meta dict.

    Randomness (augmentation, the three extra samples of a mosaic) comes from numpy's global
    RNG: seed it per sample (the trainer does) for reproducible batches.

    Args:
        pairs: a ``PairDataset`` of ``data.readers``.
        input_hw: network input (h, w), pixels.
        augment: apply the training augmentation.
        config: augmentation settings (default :class:`AugmentConfig`).
    """

    def __init__(self, pairs: Any, input_hw: tuple[int, int], augment: bool = False,
                 config: AugmentConfig | None = None) -> None:
        self.pairs = pairs
        self.input_hw = (int(input_hw[0]), int(input_hw[1]))
        self.augment = augment
        self.config = config or AugmentConfig()
        self.config.validate()
        self.class_names = list(pairs.class_names)

    def __len__(self) -> int:
        return len(self.pairs)

    def prepared(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                                        dict[str, Any]]:
        """Sample ``i`` pre-processed, not augmented: (rgb, thermal, boxes, labels, meta)."""
        from dlrmamba_core.data.letterbox import letterbox_boxes
        from dlrmamba_core.data.preprocess import prepare_inputs

        s = self.pairs[i]
        p = prepare_inputs(s.rgb, s.thermal, s.homography, self.input_hw)
        boxes = letterbox_boxes(np.asarray(s.boxes, np.float32).reshape(-1, 4), p.letterbox)
        labels = np.asarray(s.labels, np.int64).reshape(-1)
        return (np.asarray(p.rgb, np.float32), np.asarray(p.thermal, np.float32),
                np.asarray(boxes, np.float32).reshape(-1, 4), labels,
                {"image_id": s.image_id, "letterbox": p.letterbox})

    def __getitem__(self, i: int) -> dict[str, Any]:
        rgb, thermal, boxes, labels, meta = self.prepared(i)
        if self.augment:
            (rgb, thermal, boxes, labels), parts = train_augment(
                i, len(self), (rgb, thermal, boxes, labels), lambda j: self.prepared(j)[:4],
                self.config)
            if parts is not None:
                meta = {**meta, "mosaic": parts}  # dataset indices of the 4 parts
        return {"rgb": torch.from_numpy(np.ascontiguousarray(rgb, np.float32)),
                "thermal": torch.from_numpy(np.ascontiguousarray(thermal, np.float32)),
                "boxes": torch.from_numpy(np.asarray(boxes, np.float32).reshape(-1, 4)),
                "labels": torch.from_numpy(np.asarray(labels, np.int64).reshape(-1)),
                "meta": meta}


def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Batch :class:`DetectionDataset` items (layout in the module docstring)."""
    rows = []
    for b, it in enumerate(items):
        n = len(it["labels"])
        rows.append(torch.cat([torch.full((n, 1), float(b)), it["labels"][:, None].float(),
                               it["boxes"]], 1))
    return {"rgb": torch.stack([it["rgb"] for it in items]),
            "thermal": torch.stack([it["thermal"] for it in items]),
            "targets": torch.cat(rows) if rows else torch.zeros(0, 6),
            "meta": [it["meta"] for it in items]}
