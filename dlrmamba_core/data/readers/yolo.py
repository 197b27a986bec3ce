"""Generic paired-YOLO layout (detection rows, and YOLO-seg polygon rows)."""

from __future__ import annotations

from dataclasses import dataclass
import logging
from pathlib import Path

import cv2
import numpy as np

from dlrmamba_core.data.readers.base import (
    Entry,
    PairDataset,
    as_bool,
    box_polygon,
    boxes_array,
    list_images,
    require_dir,
)
from dlrmamba_core.errors import DatasetError

__all__ = ["YoloLabels", "open_yolo", "parse_yolo_rows", "parse_yolo_txt", "yolo_entries",
           "yolo_row_problem"]

log = logging.getLogger(__name__)


#: Box edges this far outside [0, 1] (a fraction of the image) are rounding of exporters and
#: are clipped silently; anything further is refused unless the reader's ``clip`` is on.
EDGE_TOLERANCE = 0.01


def yolo_row_problem(cx: float, cy: float, w: float, h: float) -> str | None:
    """Why a normalized YOLO box is out of range, or None when it is fine.

    Edges up to :data:`EDGE_TOLERANCE` outside the image count as fine (they are clipped).
    """
    if max(cx, cy, w, h) > 1.5:
        return ("values above 1 look like pixel units; YOLO rows are normalized: divide cx "
                "and w by the image width, cy and h by its height")
    x1, y1, x2, y2 = cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2
    lo, hi = -EDGE_TOLERANCE, 1 + EDGE_TOLERANCE
    if min(x1, y1) < lo or max(x2, y2) > hi:
        return (f"box edges x {x1:.4g}..{x2:.4g}, y {y1:.4g}..{y2:.4g} fall outside the image "
                "(normalized 0..1)")
    return None


@dataclass
class YoloLabels:
    """The rows of one YOLO label file.

    Attributes:
        boxes: (N, 4) float32 xyxy in pixels (a polygon row's box is the polygon's bounds).
        labels: (N,) int64 class ids.
        polygons: per object, (K, 2) float32 x, y in pixels for a YOLO-seg row, or None for
            a box row.
        clipped: rows clipped or dropped beyond :data:`EDGE_TOLERANCE` (``clip=True`` only).
    """

    boxes: np.ndarray
    labels: np.ndarray
    polygons: list[np.ndarray | None]
    clipped: int


def _polygon_problem(xy: np.ndarray) -> str | None:
    """Why normalized polygon coordinates (K, 2) are out of range, or None when fine."""
    if float(xy.max()) > 1.5:
        return ("values above 1 look like pixel units; YOLO-seg points are normalized: "
                "divide x by the image width and y by its height")
    lo, hi = -EDGE_TOLERANCE, 1 + EDGE_TOLERANCE
    if float(xy.min()) < lo or float(xy.max()) > hi:
        return (f"points x {xy[:, 0].min():.4g}..{xy[:, 0].max():.4g}, y "
                f"{xy[:, 1].min():.4g}..{xy[:, 1].max():.4g} fall outside the image "
                "(normalized 0..1)")
    return None


def parse_yolo_rows(path: Path, width: int, height: int, num_classes: int | None,
                    clip: bool = False) -> YoloLabels:
    """Parse a YOLO (``cls cx cy w h``) or YOLO-seg (``cls x1 y1 x2 y2 x3 y3 ...``) file.

    Both row kinds may appear in one file: 5 values are a box; the class and 3 or more
    normalized ``x y`` points (an odd count >= 7) are a polygon, the object's outline.

    Args:
        path: the label file.
        width: image width (px).
        height: image height (px).
        num_classes: number of classes (None: any class id >= 0).
        clip: clip boxes / points that leave the image to it (dropping objects left empty)
            instead of refusing them.

    Returns:
        :class:`YoloLabels` in pixels.

    Raises:
        DatasetError: naming the file and line of a malformed row (wrong value count,
            non-numbers, a degenerate polygon), an unknown class, or (without ``clip``)
            coordinates outside the image or in pixel units.
    """
    rows, labels = [], []
    polys: list[np.ndarray | None] = []
    clipped = 0
    for ln, line in enumerate(path.read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        try:
            if len(parts) != 5 and (len(parts) < 7 or len(parts) % 2 == 0):
                raise ValueError(f"got {len(parts)} values")
            cls = int(parts[0])
            vals = np.asarray([float(v) for v in parts[1:]], np.float64)
            if not np.all(np.isfinite(vals)):
                raise ValueError("non-finite value")
        except ValueError as exc:
            raise DatasetError(
                f"{path}, line {ln}: malformed YOLO row {line[:80]!r} ({exc}); expected "
                "'class cx cy w h' or, for YOLO-seg, 'class x1 y1 x2 y2 x3 y3 ...' (3 or more "
                "points), normalized floats") from exc
        if cls < 0 or (num_classes is not None and cls >= num_classes):
            known = "0 or more" if num_classes is None else (
                f"0..{num_classes - 1} ({num_classes} classes in classes.txt / class_names)")
            raise DatasetError(f"{path}, line {ln}: class {cls} outside {known}")
        poly = None
        if len(parts) == 5:
            cx, cy, w, h = vals
            if not (w > 0 and h > 0):
                raise DatasetError(f"{path}, line {ln}: box width/height must be > 0: "
                                   f"{line!r}")
            problem = yolo_row_problem(cx, cy, w, h)
            x1, y1, x2, y2 = cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2
        else:
            xy = vals.reshape(-1, 2)
            problem = _polygon_problem(xy)
            if np.ptp(xy[:, 0]) <= 0 or np.ptp(xy[:, 1]) <= 0:
                raise DatasetError(f"{path}, line {ln}: YOLO-seg polygon has zero width or "
                                   f"height: {line[:80]!r}; remove the row")
            # The outline stays whole (rasterizing keeps the part inside the image); only the
            # box is clipped below.
            poly = (xy * np.float64([width, height])).astype(np.float32)
            x1, y1 = xy.min(0)
            x2, y2 = xy.max(0)
        if problem is not None:
            if not clip:
                raise DatasetError(
                    f"{path}, line {ln}: {problem}: {line[:80]!r}; fix the labels, or pass "
                    "--data-format yolo:clip=1 to clip such rows to the image (counted)")
            clipped += 1
        x1 = min(max(x1, 0.0), 1.0) * width
        y1 = min(max(y1, 0.0), 1.0) * height
        x2 = min(max(x2, 0.0), 1.0) * width
        y2 = min(max(y2, 0.0), 1.0) * height
        if x2 <= x1 or y2 <= y1:
            continue  # entirely outside the image (only reachable with clip)
        rows.append([x1, y1, x2, y2])
        labels.append(cls)
        polys.append(poly)
    return YoloLabels(boxes_array(rows), np.asarray(labels, np.int64), polys, clipped)


def parse_yolo_txt(path: Path, width: int, height: int, num_classes: int | None,
                   clip: bool = False) -> tuple[np.ndarray, np.ndarray, int]:
    """Parse a YOLO label file (``cls cx cy w h``, normalized) into xyxy pixels.

    YOLO-seg rows are accepted too; their box is the polygon's bounds (the polygons are in
    :func:`parse_yolo_rows`).

    Args:
        path: the label file.
        width: image width (px).
        height: image height (px).
        num_classes: number of classes (None: any class id >= 0).
        clip: clip boxes that leave the image to it (dropping those left empty) instead of
            refusing them.

    Returns:
        (boxes (N, 4) float32 xyxy px, labels (N,) int64, number of rows clipped or dropped
        beyond :data:`EDGE_TOLERANCE`).

    Raises:
        DatasetError: naming the file and line of a malformed row, an unknown class, or (without
            ``clip``) a box outside the image or in pixel units.
    """
    rows = parse_yolo_rows(path, width, height, num_classes, clip)
    return rows.boxes, rows.labels, rows.clipped


def _image_size(path: Path) -> tuple[int, int]:
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise DatasetError(f"cannot read image {path}")
    return int(img.shape[1]), int(img.shape[0])


def yolo_entries(base: Path, rgb_dir: str, thermal_dir: str, labels_dir: str,
                 class_names: list[str] | None, clip: bool, what: str
                 ) -> tuple[list[Entry], list[str], int, list[str]]:
    """Pairs of a YOLO-style folder ``base/{rgb_dir,thermal_dir,labels_dir}`` (same stems).

    Returns:
        (entries, unpaired paths, highest class id seen (-1: none), notes about clipping).
    """
    rgbs = list_images(require_dir(base / rgb_dir, f"{what} RGB folder"))
    ths = list_images(require_dir(base / thermal_dir, f"{what} thermal folder"))
    unpaired = [str(p) for s, p in rgbs.items() if s not in ths]
    unpaired += [str(p) for s, p in ths.items() if s not in rgbs]
    entries = []
    polygons: list[list[np.ndarray | None]] = []
    max_cls = -1
    clipped = files = 0
    n = len(class_names) if class_names else None
    for stem, rp in rgbs.items():
        if stem not in ths:
            continue
        lp = base / labels_dir / f"{stem}.txt"
        boxes, labels = (boxes_array([]), np.zeros(0, np.int64))
        polys: list[np.ndarray | None] = []
        if lp.is_file():
            w, h = _image_size(rp)
            parsed = parse_yolo_rows(lp, w, h, n, clip=clip)
            boxes, labels, polys = parsed.boxes, parsed.labels, parsed.polygons
            clipped += parsed.clipped
            files += parsed.clipped > 0
        if len(labels):
            max_cls = max(max_cls, int(labels.max()))
        entries.append(Entry(stem, rp, ths[stem], boxes, labels))
        polygons.append(polys)
    notes = []
    if any(p is not None for polys in polygons for p in polys):
        # A YOLO-seg dataset: every object gets a mask; a plain box row its rectangle.
        boxed = 0
        for e, polys in zip(entries, polygons, strict=True):
            boxed += sum(p is None for p in polys)
            e.masks = [box_polygon(b) if p is None else [p]
                       for p, b in zip(polys, e.boxes, strict=True)]
        if boxed:
            notes.append(f"{boxed} box rows in the YOLO-seg labels of {base / labels_dir} "
                         "have no polygon: their instance mask is the box rectangle")
            log.warning("%s", notes[-1])
    if not (base / labels_dir).is_dir():
        notes.append(f"{base / labels_dir} does not exist: every pair has no objects; name the "
                     f"label folder with {what}:labels_dir=NAME")
        log.warning("%s", notes[-1])
    if clipped:
        notes.append(f"clipped {clipped} boxes outside the image in {files} label files "
                     f"of {base / labels_dir} (clip=1)")
        log.warning("%s", notes[-1])
    return entries, unpaired, max_cls, notes


def read_class_names(root: Path) -> list[str] | None:
    """``root/classes.txt`` (one name per line), or None when absent."""
    if not (root / "classes.txt").is_file():
        return None
    return [c.strip() for c in (root / "classes.txt").read_text().splitlines() if c.strip()]


def open_yolo(root: Path, split: str | None = None, class_names: list[str] | None = None,
              rgb_dir: str = "rgb", thermal_dir: str = "thermal",
              labels_dir: str = "labels", clip: bool | int | str = False) -> PairDataset:
    """Generic paired-YOLO layout (docs/data_formats.md, "yolo").

    Layout::

        root/classes.txt                (optional: one class name per line)
        root/[split/]rgb/<stem>.jpg     RGB images
        root/[split/]thermal/<stem>.png thermal images (same stem; registered to RGB)
        root/[split/]labels/<stem>.txt  YOLO rows 'cls cx cy w h' normalized to the RGB image,
                                        or YOLO-seg rows 'cls x1 y1 x2 y2 x3 y3 ...'

    A missing label file means no objects. YOLO-seg rows (the object's outline, normalized
    points) give instance masks (``PairSample.masks``; ``has_masks``) and their bounds as the
    box; in such a dataset a plain box row's mask is its rectangle (counted in ``notes``).
    The thermal image is taken as registered (homography None). Image sizes are read from
    the files (lazily at open: one header read per image). A box whose edges leave the image
    by more than 1 % (or with values above 1: pixel units) raises DatasetError naming file
    and line; ``clip=1`` clips it instead and the count is logged and kept in
    ``PairDataset.notes``.
    """
    base = root / split if split else root
    require_dir(base, "yolo dataset")
    if class_names is None:
        class_names = read_class_names(root)
    entries, unpaired, max_cls, notes = yolo_entries(
        base, rgb_dir, thermal_dir, labels_dir, class_names, as_bool(clip, "clip"), "yolo")
    names = class_names or [f"class{i}" for i in range(max_cls + 1)]
    ds = PairDataset("yolo", root, entries, names, unpaired)
    ds.notes += notes
    return ds
