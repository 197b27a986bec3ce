"""Dataset readers: ``open_dataset(format, root, split=None, **kw) -> PairDataset``.

Formats: synth, yolo, coco, llvip, m3fd, flir, kaist, vedai, dronevehicle. Each reader's
docstring (and docs/data_formats.md) describes the on-disk layout it expects.
"""

from __future__ import annotations

from collections.abc import Callable
import importlib
import inspect
import os
from pathlib import Path
from typing import Any

from dlrmamba_core.data.readers.base import Entry, PairDataset
from dlrmamba_core.errors import DatasetError

__all__ = [
    "FORMATS",
    "Entry",
    "PairDataset",
    "format_help",
    "open_dataset",
    "parse_options",
    "resolve_split",
    "split_format",
]

# format -> (module, function); modules are imported on use.
FORMATS: dict[str, tuple[str, str]] = {
    "synth": ("coco", "open_synth"),
    "yolo": ("yolo", "open_yolo"),
    "coco": ("coco", "open_coco"),
    "llvip": ("llvip", "open_llvip"),
    "m3fd": ("m3fd", "open_m3fd"),
    "flir": ("flir", "open_flir"),
    "kaist": ("kaist", "open_kaist"),
    "vedai": ("vedai", "open_vedai"),
    "dronevehicle": ("dronevehicle", "open_dronevehicle"),
}


#: one line per format for ``--data-format`` help texts (layouts: docs/data_formats.md)
FORMAT_SUMMARY: dict[str, str] = {
    "synth": "the synthetic benchmark of `dlrmamba data gen` (splits from dataset.json)",
    "yolo": "[split/]rgb/, thermal/, labels/ YOLO txt; options rgb_dir, thermal_dir, "
            "labels_dir, clip=1",
    "coco": "[split/]annotations.json (COCO + thermal_file) and the images",
    "llvip": "visible/{train,test}/, infrared/{train,test}/, Annotations/ VOC; or flat "
             "[split/]rgb/, ir/, orig_annotations/ VOC; option layout=auto|official|flat",
    "m3fd": "Vis/, Ir/, Annotations/ VOC, optional splits/<split>.txt",
    "flir": "FLIR_aligned: JPEGImages/, Annotations/, optional ImageSets/<split>.txt",
    "kaist": "images/setXX/V00Y/{visible,lwir}/, annotations/, optional imageSets/",
    "vedai": "Vehicules<size>/, Annotations<size>/ (fold files as splits); option size",
    "dronevehicle": "original <s>/<s>img, <s>imgr, XML labels; or the YOLO export "
                    "[split/]rgb/, ir/, labels/ (IR) + labels_rgb/, labels_obb_ir/ + "
                    "labels_obb_rgb/; options labels=ir|rgb|union, boxes=hbb|obb",
}


def format_help() -> str:
    """The formats with their layouts in one short paragraph (for CLI help texts)."""
    return "; ".join(f"{k}: {v}" for k, v in FORMAT_SUMMARY.items())


def _split_present(fmt: str, root: Path, split: str, kw: dict[str, Any]) -> bool | None:
    """Whether ``split`` exists in the dataset at ``root``; None when the dataset has no
    splits at all (a flat folder, no split files) so the whole folder is the only choice."""
    if fmt in ("yolo", "coco"):
        if (root / split).is_dir():
            return True
        flat = (root / kw.get("rgb_dir", "rgb")).is_dir() if fmt == "yolo" else (
            root / kw.get("annotations", "annotations.json")).is_file()
        return None if flat else False
    if fmt == "dronevehicle":
        if (root / split).is_dir():
            return True
        return None if (root / "rgb").is_dir() else False
    llvip_flat = (fmt == "llvip" and kw.get("layout") != "official"
                  and not (root / "visible").is_dir() and (root / "rgb").is_dir())
    if llvip_flat and not (root / split).is_dir():
        return None  # LLVIP's flat layout (rgb/, ir/, orig_annotations/) without split folders
    for fmt_, folder in (("kaist", "imageSets"), ("flir", "ImageSets"), ("m3fd", "splits")):
        if fmt == fmt_:
            if (root / folder / f"{split}.txt").is_file():
                return True
            if fmt == "m3fd" and split in ("train", "test", "all"):
                return True  # M3FD's deterministic split of the sorted ids
            has_files = (root / folder).is_dir() and any((root / folder).glob("*.txt"))
            return False if has_files else None
    if fmt == "vedai":
        ann = root / f"Annotations{kw.get('size', 512)}"
        if (ann / f"{split}.txt").is_file():
            return True
        return False if any(ann.glob("fold*.txt")) else None
    return True  # synth, llvip: the reader itself checks and explains


def resolve_split(fmt: str, root: str | os.PathLike[str], split: str | None
                  ) -> tuple[str | None, str | None]:
    """The split to open for ``split`` and, when it was changed, a sentence saying why.

    A dataset without any split (a flat yolo / DroneVehicle folder, KAIST or FLIR without
    split files) is used whole instead of failing on a default split name. A split that is
    missing while others exist is kept (the reader's error lists what to pass).

    Returns:
        (split to pass to :func:`open_dataset`, note or None).
    """
    if not split:
        return None, None
    name, kw = split_format(fmt)
    rootp = Path(root)
    if name not in FORMATS or not rootp.is_dir():
        return split, None
    if _split_present(name, rootp, split, kw) is None:
        return None, (f"{rootp} has no {split!r} split (no split folders or split files): "
                      "using the whole folder; pass --split NAME to pick one where the "
                      "layout has them (docs/data_formats.md)")
    return split, None


def reader_function(fmt: str) -> Callable[..., PairDataset]:
    """The open function of a format (raises DatasetError listing the formats)."""
    if fmt not in FORMATS:
        raise DatasetError(f"unknown dataset format {fmt!r}: use one of {sorted(FORMATS)}")
    mod, fn = FORMATS[fmt]
    module = importlib.import_module(f"dlrmamba_core.data.readers.{mod}")
    return getattr(module, fn)


def parse_options(items: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """``["size=1024", "labels=union"]`` -> ``{"size": 1024, "labels": "union"}``."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise DatasetError(f"reader option {item!r}: write KEY=VALUE, e.g. size=1024")
        v = value.strip()
        out[key.strip()] = int(v) if v.lstrip("-").isdigit() else v
    return out


def split_format(spec: str) -> tuple[str, dict[str, Any]]:
    """``"vedai:size=1024"`` -> ``("vedai", {"size": 1024})`` (options after a colon, by
    commas), so one ``--data-format`` string carries the reader's options everywhere."""
    fmt, _, opts = spec.partition(":")
    return fmt.strip(), parse_options([o for o in opts.split(",") if o.strip()])


def open_dataset(fmt: str, root: str | os.PathLike[str], split: str | None = None,
                 **kw: Any) -> PairDataset:
    """Open a dataset in one of the published layouts.

    Args:
        fmt: one of ``FORMATS``, optionally with reader options after a colon:
            ``"vedai:size=1024"``, ``"dronevehicle:labels=union"``.
        root: dataset root directory.
        split: split name (format-specific; e.g. train / val / test).
        **kw: reader-specific options (see each reader).

    Returns:
        A :class:`PairDataset` (``len``, ``[i] -> PairSample``, ``class_names``, ``unpaired``).

    Raises:
        DatasetError: unknown format, missing paths or malformed annotations (naming the file).
    """
    rootp = Path(root)
    if not rootp.exists():
        raise DatasetError(f"dataset root {rootp} does not exist")
    fmt, spec_kw = split_format(fmt)
    kw = {**spec_kw, **kw}
    fn = reader_function(fmt)
    known = [n for n in inspect.signature(fn).parameters if n not in ("root", "split")]
    unknown = sorted(set(kw) - set(known))
    if unknown:
        raise DatasetError(f"the {fmt!r} reader has no option {', '.join(unknown)}; its "
                           f"options: {', '.join(known) or 'none'}")
    return fn(rootp, split, **kw)
