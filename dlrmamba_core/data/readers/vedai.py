"""VEDAI reader (co-registered colour / infrared aerial tiles, 512 or 1024 px).

Layout (``size`` = 512 or 1024)::

    root/Vehicules<size>/<id>_co.png           colour
    root/Vehicules<size>/<id>_ir.png           infrared (registered)
    root/Annotations<size>/annotation<size>.txt one object per line, 15 fields:
        image_id cx cy orientation x1 x2 x3 x4 y1 y2 y3 y4 class_id contained occluded
    root/Annotations<size>/fold01.txt, fold01test.txt, ...   one image id per line

``split`` names a fold file (e.g. ``fold01`` or ``fold01test``); None uses every pair. The box
of an object is the axis-aligned bounds of its 4 corners. Image ids are zero-padded to 8 digits.
Class ids: 1 car, 2 truck, 4 tractor, 5 camping car, 7 motorcycle, 8 bus, 9 van, 10 other,
11 pickup, 23 boat, 31 plane.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dlrmamba_core.data.readers.base import Entry, PairDataset, boxes_array, require_dir
from dlrmamba_core.errors import DatasetError

__all__ = ["VEDAI_CLASSES", "VEDAI_CLASS_IDS", "open_vedai"]

VEDAI_CLASS_IDS = {1: "car", 2: "truck", 4: "tractor", 5: "camping car", 7: "motorcycle",
                   8: "bus", 9: "van", 10: "other", 11: "pickup", 23: "boat", 31: "plane"}
VEDAI_CLASSES = list(VEDAI_CLASS_IDS.values())


def _parse(path: Path) -> dict[str, tuple[list[list[float]], list[int]]]:
    out: dict[str, tuple[list[list[float]], list[int]]] = {}
    for ln, line in enumerate(path.read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        try:
            if len(parts) != 15:
                raise ValueError(f"expected 15 fields, got {len(parts)}")
            iid = f"{int(parts[0]):08d}"
            xs = [float(v) for v in parts[4:8]]
            ys = [float(v) for v in parts[8:12]]
            cid = int(parts[12])
        except ValueError as exc:
            raise DatasetError(f"{path}, line {ln}: malformed VEDAI row ({exc}); expected "
                               "'id cx cy orient x1..x4 y1..y4 class contained occluded'"
                               ) from exc
        if cid not in VEDAI_CLASS_IDS:
            raise DatasetError(f"{path}, line {ln}: unknown VEDAI class id {cid}; known ids "
                               f"{sorted(VEDAI_CLASS_IDS)}")
        rows, labels = out.setdefault(iid, ([], []))
        rows.append([min(xs), min(ys), max(xs), max(ys)])
        labels.append(VEDAI_CLASSES.index(VEDAI_CLASS_IDS[cid]))
    return out


def open_vedai(root: Path, split: str | None = None, size: int = 512) -> PairDataset:
    """Open VEDAI at ``size`` 512 or 1024; ``split`` names a fold file."""
    if size not in (512, 1024):
        raise DatasetError(f"VEDAI size must be 512 or 1024, got {size}")
    img = require_dir(root / f"Vehicules{size}", "VEDAI image folder")
    ann_dir = require_dir(root / f"Annotations{size}", "VEDAI annotation folder")
    ann = ann_dir / f"annotation{size}.txt"
    if not ann.is_file():
        raise DatasetError(f"VEDAI annotation file {ann} not found")
    co = {p.name[:-7]: p for p in sorted(img.glob("*_co.png"))}
    ir = {p.name[:-7]: p for p in sorted(img.glob("*_ir.png"))}
    unpaired = [str(p) for s, p in co.items() if s not in ir]
    unpaired += [str(p) for s, p in ir.items() if s not in co]
    ids = sorted(s for s in co if s in ir)
    if split:
        fp = ann_dir / f"{split}.txt"
        if not fp.is_file():
            raise DatasetError(f"VEDAI fold file {fp} not found (e.g. fold01, fold01test)")
        ids = []
        for ln, line in enumerate(fp.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                sid = f"{int(line.strip()):08d}"
            except ValueError as exc:
                raise DatasetError(f"{fp}, line {ln}: not an image id: {line!r}") from exc
            if sid not in co or sid not in ir:
                raise DatasetError(f"{fp}, line {ln}: image {sid} has no _co + _ir pair")
            ids.append(sid)
    objs = _parse(ann)
    entries = []
    for sid in ids:
        rows, labels = objs.get(sid, ([], []))
        entries.append(Entry(sid, co[sid], ir[sid], boxes_array(rows),
                             np.asarray(labels, np.int64)))
    return PairDataset("vedai", root, entries, list(VEDAI_CLASSES), unpaired)
