"""LLVIP reader (registered visible/infrared pairs, VOC XML, class ``person``).

Layout::

    root/visible/{train,test}/<id>.jpg
    root/infrared/{train,test}/<id>.jpg
    root/Annotations/<id>.xml          VOC XML, class 'person'

Pairs are registered (homography None). A missing XML means no objects.
"""

from __future__ import annotations

from pathlib import Path

from dlrmamba_core.data.readers.base import (
    Entry,
    PairDataset,
    list_images,
    parse_if_present,
    require_dir,
)
from dlrmamba_core.data.readers.voc import parse_voc_xml

__all__ = ["LLVIP_CLASSES", "open_llvip"]

LLVIP_CLASSES = ["person"]


def open_llvip(root: Path, split: str | None = None) -> PairDataset:
    """Open LLVIP; ``split`` is train or test (default train)."""
    split = split or "train"
    vis = list_images(require_dir(root / "visible" / split, "LLVIP visible folder"))
    ir = list_images(require_dir(root / "infrared" / split, "LLVIP infrared folder"))
    ann = root / "Annotations"
    unpaired = [str(p) for s, p in vis.items() if s not in ir]
    unpaired += [str(p) for s, p in ir.items() if s not in vis]
    entries = []
    for stem, rp in vis.items():
        if stem not in ir:
            continue
        xp = ann / f"{stem}.xml"
        boxes, labels = parse_if_present(xp, lambda q: parse_voc_xml(q, LLVIP_CLASSES))
        entries.append(Entry(stem, rp, ir[stem], boxes, labels))
    return PairDataset("llvip", root, entries, list(LLVIP_CLASSES), unpaired)
