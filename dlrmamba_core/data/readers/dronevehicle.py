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

    root/[split/]labels_obb_ir/<id>.txt   IR oriented boxes, YOLO-OBB
                                          'cls x1 y1 x2 y2 x3 y3 x4 y4' normalized
    root/[split/]labels_obb_rgb/<id>.txt  RGB oriented boxes (same format)

(``rgb/images`` + ``rgb/labels`` [+ ``rgb/obb_labels``] and the same under ``ir/`` are accepted
too). There ``labels`` defaults to "ir" (the export's primary set, ``labels/``); "rgb" reads
``labels_rgb/`` and "union" both. ``boxes`` picks the geometry: "hbb" (default) the YOLO rows,
"obb" the oriented boxes, each read as the axis-aligned bounds of its 4 corners (clipped to the
image; corners of a rotated box at the image edge may lie outside it, counted in ``notes``).
Without split folders the whole folder is one split. The original XML layout has a single
geometry (polygons, read as their bounds), so ``boxes`` does not change what it reads.
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

__all__ = ["BORDER", "BOX_KINDS", "DRONEVEHICLE_CLASSES", "open_dronevehicle",
           "parse_obb_txt"]

DRONEVEHICLE_CLASSES = ["car", "truck", "bus", "van", "freight car"]
ALIASES = {"feright car": "freight car", "feright_car": "freight car", "feright": "freight car",
           "freight_car": "freight car", "truvk": "truck"}
BORDER = 100
#: values of the ``boxes`` option: YOLO rows (horizontal boxes) or oriented boxes (4 corners)
BOX_KINDS = ("hbb", "obb")
#: a normalized corner this far outside [0, 1] is pixel units or a broken file, not rounding
OBB_LIMIT = 1.5

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


def parse_obb_txt(path: Path, width: int, height: int, num_classes: int
                  ) -> tuple[np.ndarray, np.ndarray, int]:
    """Parse a YOLO-OBB file (``cls x1 y1 x2 y2 x3 y3 x4 y4``, corners normalized to 0..1).

    Each oriented box becomes the axis-aligned bounds of its 4 corners, clipped to the image;
    a box left empty by the clipping is dropped.

    Args:
        path: the label file.
        width: image width (px).
        height: image height (px).
        num_classes: number of classes (ids 0..num_classes-1).

    Returns:
        (boxes (N, 4) float32 xyxy px, labels (N,) int64, number of boxes with a corner
        outside the image, clipped or dropped).

    Raises:
        DatasetError: naming the file and line of a row that is not a class and 8 finite
            numbers, has an unknown class, a zero-area box, or corners in pixel units.
    """
    rows, labels = [], []
    clipped = 0
    try:
        text = path.read_text()
    except OSError as exc:
        raise DatasetError(f"cannot read label file {path}: {exc}") from exc
    for ln, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        try:
            if len(parts) != 9:
                raise ValueError(f"got {len(parts)} values")
            cls = int(parts[0])
            xy = np.asarray([float(v) for v in parts[1:]], np.float64).reshape(4, 2)
            if not np.all(np.isfinite(xy)):
                raise ValueError("non-finite value")
        except ValueError as exc:
            raise DatasetError(
                f"{path}, line {ln}: malformed YOLO-OBB row {line[:80]!r} ({exc}); expected "
                "'class x1 y1 x2 y2 x3 y3 x4 y4' with the 4 corners normalized to 0..1") from exc
        if not 0 <= cls < num_classes:
            raise DatasetError(f"{path}, line {ln}: class {cls} outside 0..{num_classes - 1} "
                               f"(DroneVehicle's {DRONEVEHICLE_CLASSES})")
        if float(np.abs(xy).max()) > OBB_LIMIT:
            raise DatasetError(f"{path}, line {ln}: corner values beyond {OBB_LIMIT} look like "
                               "pixel units; YOLO-OBB corners are normalized: divide x by the "
                               "image width and y by its height")
        (x1, y1), (x2, y2) = xy.min(0), xy.max(0)
        if not (x2 > x1 and y2 > y1):
            raise DatasetError(f"{path}, line {ln}: oriented box has zero width or height: "
                               f"{line[:80]!r}; remove the row")
        if min(x1, y1) < 0.0 or max(x2, y2) > 1.0:
            clipped += 1
        box = [min(max(x1, 0.0), 1.0) * width, min(max(y1, 0.0), 1.0) * height,
               min(max(x2, 0.0), 1.0) * width, min(max(y2, 0.0), 1.0) * height]
        if box[2] > box[0] and box[3] > box[1]:
            rows.append(box)
            labels.append(cls)
    return boxes_array(rows), np.asarray(labels, np.int64), clipped


def _obb_entries(base: Path, rgb_dir: str, ir_dir: str, label_dir: str
                 ) -> tuple[list[Entry], list[str], int]:
    """Pairs of ``base/{rgb_dir,ir_dir}`` with boxes from the YOLO-OBB files of ``label_dir``
    (normalized to the RGB image's size; a missing file means no objects).

    Returns:
        (entries, unpaired image paths, number of boxes clipped to the image).
    """
    rgbs = list_images(require_dir(base / rgb_dir, "DroneVehicle RGB folder"))
    irs = list_images(require_dir(base / ir_dir, "DroneVehicle IR folder"))
    unpaired = [str(p) for k, p in rgbs.items() if k not in irs]
    unpaired += [str(p) for k, p in irs.items() if k not in rgbs]
    entries, clipped = [], 0
    for stem, rp in rgbs.items():
        if stem not in irs:
            continue
        boxes, labs = boxes_array([]), np.zeros(0, np.int64)
        lp = base / label_dir / f"{stem}.txt"
        if lp.is_file():
            img = cv2.imread(str(rp), cv2.IMREAD_UNCHANGED)
            if img is None:
                raise DatasetError(f"cannot read image {rp}")
            boxes, labs, n = parse_obb_txt(lp, img.shape[1], img.shape[0],
                                           len(DRONEVEHICLE_CLASSES))
            clipped += n
        entries.append(Entry(stem, rp, irs[stem], boxes, labs))
    return entries, unpaired, clipped


def _open_yolo_export(root: Path, base: Path, labels: str, boxes: str = "hbb") -> PairDataset:
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
    if boxes == "obb":
        label_dirs = {"ir": "ir/obb_labels" if nested else "labels_obb_ir",
                      "rgb": "rgb/obb_labels" if nested else "labels_obb_rgb"}
    else:
        label_dirs = {"ir": "ir/labels" if nested else "labels",
                      "rgb": "rgb/labels" if nested else "labels_rgb"}
    chosen = ["ir", "rgb"] if labels == "union" else [labels]
    entries: list[Entry] = []
    unpaired: list[str] = []
    clipped = 0
    for k, which in enumerate(chosen):
        if not (base / label_dirs[which]).is_dir():
            raise DatasetError(
                f"DroneVehicle YOLO export: {base / label_dirs[which]} not found for "
                f"labels={which}, boxes={boxes}; pass --data-format dronevehicle:labels=ir|rgb"
                ",boxes=hbb|obb naming a label set the folder has (labels/, labels_rgb/, "
                "labels_obb_ir/, labels_obb_rgb/), see docs/data_formats.md")
        if boxes == "obb":
            ents, unp, n = _obb_entries(base, rgb_dir, ir_dir, label_dirs[which])
            clipped += n
        else:
            ents, unp, _, _ = yolo_entries(base, rgb_dir, ir_dir, label_dirs[which],
                                           list(DRONEVEHICLE_CLASSES), False, "DroneVehicle")
        if k == 0:
            entries, unpaired = ents, unp
        else:  # union: append the other modality's boxes to the same pairs
            for e, o in zip(entries, ents, strict=True):
                e.boxes = np.concatenate([e.boxes, o.boxes])
                e.labels = np.concatenate([e.labels, o.labels])
    ds = PairDataset("dronevehicle", root, entries, list(DRONEVEHICLE_CLASSES), unpaired)
    geometry = "oriented boxes read as their bounds" if boxes == "obb" else "YOLO boxes"
    ds.notes.append(f"DroneVehicle YOLO export in {base}: {labels} labels "
                    f"({', '.join(label_dirs[w] + '/' for w in chosen)}) as {geometry}; pick "
                    "another set with --data-format dronevehicle:labels=ir|rgb|union,"
                    "boxes=hbb|obb")
    log.info("%s", ds.notes[-1])
    if clipped:
        ds.notes.append(f"{clipped} oriented boxes have corners outside the image: their "
                        "bounds were clipped to it")
        log.info("%s", ds.notes[-1])
    return ds


def open_dronevehicle(root: Path, split: str | None = None, labels: str | None = None,
                      boxes: str | None = None) -> PairDataset:
    """Open DroneVehicle ``split`` with the ``labels`` set rgb / ir / union.

    The original XML layout (default split train, default labels rgb) or the YOLO export
    (default labels ir; without split folders the whole folder), see the module docstring.

    Args:
        root: dataset root folder.
        split: split folder (None: train in the XML layout, the whole folder in the export).
        labels: which modality's annotation: ``rgb``, ``ir`` or ``union`` (both).
        boxes: geometry of the YOLO export: ``hbb`` (default, the YOLO rows) or ``obb`` (the
            oriented boxes, read as their axis-aligned bounds); the XML layout has only one.

    Returns:
        The pairs; boxes (N, 4) float32 xyxy in pixels of the (cropped) RGB image.

    Raises:
        DatasetError: an unknown option value, missing folders or malformed labels (naming
            the file and line).
    """
    if labels not in (None, "rgb", "ir", "union"):
        raise DatasetError(f"DroneVehicle labels={labels!r}: use rgb, ir or union")
    if boxes not in (None, *BOX_KINDS):
        raise DatasetError(f"DroneVehicle boxes={boxes!r}: use hbb (YOLO boxes) or obb "
                           "(oriented boxes), e.g. --data-format dronevehicle:boxes=obb")
    export = _yolo_export_base(root, split)
    if export is not None:
        return _open_yolo_export(root, export, labels or "ir", boxes or "hbb")
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
    ds = PairDataset("dronevehicle", root, entries, list(DRONEVEHICLE_CLASSES), unpaired)
    if boxes is not None:
        ds.notes.append(f"DroneVehicle XML layout: its labels have one geometry (polygons, "
                        f"read as their bounds), so boxes={boxes} changes nothing")
        log.info("%s", ds.notes[-1])
    return ds
