"""KAIST multispectral pedestrian reader (paired visible/lwir frames, bbGt txt).

Layout::

    root/images/setXX/V00Y/visible/I0ZZZZ.jpg
    root/images/setXX/V00Y/lwir/I0ZZZZ.jpg
    root/annotations/setXX/V00Y/I0ZZZZ.txt    '% bbGt version=3' then 'class x y w h ...'
    root/imageSets/<split>.txt                optional: lines 'set00/V000/I01216'

Classes: person, people, cyclist. Ignored (documented, not errors): ``person?`` rows
(ambiguous "ignore" regions) and the occlusion / extra columns after ``x y w h``. A missing
annotation file means no objects. Pairs are registered (homography None). Without a split, every
frame under ``images/`` is used.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dlrmamba_core.data.readers.base import (
    Entry,
    PairDataset,
    boxes_array,
    class_index,
    list_images,
    parse_if_present,
    require_dir,
)
from dlrmamba_core.errors import DatasetError

__all__ = ["KAIST_CLASSES", "open_kaist", "parse_bbgt"]

KAIST_CLASSES = ["person", "people", "cyclist"]
IGNORED = ("person?",)


def parse_bbgt(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Parse a KAIST bbGt file (xywh pixels -> xyxy); DatasetError naming file and line."""
    rows, labels = [], []
    for ln, line in enumerate(path.read_text().splitlines(), 1):
        parts = line.split()
        if not parts or parts[0].startswith("%"):
            continue
        where = f"{path}, line {ln}"
        if parts[0] in IGNORED:
            continue
        try:
            x, y, w, h = (float(v) for v in parts[1:5])
            if len(parts) < 5:
                raise ValueError("fewer than 5 fields")
        except ValueError as exc:
            raise DatasetError(f"{where}: malformed bbGt row {line!r} ({exc}); expected "
                               "'class x y w h ...'") from exc
        if not (w > 0 and h > 0):
            raise DatasetError(f"{where}: box width/height must be > 0: {line!r}")
        rows.append([x, y, x + w, y + h])
        labels.append(class_index(parts[0], KAIST_CLASSES, {}, where))
    return boxes_array(rows), np.asarray(labels, np.int64)


def open_kaist(root: Path, split: str | None = None) -> PairDataset:
    """Open KAIST; ``split`` names ``root/imageSets/<split>.txt`` (None: all frames)."""
    img_root = require_dir(root / "images", "KAIST images folder")
    pairs: dict[str, tuple[Path, Path]] = {}
    unpaired: list[str] = []
    for vdir in sorted(p for p in img_root.glob("*/*") if p.is_dir()):
        vis = list_images(require_dir(vdir / "visible", "KAIST visible folder"))
        lw = list_images(require_dir(vdir / "lwir", "KAIST lwir folder"))
        unpaired += [str(p) for s, p in vis.items() if s not in lw]
        unpaired += [str(p) for s, p in lw.items() if s not in vis]
        rel = vdir.relative_to(img_root).as_posix()
        for s in vis:
            if s in lw:
                pairs[f"{rel}/{s}"] = (vis[s], lw[s])
    ids = sorted(pairs)
    if split:
        sp = root / "imageSets" / f"{split}.txt"
        if not sp.is_file():
            raise DatasetError(f"KAIST split file {sp} not found; pass a split naming a file "
                               "in imageSets/ or no split")
        ids = []
        for ln, line in enumerate(sp.read_text().splitlines(), 1):
            sid = line.strip()
            if not sid:
                continue
            if sid not in pairs:
                raise DatasetError(f"{sp}, line {ln}: {sid!r} has no visible + lwir pair")
            ids.append(sid)
    entries = []
    for sid in ids:
        ap = root / "annotations" / f"{sid}.txt"
        boxes, labels = parse_if_present(ap, parse_bbgt)
        entries.append(Entry(sid, *pairs[sid], boxes, labels))
    return PairDataset("kaist", root, entries, list(KAIST_CLASSES), unpaired)
