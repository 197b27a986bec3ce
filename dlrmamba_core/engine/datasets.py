"""Torch datasets for the engine: the data package's ``DetectionDataset`` when it exists.

:func:`detection_dataset` and :func:`collate` return the data package's
``torch_dataset.DetectionDataset`` / ``collate`` (the contract of docs/design/interfaces.md).
Where that module is not importable, :class:`PreparedDataset` gives the same batch layout
from the same shared pre-processing (``data.preprocess.prepare_inputs``) with light paired
augmentation, so training never depends on anything but the readers and ``prepare_inputs``.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset


def _have_data_torch() -> bool:
    return importlib.util.find_spec("dlrmamba_core.data.torch_dataset") is not None


class PreparedDataset(Dataset):
    """Network-ready samples of a ``PairDataset``.

    Item ``i`` is a dict: rgb (3, h, w) float32 [0, 1], thermal (1, h, w) float32 [0, 1],
    boxes (N, 4) float32 xyxy network-input pixels, labels (N,) int64, meta dict.

    Augmentation (``augment=True``; draws from the global numpy RNG, which the trainer seeds
    per sample): horizontal flip of both images and the boxes (p = 0.5); RGB contrast and
    brightness jitter (x0.7..1.3, +-0.1); thermal gain jitter (x0.8..1.2). Photometric jitter
    is per modality because the two cameras' exposures are independent.

    Args:
        pairs: a ``PairDataset`` of the data package's readers.
        input_hw: network input (h, w), pixels.
        augment: apply the training augmentation.
    """

    def __init__(self, pairs: Any, input_hw: tuple[int, int], augment: bool = False) -> None:
        self.pairs = pairs
        self.input_hw = tuple(input_hw)
        self.augment = augment
        self.class_names = list(pairs.class_names)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> dict[str, Any]:
        from dlrmamba_core.data.letterbox import letterbox_boxes
        from dlrmamba_core.data.preprocess import prepare_inputs

        s = self.pairs[i]
        p = prepare_inputs(s.rgb, s.thermal, s.homography, self.input_hw)
        boxes = letterbox_boxes(np.asarray(s.boxes, np.float32).reshape(-1, 4), p.letterbox)
        rgb, thermal = p.rgb, p.thermal
        if self.augment:
            rgb, thermal, boxes = light_augment(rgb, thermal, boxes)
        return {"rgb": torch.from_numpy(np.ascontiguousarray(rgb, np.float32)),
                "thermal": torch.from_numpy(np.ascontiguousarray(thermal, np.float32)),
                "boxes": torch.from_numpy(np.asarray(boxes, np.float32).reshape(-1, 4)),
                "labels": torch.from_numpy(np.asarray(s.labels, np.int64).reshape(-1)),
                "meta": {"image_id": s.image_id, "letterbox": p.letterbox}}


def light_augment(rgb: np.ndarray, thermal: np.ndarray, boxes: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The light paired augmentation of :class:`PreparedDataset` (global numpy RNG).

    Horizontal flip of both images and the boxes (p = 0.5); RGB contrast and brightness
    jitter (x0.7..1.3, +-0.1); thermal gain jitter (x0.8..1.2).

    Args:
        rgb: (3, h, w) float32 in [0, 1].
        thermal: (1, h, w) float32 in [0, 1].
        boxes: (N, 4) xyxy network-input pixels.

    Returns:
        The augmented (rgb, thermal, boxes).
    """
    w = rgb.shape[-1]
    if np.random.rand() < 0.5:
        rgb = rgb[:, :, ::-1]
        thermal = thermal[:, :, ::-1]
        if len(boxes):
            boxes = np.stack([w - boxes[:, 2], boxes[:, 1], w - boxes[:, 0], boxes[:, 3]], 1)
    rgb = np.clip(rgb * np.random.uniform(0.7, 1.3) + np.random.uniform(-0.1, 0.1), 0, 1)
    thermal = np.clip(thermal * np.random.uniform(0.8, 1.2), 0, 1)
    return rgb, thermal, boxes


def prepared_collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Batch :class:`PreparedDataset` items into the contract's layout.

    Returns:
        rgb (B, 3, h, w), thermal (B, 1, h, w), targets (M, 6) = [batch_idx, class, x1, y1,
        x2, y2] in network-input pixels, meta list.
    """
    rows = []
    for b, it in enumerate(items):
        n = len(it["labels"])
        rows.append(torch.cat([torch.full((n, 1), float(b)), it["labels"][:, None].float(),
                               it["boxes"]], 1))  # (n, 6)
    return {"rgb": torch.stack([it["rgb"] for it in items]),
            "thermal": torch.stack([it["thermal"] for it in items]),
            "targets": torch.cat(rows) if rows else torch.zeros(0, 6),
            "meta": [it["meta"] for it in items]}


def detection_dataset(pairs: Any, input_hw: tuple[int, int], augment: bool) -> Dataset:
    """The data package's DetectionDataset, or :class:`PreparedDataset` without it."""
    if _have_data_torch():
        from dlrmamba_core.data.torch_dataset import DetectionDataset

        return DetectionDataset(pairs, input_hw, augment=augment)
    return PreparedDataset(pairs, input_hw, augment=augment)


def collate(items: list[Any]) -> dict[str, Any]:
    """The collate function matching :func:`detection_dataset`."""
    if _have_data_torch():
        from dlrmamba_core.data.torch_dataset import collate as data_collate

        return data_collate(items)
    return prepared_collate(items)
