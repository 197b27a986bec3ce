"""Torch datasets for the engine: the data package's ``DetectionDataset`` and ``collate``.

One place the trainer and the evaluator get their datasets from (the contract of
docs/design/interfaces.md): ``data.torch_dataset`` (shared pre-processing + ``data.augment``).
"""

from __future__ import annotations

from typing import Any

from torch.utils.data import Dataset


def detection_dataset(pairs: Any, input_hw: tuple[int, int], augment: bool) -> Dataset:
    """``data.torch_dataset.DetectionDataset`` of a reader's ``PairDataset``."""
    from dlrmamba_core.data.torch_dataset import DetectionDataset

    return DetectionDataset(pairs, input_hw, augment=augment)


def collate(items: list[Any]) -> dict[str, Any]:
    """The collate function matching :func:`detection_dataset` (and ``engine.cache``)."""
    from dlrmamba_core.data.torch_dataset import collate as data_collate

    return data_collate(items)
