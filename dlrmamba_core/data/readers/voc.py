"""Shared Pascal-VOC XML parsing for the readers (LLVIP, M3FD, FLIR aligned)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
import xml.etree.ElementTree as ET

import numpy as np

from dlrmamba_core.data.readers.base import boxes_array, class_index
from dlrmamba_core.errors import DatasetError

__all__ = ["parse_voc_xml"]


def parse_voc_xml(path: Path, class_names: Sequence[str],
                  aliases: dict[str, str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Parse a VOC XML file into (boxes (N,4) float32 xyxy pixels, labels (N,) int64).

    Raises:
        DatasetError: naming the file (and the object index) when the XML is malformed, a
            bndbox value is missing/non-numeric, or the class is unknown.
    """
    try:
        tree = ET.parse(path)
    except ET.ParseError as exc:
        raise DatasetError(f"{path}: malformed VOC XML ({exc}); fix or remove the file") from exc
    except OSError as exc:
        raise DatasetError(f"cannot read annotation {path}: {exc}") from exc
    rows, labels = [], []
    for k, obj in enumerate(tree.getroot().iter("object")):
        where = f"{path}, object {k}"
        name = obj.findtext("name")
        if not name:
            raise DatasetError(f"{where}: <name> missing")
        bb = obj.find("bndbox")
        if bb is None:
            raise DatasetError(f"{where}: <bndbox> missing")
        try:
            tags = ("xmin", "ymin", "xmax", "ymax")
            x1, y1, x2, y2 = (float(bb.findtext(t) or "") for t in tags)
        except ValueError as exc:
            raise DatasetError(f"{where}: bndbox needs numeric xmin/ymin/xmax/ymax") from exc
        if not (x2 > x1 and y2 > y1):
            raise DatasetError(f"{where}: empty box ({x1}, {y1}, {x2}, {y2})")
        rows.append([x1, y1, x2, y2])
        labels.append(class_index(name, class_names, aliases or {}, where))
    return boxes_array(rows), np.asarray(labels, np.int64)
