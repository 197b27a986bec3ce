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
"""

from __future__ import annotations

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
from dlrmamba_core.errors import DatasetError

__all__ = ["BORDER", "DRONEVEHICLE_CLASSES", "open_dronevehicle"]

DRONEVEHICLE_CLASSES = ["car", "truck", "bus", "van", "freight car"]
ALIASES = {"feright car": "freight car", "feright_car": "freight car", "feright": "freight car",
           "freight_car": "freight car", "truvk": "truck"}
BORDER = 100


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


def open_dronevehicle(root: Path, split: str | None = None,
                      labels: str = "rgb") -> PairDataset:
    """Open DroneVehicle ``split`` (default train) with the ``labels`` set rgb / ir / union."""
    if labels not in ("rgb", "ir", "union"):
        raise DatasetError(f"DroneVehicle labels={labels!r}: use rgb, ir or union")
    s = split or "train"
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
