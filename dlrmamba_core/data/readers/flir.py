"""FLIR aligned reader (the "FLIR_aligned" release: aligned RGB/thermal, VOC XML).

Layout::

    root/JPEGImages/FLIR_<n>_RGB.jpg            RGB
    root/JPEGImages/FLIR_<n>_PreviewData.jpeg   thermal (aligned to the RGB)
    root/Annotations/FLIR_<n>_PreviewData.xml   VOC XML (FLIR_<n>.xml also accepted)
    root/ImageSets/<split>.txt                  optional, e.g. train.txt, test.txt,
                                                align_train.txt, align_validation.txt

Split files hold one id per line (``FLIR_<n>``, with or without the ``_PreviewData`` /
``_RGB`` suffix); an id without a pair raises DatasetError naming file and line. Without a
split, every pair is used. Classes: person, car, bicycle, dog. Registered (homography None).
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

__all__ = ["FLIR_CLASSES", "open_flir"]

FLIR_CLASSES = ["person", "car", "bicycle", "dog"]


def _split_ids(path: Path, pairs: set[str]) -> list[str]:
    out = []
    for ln, line in enumerate(path.read_text().splitlines(), 1):
        sid = line.strip()
        for suf in ("_PreviewData", "_RGB"):
            sid = sid.removesuffix(suf)
        if not sid:
            continue
        if sid not in pairs:
            raise DatasetError(f"{path}, line {ln}: id {sid!r} has no RGB + PreviewData pair")
        out.append(sid)
    return out


def open_flir(root: Path, split: str | None = None) -> PairDataset:
    """Open FLIR aligned; ``split`` names ``root/ImageSets/<split>.txt`` (None: all)."""
    imgs = list_images(require_dir(root / "JPEGImages", "FLIR JPEGImages folder"))
    rgb = {s.removesuffix("_RGB"): p for s, p in imgs.items() if s.endswith("_RGB")}
    th = {s.removesuffix("_PreviewData"): p for s, p in imgs.items()
          if s.endswith("_PreviewData")}
    unpaired = [str(p) for s, p in rgb.items() if s not in th]
    unpaired += [str(p) for s, p in th.items() if s not in rgb]
    ids = sorted(s for s in rgb if s in th)
    if split:
        sp = root / "ImageSets" / f"{split}.txt"
        if not sp.is_file():
            raise DatasetError(f"FLIR split file {sp} not found; pass a split that names a file "
                               "in ImageSets/ or no split")
        ids = _split_ids(sp, set(ids))
    entries = []
    for sid in ids:
        xp = root / "Annotations" / f"{sid}_PreviewData.xml"
        if not xp.is_file():
            xp = root / "Annotations" / f"{sid}.xml"
        boxes, labels = parse_if_present(xp, lambda q: parse_voc_xml(q, FLIR_CLASSES))
        entries.append(Entry(sid, rgb[sid], th[sid], boxes, labels))
    return PairDataset("flir", root, entries, list(FLIR_CLASSES), unpaired)
