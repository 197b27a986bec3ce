"""DroneVehicle reader (RGB + IR drone images, XML polygons, 100-px white borders).

Layout (``<s>`` = train, val or test)::

    root/<s>/<s>img/<id>.jpg      RGB (with a 100-px white border on each side)
    root/<s>/<s>imgr/<id>.jpg     IR  (same border)
    root/<s>/<s>label/<id>.xml    RGB labels: <object><name>..</name><polygon><x1>..<y4>
    root/<s>/<s>labelr/<id>.xml   IR labels (same schema)

The border is cropped when images are read (``Entry.crop``) and boxes are shifted by -100 px
and clipped to the cropped frame; each polygon becomes its axis-aligned bounds (a <bndbox> is
also accepted). Classes: car, truck, bus, van, freight car; the misspellings "feright car",
"feright_car", "feright", "freight_car" and "truvk" are mapped. ``labels``: "rgb" (default),
"ir" or "union" (both label sets concatenated). Image sizes are read at open (one read per
image) to place the crop.

The common YOLO export of DroneVehicle (white border already cropped, one label set per
modality) is recognised by its ``rgb/`` folder and read as well::

    root/[split/]rgb/<id>.jpg         RGB
    root/[split/]ir/<id>.jpg          IR (3-channel JPEG with R=G=B is fine)
    root/[split/]labels/<id>.txt      IR labels, YOLO 'cls cx cy w h' normalized
    root/[split/]labels_rgb/<id>.txt  RGB labels (same format)
    root/classes.txt                  optional: Car, Truck, Bus, Van, Freight_Car

(``rgb/images`` + ``rgb/labels`` and ``ir/images`` + ``ir/labels`` sub-folders are accepted
too). There ``labels`` defaults to "ir" (the export's primary set, ``labels/``); "rgb" reads
``labels_rgb/`` and "union" both. Without split folders the whole folder is one split.
"""

from __future__ import annotations

import logging
from pathlib import Path
import xml.etree.ElementTree as ET

import cv2
import numpy as np

from dlrmamba_core.data.readers.base import (
    Entry,
    PairDataset,
    boxes_array,
    class_index,
    list_images,
    require_dir,
)
from dlrmamba_core.data.readers.yolo import read_class_names, yolo_entries
from dlrmamba_core.errors import DatasetError

__all__ = ["BORDER", "DRONEVEHICLE_CLASSES", "open_dronevehicle"]

DRONEVEHICLE_CLASSES = ["car", "truck", "bus", "van", "freight car"]
ALIASES = {"feright car": "freight car", "feright_car": "freight car", "feright": "freight car",
           "freight_car": "freight car", "truvk": "truck"}
BORDER = 100

log = logging.getLogger(__name__)


def _parse(path: Path, w: int, h: int) -> tuple[list[list[float]], list[int]]:
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise DatasetError(f"{path}: malformed XML ({exc}); fix or remove the file") from exc
    rows, labels = [], []
    for k, obj in enumerate(root.iter("object")):
        where = f"{path}, object {k}"
        name = obj.findtext("name") or ""
        poly, bb = obj.find("polygon"), obj.find("bndbox")
        try:
            if poly is not None:
                xs = [float(poly.findtext(f"x{i}") or "") for i in range(1, 5)]
                ys = [float(poly.findtext(f"y{i}") or "") for i in range(1, 5)]
            elif bb is not None:
                xs = [float(bb.findtext(t) or "") for t in ("xmin", "xmax")]
                ys = [float(bb.findtext(t) or "") for t in ("ymin", "ymax")]
            else:
                raise ValueError("no <polygon> or <bndbox>")
        except ValueError as exc:
            raise DatasetError(f"{where}: bad geometry ({exc}); expected numeric x1..y4") from exc
        x1 = min(max(min(xs) - BORDER, 0.0), w)
        x2 = min(max(max(xs) - BORDER, 0.0), w)
        y1 = min(max(min(ys) - BORDER, 0.0), h)
        y2 = min(max(max(ys) - BORDER, 0.0), h)
        if x2 > x1 and y2 > y1:
            rows.append([x1, y1, x2, y2])
            labels.append(class_index(name, DRONEVEHICLE_CLASSES, ALIASES, where))
    return rows, labels


def _yolo_export_base(root: Path, split: str | None) -> Path | None:
    """The folder holding ``rgb/`` of a YOLO export (``root/split`` or ``root``), or None."""
    for base in ([root / split] if split else []) + [root]:
        if (base / "rgb").is_dir() and (base / "ir").is_dir():
            return base
    return None


def _open_yolo_export(root: Path, base: Path, labels: str) -> PairDataset:
    names = read_class_names(root) or read_class_names(base)
    if names is not None:
        got = [ALIASES.get(n.lower(), n.lower()).replace("_", " ") for n in names]
        if got != DRONEVEHICLE_CLASSES[:len(got)]:
            raise DatasetError(
                f"{root / 'classes.txt'}: classes {names} are not DroneVehicle's "
                f"{DRONEVEHICLE_CLASSES} in that order; read it with --data-format yolo "
                "(yolo:thermal_dir=ir) to keep its own class map")
    nested = (base / "rgb" / "images").is_dir()
    rgb_dir, ir_dir = ("rgb/images", "ir/images") if nested else ("rgb", "ir")
    label_dirs = {"ir": "ir/labels" if nested else "labels",
                  "rgb": "rgb/labels" if nested else "labels_rgb"}
    chosen = ["ir", "rgb"] if labels == "union" else [labels]
    entries: list[Entry] = []
    unpaired: list[str] = []
    for k, which in enumerate(chosen):
        if not (base / label_dirs[which]).is_dir():
            raise DatasetError(f"DroneVehicle YOLO export: {base / label_dirs[which]} not "
                               f"found for labels={which}; pass --data-format "
                               "dronevehicle:labels=ir (labels/) or dronevehicle:labels=rgb "
                               "(labels_rgb/), see docs/data_formats.md")
        ents, unp, _, _ = yolo_entries(base, rgb_dir, ir_dir, label_dirs[which],
                                       list(DRONEVEHICLE_CLASSES), False, "DroneVehicle")
        if k == 0:
            entries, unpaired = ents, unp
        else:  # union: append the other modality's boxes to the same pairs
            for e, o in zip(entries, ents, strict=True):
                e.boxes = np.concatenate([e.boxes, o.boxes])
                e.labels = np.concatenate([e.labels, o.labels])
    ds = PairDataset("dronevehicle", root, entries, list(DRONEVEHICLE_CLASSES), unpaired)
    ds.notes.append(f"DroneVehicle YOLO export in {base}: {labels} labels "
                    f"({', '.join(label_dirs[w] + '/' for w in chosen)}); pick another set "
                    "with --data-format dronevehicle:labels=ir|rgb|union")
    log.info("%s", ds.notes[-1])
    return ds


def open_dronevehicle(root: Path, split: str | None = None,
                      labels: str | None = None) -> PairDataset:
    """Open DroneVehicle ``split`` with the ``labels`` set rgb / ir / union.

    The original XML layout (default split train, default labels rgb) or the YOLO export
    (default labels ir; without split folders the whole folder), see the module docstring.
    """
    if labels not in (None, "rgb", "ir", "union"):
        raise DatasetError(f"DroneVehicle labels={labels!r}: use rgb, ir or union")
    export = _yolo_export_base(root, split)
    if export is not None:
        return _open_yolo_export(root, export, labels or "ir")
    labels = labels or "rgb"
    s = split or "train"
    if not (root / s).is_dir():
        raise DatasetError(
            f"DroneVehicle: {root / s} not found, and {root} is not the YOLO export either "
            "(rgb/ + ir/ folders); see docs/data_formats.md for both layouts")
    base = require_dir(root / s, "DroneVehicle split folder")
    rgb = list_images(require_dir(base / f"{s}img", "DroneVehicle RGB folder"))
    ir = list_images(require_dir(base / f"{s}imgr", "DroneVehicle IR folder"))
    unpaired = [str(p) for k, p in rgb.items() if k not in ir]
    unpaired += [str(p) for k, p in ir.items() if k not in rgb]
    dirs = {"rgb": [f"{s}label"], "ir": [f"{s}labelr"], "union": [f"{s}label", f"{s}labelr"]}
    entries = []
    for stem, rp in rgb.items():
        if stem not in ir:
            continue
        img = cv2.imread(str(rp), cv2.IMREAD_UNCHANGED)
        if img is None:
            raise DatasetError(f"cannot read image {rp}")
        H, W = img.shape[:2]
        if W <= 2 * BORDER or H <= 2 * BORDER:
            raise DatasetError(f"{rp}: {W}x{H} is too small for the {BORDER}-px border")
        w, h = W - 2 * BORDER, H - 2 * BORDER
        rows: list[list[float]] = []
        labs: list[int] = []
        for d in dirs[labels]:
            xp = base / d / f"{stem}.xml"
            if xp.is_file():
                r, lb = _parse(xp, w, h)
                rows += r
                labs += lb
        entries.append(Entry(stem, rp, ir[stem], boxes_array(rows), np.asarray(labs, np.int64),
                             crop=(BORDER, BORDER, W - BORDER, H - BORDER)))
    return PairDataset("dronevehicle", root, entries, list(DRONEVEHICLE_CLASSES), unpaired)
