"""COCO-json readers: the generic paired COCO layout and the synthetic benchmark."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from dlrmamba_core.data.readers.base import Entry, PairDataset, boxes_array
from dlrmamba_core.errors import DatasetError

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
                continue
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
    return PairDataset(name, base, entries, class_names, unpaired)


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
