"""LLVIP reader (registered visible/infrared pairs, VOC XML, class ``person``).

Two layouts, told apart by their folders (``layout=auto``, the default) or named with the
reader option ``llvip:layout=official`` / ``llvip:layout=flat``:

``official``, as LLVIP publishes it::

    root/visible/{train,test}/<id>.jpg
    root/infrared/{train,test}/<id>.jpg
    root/Annotations/<id>.xml          VOC XML, class 'person'

``flat``, one folder per modality (e.g. ``../shared/real/llvip_train50``)::

    root/[split/]rgb/<id>.jpg
    root/[split/]ir/<id>.jpg           (3-channel JPEG with R=G=B is fine)
    root/[split/]orig_annotations/<id>.xml   LLVIP's VOC XML as published
                                             (``Annotations/`` is accepted too)

In the flat layout a ``labels/`` folder of YOLO files beside them is not read (that is the
``yolo:thermal_dir=ir`` reader's input); without split folders the whole folder is one split.
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
from dlrmamba_core.errors import DatasetError

__all__ = ["LLVIP_CLASSES", "LLVIP_LAYOUTS", "detect_layout", "open_llvip"]

LLVIP_CLASSES = ["person"]

#: values of the ``layout`` option (``auto`` picks by the folders present)
LLVIP_LAYOUTS = ("auto", "official", "flat")

#: annotation folders of the flat layout, in the order they are looked for
FLAT_ANNOTATION_DIRS = ("orig_annotations", "Annotations")


def _flat_base(root: Path, split: str | None) -> Path | None:
    """The folder holding ``rgb/`` + ``ir/`` (``root/split`` or ``root``), or None."""
    for base in ([root / split] if split else []) + [root]:
        if (base / "rgb").is_dir() and (base / "ir").is_dir():
            return base
    return None


def detect_layout(root: Path, split: str | None = None) -> str:
    """``"official"`` when ``root/visible`` exists, ``"flat"`` when ``rgb/`` + ``ir/`` do.

    Raises:
        DatasetError: neither layout is there (the message shows both).
    """
    if (root / "visible").is_dir():
        return "official"
    if _flat_base(root, split) is not None:
        return "flat"
    raise DatasetError(
        f"LLVIP: {root} has neither the official layout (visible/<split>/, infrared/<split>/, "
        "Annotations/) nor the flat one ([split/]rgb/, ir/, orig_annotations/ or "
        "Annotations/); check --data / --root, or see docs/data_formats.md (llvip)")


def _pairs(vis: dict[str, Path], ir: dict[str, Path], ann: Path) -> tuple[list[Entry], list[str]]:
    """Entries of the stems in both modalities (boxes from ``ann/<stem>.xml``) and the
    paths of images without a partner."""
    unpaired = [str(p) for s, p in vis.items() if s not in ir]
    unpaired += [str(p) for s, p in ir.items() if s not in vis]
    entries = []
    for stem, rp in vis.items():
        if stem not in ir:
            continue
        boxes, labels = parse_if_present(ann / f"{stem}.xml",
                                         lambda q: parse_voc_xml(q, LLVIP_CLASSES))
        entries.append(Entry(stem, rp, ir[stem], boxes, labels))
    return entries, unpaired


def _open_flat(root: Path, split: str | None) -> PairDataset:
    base = _flat_base(root, split)
    if base is None:
        raise DatasetError(f"LLVIP flat layout: no rgb/ and ir/ folders in {root}"
                           + (f" or {root / split}" if split else "")
                           + "; see docs/data_formats.md (llvip)")
    ann = next((base / d for d in FLAT_ANNOTATION_DIRS if (base / d).is_dir()), None)
    if ann is None:
        raise DatasetError(
            f"LLVIP flat layout: no annotation folder in {base} (looked for "
            f"{', '.join(d + '/' for d in FLAT_ANNOTATION_DIRS)}); put LLVIP's VOC XML files "
            "there, or read YOLO labels with --data-format yolo:thermal_dir=ir")
    vis = list_images(base / "rgb")
    ir = list_images(base / "ir")
    entries, unpaired = _pairs(vis, ir, ann)
    ds = PairDataset("llvip", root, entries, list(LLVIP_CLASSES), unpaired)
    ds.notes.append(f"LLVIP flat layout in {base}: rgb/ + ir/, VOC XML from {ann.name}/")
    if split and base == root:
        ds.notes.append(f"{root} has no {split!r} split folder: the whole folder is read")
    return ds


def open_llvip(root: Path, split: str | None = None, layout: str | None = None) -> PairDataset:
    """Open LLVIP in its official or flat layout (see the module docstring).

    Args:
        root: dataset root folder.
        split: ``train`` or ``test`` in the official layout (default train); in the flat
            layout a sub-folder holding ``rgb/`` + ``ir/`` (None or absent: the whole folder).
        layout: ``auto`` (default: by the folders present), ``official`` or ``flat``.

    Returns:
        The pairs, class ``person``; boxes (N, 4) float32 xyxy in pixels of the RGB image.

    Raises:
        DatasetError: an unknown ``layout``, missing folders, or a malformed XML (naming it).
    """
    layout = layout or "auto"
    if layout not in LLVIP_LAYOUTS:
        raise DatasetError(f"LLVIP layout={layout!r}: use one of {', '.join(LLVIP_LAYOUTS)} "
                           "(e.g. --data-format llvip:layout=flat)")
    if layout == "auto":
        layout = detect_layout(root, split)
    if layout == "flat":
        return _open_flat(root, split)
    split = split or "train"
    vis = list_images(require_dir(root / "visible" / split, "LLVIP visible folder"))
    ir = list_images(require_dir(root / "infrared" / split, "LLVIP infrared folder"))
    entries, unpaired = _pairs(vis, ir, root / "Annotations")
    return PairDataset("llvip", root, entries, list(LLVIP_CLASSES), unpaired)
