"""Generic paired-YOLO layout."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from dlrmamba_core.data.readers.base import (
    Entry,
    PairDataset,
    boxes_array,
    list_images,
    require_dir,
)
from dlrmamba_core.errors import DatasetError

__all__ = ["open_yolo", "parse_yolo_txt"]


def parse_yolo_txt(path: Path, width: int, height: int,
                   num_classes: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Parse a YOLO label file (``cls cx cy w h``, normalized) into xyxy pixels.

    Raises:
        DatasetError: naming the file and line of a malformed row or an unknown class.
    """
    rows, labels = [], []
    for ln, line in enumerate(path.read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        try:
            if len(parts) != 5:
                raise ValueError(f"expected 5 values, got {len(parts)}")
            cls = int(parts[0])
            cx, cy, w, h = (float(v) for v in parts[1:])
        except ValueError as exc:
            raise DatasetError(f"{path}, line {ln}: malformed YOLO row {line!r} ({exc}); "
                               "expected 'class cx cy w h' with normalized floats") from exc
        if cls < 0 or (num_classes is not None and cls >= num_classes):
            raise DatasetError(f"{path}, line {ln}: class {cls} outside 0..{num_classes}")
        if not (w > 0 and h > 0):
            raise DatasetError(f"{path}, line {ln}: box width/height must be > 0: {line!r}")
        rows.append([(cx - w / 2) * width, (cy - h / 2) * height,
                     (cx + w / 2) * width, (cy + h / 2) * height])
        labels.append(cls)
    return boxes_array(rows), np.asarray(labels, np.int64)


def _image_size(path: Path) -> tuple[int, int]:
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise DatasetError(f"cannot read image {path}")
    return int(img.shape[1]), int(img.shape[0])


def open_yolo(root: Path, split: str | None = None, class_names: list[str] | None = None,
              rgb_dir: str = "rgb", thermal_dir: str = "thermal",
              labels_dir: str = "labels") -> PairDataset:
    """Generic paired-YOLO layout.

    Layout::

        root/classes.txt                (optional: one class name per line)
        root/[split/]rgb/<stem>.jpg     RGB images
        root/[split/]thermal/<stem>.png thermal images (same stem; registered to RGB)
        root/[split/]labels/<stem>.txt  YOLO rows 'cls cx cy w h' normalized to the RGB image

    A missing label file means no objects. The thermal image is taken as registered
    (homography None). Image sizes are read from the files (lazily at open: one header read
    per image).
    """
    base = root / split if split else root
    require_dir(base, "yolo dataset")
    if class_names is None and (root / "classes.txt").is_file():
        class_names = [c.strip() for c in (root / "classes.txt").read_text().splitlines()
                       if c.strip()]
    rgbs = list_images(require_dir(base / rgb_dir, "yolo RGB folder"))
    ths = list_images(require_dir(base / thermal_dir, "yolo thermal folder"))
    unpaired = [str(p) for s, p in rgbs.items() if s not in ths]
    unpaired += [str(p) for s, p in ths.items() if s not in rgbs]
    entries = []
    max_cls = -1
    for stem, rp in rgbs.items():
        if stem not in ths:
            continue
        lp = base / labels_dir / f"{stem}.txt"
        boxes, labels = (boxes_array([]), np.zeros(0, np.int64))
        if lp.is_file():
            w, h = _image_size(rp)
            n = len(class_names) if class_names else None
            boxes, labels = parse_yolo_txt(lp, w, h, n)
        if len(labels):
            max_cls = max(max_cls, int(labels.max()))
        entries.append(Entry(stem, rp, ths[stem], boxes, labels))
    names = class_names or [f"class{i}" for i in range(max_cls + 1)]
    return PairDataset("yolo", root, entries, names, unpaired)
