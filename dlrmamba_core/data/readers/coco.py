"""COCO-json readers: the generic paired COCO layout and the synthetic benchmark."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from dlrmamba_core.data.masks import MaskSource, decode_segmentation
from dlrmamba_core.data.readers.base import Entry, PairDataset, box_polygon, boxes_array
from dlrmamba_core.errors import DatasetError, InputError

__all__ = ["open_coco", "open_synth"]


def _load_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise DatasetError(f"annotation file {path} not found; check --root / --split")
    try:
        with open(path) as f:
            data = json.load(f)
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path}, line {exc.lineno}: invalid JSON ({exc.msg})") from exc
    if not isinstance(data, dict) or not all(k in data for k in ("images", "annotations",
                                                                   "categories")):
        raise DatasetError(f"{path}: not a COCO file (needs images, annotations, categories)")
    return data


def _segmentation(a: dict[str, Any], img: dict[str, Any], path: Path) -> MaskSource | None:
    """The annotation's ``segmentation`` (polygons or RLE), or None when it has none."""
    seg = a.get("segmentation")
    if seg is None or (isinstance(seg, (list, dict)) and not seg):
        return None
    hw = (int(img["height"]), int(img["width"])) if "height" in img and "width" in img \
        else None
    try:
        return decode_segmentation(seg, hw)
    except InputError as exc:
        raise DatasetError(f"{path}: annotation id {a.get('id')} of image {img['file_name']}: "
                           f"segmentation: {exc}; fix or remove the segmentation") from exc


def _parse_coco(path: Path, base: Path, thermal_dir: str | None, name: str) -> PairDataset:
    data = _load_json(path)
    cats = sorted(data["categories"], key=lambda c: c["id"])
    class_names = [str(c["name"]) for c in cats]
    cat_to_idx = {c["id"]: i for i, c in enumerate(cats)}
    per_image: dict[Any, list[dict[str, Any]]] = {}
    for a in data["annotations"]:
        try:
            per_image.setdefault(a["image_id"], []).append(a)
        except (KeyError, TypeError) as exc:
            raise DatasetError(f"{path}: annotation {a!r} lacks image_id") from exc
    entries, unpaired = [], []
    sources: list[list[MaskSource | None]] = []  # per entry, per object
    crowd = 0
    for img in data["images"]:
        try:
            rgb_path = base / img["file_name"]
        except KeyError as exc:
            raise DatasetError(f"{path}: image {img!r} lacks file_name") from exc
        if "thermal_file" in img:
            th_path = base / img["thermal_file"]
        elif thermal_dir is not None:
            th_path = base / thermal_dir / Path(img["file_name"]).name
        else:
            raise DatasetError(f"{path}: image {img['file_name']} has no thermal_file and no "
                               "thermal_dir was given")
        if not th_path.is_file() or not rgb_path.is_file():
            unpaired.append(str(rgb_path if rgb_path.is_file() else th_path))
            continue
        rows, labels, vis = [], [], []
        segs: list[MaskSource | None] = []
        for a in per_image.get(img["id"], []):
            try:
                x, y, w, h = (float(v) for v in a["bbox"])
                cls = cat_to_idx[a["category_id"]]
            except (KeyError, ValueError, TypeError) as exc:
                raise DatasetError(
                    f"{path}: annotation id {a.get('id')} of image {img['file_name']} is "
                    f"malformed ({exc!r}); needs bbox [x, y, w, h] and a known category_id"
                ) from exc
            if w <= 0 or h <= 0:
                raise DatasetError(f"{path}: annotation id {a.get('id')} has an empty bbox "
                                   f"{a['bbox']}")
            if a.get("iscrowd", 0):
                crowd += 1  # a crowd region: neither an object to find nor a mistake
                continue
            segs.append(_segmentation(a, img, path))
            rows.append([x, y, x + w, y + h])
            labels.append(cls)
            vis.append([bool(a.get("visible_rgb", 1)), bool(a.get("visible_thermal", 1))])
        hm = img.get("homography")
        has_vis = any("visible_rgb" in a for a in per_image.get(img["id"], []))
        meta = {k: img[k] for k in ("scene", "condition", "seed") if k in img}
        entries.append(Entry(
            image_id=Path(img["file_name"]).stem, rgb_path=rgb_path, thermal_path=th_path,
            boxes=boxes_array(rows), labels=np.asarray(labels, np.int64),
            homography=None if hm is None else np.asarray(hm, np.float64),
            visible=np.asarray(vis, bool).reshape(-1, 2) if has_vis else None, meta=meta,
        ))
        sources.append(segs)
    ds = PairDataset(name, base, entries, class_names, unpaired)
    if crowd:
        ds.notes.append(f"{crowd} iscrowd annotations of {path} are left out of the objects "
                        "(COCO crowd regions: ignored by COCO evaluation, not targets)")
    if any(s is not None for segs in sources for s in segs):
        boxed = 0
        for e, segs in zip(entries, sources, strict=True):
            boxed += sum(s is None for s in segs)
            e.masks = [box_polygon(b) if s is None else s
                       for s, b in zip(segs, e.boxes, strict=True)]
        if boxed:
            ds.notes.append(f"{boxed} annotations of {path} have a bbox but no segmentation: "
                            "their instance mask is the box rectangle")
    return ds


def open_coco(root: Path, split: str | None = None, annotations: str | None = None,
              thermal_dir: str = "thermal") -> PairDataset:
    """Generic paired COCO layout.

    Layout::

        root/[split/]annotations.json   COCO; images[i].file_name relative to root[/split]
        root/[split/]<file_name>        RGB image
        root/[split/]<thermal_file>     thermal image: images[i].thermal_file if present,
                                        else thermal_dir/<basename of file_name>

    Optional per image ``homography`` (3x3 thermal -> RGB); per annotation
    ``visible_rgb`` / ``visible_thermal``. Class names come from ``categories`` (by id order).

    Instance masks: an annotation's ``segmentation`` (polygons ``[[x1, y1, ...], ...]`` or
    RLE ``{"size": [h, w], "counts": str | [int]}``) becomes ``PairSample.masks``; when some
    annotations have one, the others get their box rectangle (counted in ``notes``); when
    none has one, the dataset has no masks (``has_masks`` False). ``iscrowd`` annotations are
    left out of the objects (counted in ``notes``).
    """
    base = root / split if split else root
    ann = base / (annotations or "annotations.json")
    return _parse_coco(ann, base, thermal_dir, "coco")


def open_synth(root: Path, split: str | None = None) -> PairDataset:
    """The synthetic benchmark written by ``dlrmamba data gen`` (see docs/data.md).

    Layout::

        root/dataset.json
        root/<split>/annotations.json  COCO + thermal_file, homography, scene, condition,
                                       visible_rgb / visible_thermal
        root/<split>/rgb/<id>.jpg, thermal/<id>.png (uint16), labels/<id>.txt (YOLO)
    """
    info_path = root / "dataset.json"
    if not info_path.is_file():
        raise DatasetError(f"{info_path} not found: {root} is not a synthetic dataset "
                           "(generate one with `dlrmamba data gen --out DIR`)")
    info = json.loads(info_path.read_text())
    if split is None:
        split = next(iter(info.get("splits", {"train": 0})))
    if split not in info.get("splits", {}):
        raise DatasetError(f"{root}: no split {split!r}; it has {list(info.get('splits', {}))}")
    ds = _parse_coco(root / split / "annotations.json", root / split, None, "synth")
    ds.root = root
    return ds
