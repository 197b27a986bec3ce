"""Dataset readers: ``open_dataset(format, root, split=None, **kw) -> PairDataset``.

Formats: synth, yolo, coco, llvip, m3fd, flir, kaist, vedai, dronevehicle. Each reader's
docstring (and docs/data.md) describes the on-disk layout it expects.
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

__all__ = ["FORMATS", "Entry", "PairDataset", "open_dataset", "parse_options", "split_format"]

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
