"""M3FD reader (registered visible/infrared PNG pairs, VOC XML).

Layout::

    root/Vis/<id>.png
    root/Ir/<id>.png
    root/Annotations/<id>.xml       VOC XML
    root/splits/<split>.txt         optional: one image id per line

Classes: People, Car, Bus, Motorcycle, Lamp, Truck. M3FD has no official split: with
``root/splits/<split>.txt`` that list is used (a listed id without a pair raises DatasetError
naming file and line); otherwise ``split`` None or ``all`` gives every pair, and ``train`` /
``test`` a deterministic split of the sorted ids (every 5th id, index % 5 == 4, is test).
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
from dlrmamba_core.errors import DatasetError

__all__ = ["M3FD_CLASSES", "open_m3fd"]

M3FD_CLASSES = ["People", "Car", "Bus", "Motorcycle", "Lamp", "Truck"]


def open_m3fd(root: Path, split: str | None = None) -> PairDataset:
    """Open M3FD (see the module docstring for the split rule)."""
    vis = list_images(require_dir(root / "Vis", "M3FD Vis folder"))
    ir = list_images(require_dir(root / "Ir", "M3FD Ir folder"))
    unpaired = [str(p) for s, p in vis.items() if s not in ir]
    unpaired += [str(p) for s, p in ir.items() if s not in vis]
    stems = sorted(s for s in vis if s in ir)
    split_file = root / "splits" / f"{split}.txt" if split else None
    if split_file is not None and split_file.is_file():
        chosen = []
        for ln, line in enumerate(split_file.read_text().splitlines(), 1):
            sid = line.strip()
            if not sid:
                continue
            if sid not in vis or sid not in ir:
                raise DatasetError(f"{split_file}, line {ln}: id {sid!r} has no Vis+Ir pair")
            chosen.append(sid)
        stems = chosen
    elif split in ("train", "test"):
        stems = [s for i, s in enumerate(stems) if (i % 5 == 4) == (split == "test")]
    elif split not in (None, "all"):
        raise DatasetError(f"M3FD split {split!r}: no {split_file}; use train, test or all")
    entries = []
    for stem in stems:
        xp = root / "Annotations" / f"{stem}.xml"
        boxes, labels = parse_if_present(xp, lambda q: parse_voc_xml(q, M3FD_CLASSES))
        entries.append(Entry(stem, vis[stem], ir[stem], boxes, labels))
    return PairDataset("m3fd", root, entries, list(M3FD_CLASSES), unpaired)
