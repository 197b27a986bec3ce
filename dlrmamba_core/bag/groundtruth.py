"""Ground truth for bag evaluation: a Detection2DArray topic, a COCO JSON or YOLO labels.

Ground truth is keyed by the **RGB image stamp** (ns):

* topic: ``vision_msgs/Detection2DArray`` whose header stamp is the RGB image's stamp,
  ``class_id`` the class name;
* COCO JSON: every image has ``"stamp_ns"`` (int) or a ``file_name`` whose stem is the stamp in
  ns (``1700000000123456789.png``); categories by name; annotations with a ``segmentation``
  (polygons or RLE, in RGB pixels) give instance masks (a frame has masks when every one of
  its objects has one);
* YOLO: a directory of ``<stamp_ns>.txt`` files, one ``class cx cy w h`` line per object
  (normalized to 0..1 of the RGB image), class names in ``classes.txt`` (one per line) or, if
  absent, the model's class map.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from dlrmamba_core.bag.messages import FrameDetections
from dlrmamba_core.data.readers.yolo import yolo_row_problem
from dlrmamba_core.errors import BagError, InputError


class GroundTruth:
    """Ground truth per RGB stamp. ``get(stamp_ns, width, height)`` returns it in pixels."""

    def __init__(self, source: str) -> None:
        self.source = source
        self._frames: dict[int, FrameDetections] = {}
        # YOLO: normalized (cx, cy, w, h) + names, converted once the image size is known.
        self._normalized: dict[int, tuple[np.ndarray, list[str]]] = {}
        # COCO segmentation per stamp, one entry per object (None: that object has none).
        self._segmentation: dict[int, list[Any]] = {}
        #: COCO annotations marked ``iscrowd`` that were left out (not objects to detect).
        self.crowd_skipped = 0

    def __len__(self) -> int:
        return len(self._frames) + len(self._normalized)

    def stamps(self) -> set[int]:
        """All stamps (ns) that have ground truth."""
        return set(self._frames) | set(self._normalized)

    def add(self, frame: FrameDetections) -> None:
        """Add (or replace) the ground truth of one RGB stamp."""
        self._frames[frame.stamp_ns] = frame

    def get(self, stamp_ns: int, width: int, height: int) -> FrameDetections | None:
        """The ground truth of the RGB image with this stamp, in its pixels, or None."""
        if stamp_ns in self._frames:
            return self._frames[stamp_ns]
        if stamp_ns in self._normalized:
            cxcywh, names = self._normalized[stamp_ns]
            boxes = np.empty((len(names), 4), np.float64)
            boxes[:, 0] = (cxcywh[:, 0] - cxcywh[:, 2] / 2) * width
            boxes[:, 1] = (cxcywh[:, 1] - cxcywh[:, 3] / 2) * height
            boxes[:, 2] = (cxcywh[:, 0] + cxcywh[:, 2] / 2) * width
            boxes[:, 3] = (cxcywh[:, 1] + cxcywh[:, 3] / 2) * height
            return FrameDetections(stamp_ns, "", boxes.astype(np.float32),
                                   np.ones(len(names), np.float32), names)
        return None

    @property
    def has_masks(self) -> bool:
        """Whether some frame has an instance mask for every one of its objects."""
        return any(segs and all(sg is not None for sg in segs)
                   for segs in self._segmentation.values())

    def masks(self, stamp_ns: int, width: int, height: int) -> list[dict[str, Any]] | None:
        """The instance masks of one frame as COCO RLE (``data.masks.rle_encode``) in its
        ``width`` x ``height`` pixels, one per object in the order of :meth:`get`'s boxes;
        None when the frame has no ground truth or an object of it has no segmentation.

        Raises:
            BagError: a segmentation that does not fit the image (an RLE of another size).
        """
        from dlrmamba_core.data.masks import decode_segmentation, render_masks, rle_encode

        segs = self._segmentation.get(stamp_ns)
        frame = self._frames.get(stamp_ns)
        if segs is None or frame is None or any(sg is None for sg in segs):
            return None
        try:
            sources = [decode_segmentation(sg, (height, width)) for sg in segs]
            stack = render_masks(sources, (height, width))  # (M, H, W)
        except InputError as exc:
            raise BagError(f"ground truth {self.source} at stamp {stamp_ns}: {exc}") from exc
        return [rle_encode(mk) for mk in stack]

    @classmethod
    def from_file(cls, path: str | Path, class_names: list[str]) -> GroundTruth:
        """Read a COCO JSON file or a YOLO label directory (see the module docstring).

        Raises:
            BagError: unreadable file, unknown layout, or a stamp/class that cannot be parsed.
        """
        p = Path(path)
        if not p.exists():
            raise BagError(f"ground truth {p} is neither a topic of the bag nor an existing file")
        if p.is_dir():
            return cls._from_yolo(p, class_names)
        if p.suffix.lower() == ".json":
            return cls._from_coco(p)
        raise BagError(f"ground truth {p}: expected a COCO .json file or a YOLO label directory")

    @classmethod
    def _from_coco(cls, p: Path) -> GroundTruth:
        try:
            data = json.loads(p.read_text())
            cats = {int(c["id"]): str(c["name"]) for c in data["categories"]}
            images = data["images"]
            anns = data["annotations"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise BagError(f"ground truth {p}: not a COCO detection JSON ({exc}); it needs "
                           "images, annotations and categories") from exc
        gt = cls(str(p))
        by_id: dict[int, int] = {}
        for img in images:
            stamp = img.get("stamp_ns")
            if stamp is None:
                stem = Path(str(img.get("file_name", ""))).stem
                if not stem.isdigit():
                    raise BagError(f"ground truth {p}: image {img.get('id')} has no stamp_ns and "
                                   f"its file_name {img.get('file_name')!r} is not <stamp_ns>.*")
                stamp = int(stem)
            by_id[int(img["id"])] = int(stamp)
            gt.add(FrameDetections(int(stamp), "", np.zeros((0, 4), np.float32),
                                   np.zeros(0, np.float32), []))
            gt._segmentation[int(stamp)] = []
        for i, a in enumerate(anns):
            if a.get("iscrowd"):
                # A crowd region is not one object to find: left out, as the coco reader
                # does (COCO scoring would otherwise count it as a missed detection).
                gt.crowd_skipped += 1
                continue
            try:
                stamp = by_id[int(a["image_id"])]
                x, y, w, h = (float(v) for v in a["bbox"])
                name = cats[int(a["category_id"])]
            except (KeyError, ValueError, TypeError) as exc:
                raise BagError(
                    f"ground truth {p}: annotation #{i} is malformed ({exc!r})") from exc
            f = gt._frames[stamp]
            f.boxes = np.concatenate([f.boxes, np.array([[x, y, x + w, y + h]], np.float32)])
            f.scores = np.ones(len(f.boxes), np.float32)
            f.class_names.append(name)
            gt._segmentation[stamp].append(a.get("segmentation") or None)
        return gt

    @classmethod
    def _from_yolo(cls, d: Path, class_names: list[str]) -> GroundTruth:
        names_file = d / "classes.txt"
        names = ([ln.strip() for ln in names_file.read_text().splitlines() if ln.strip()]
                 if names_file.is_file() else list(class_names))
        gt = cls(str(d))
        files = sorted(f for f in d.glob("*.txt") if f.name != "classes.txt")
        if not files:
            raise BagError(f"ground truth {d}: no <stamp_ns>.txt YOLO label files in it")
        for f in files:
            if not f.stem.isdigit():
                raise BagError(f"ground truth {f}: file name must be <stamp_ns>.txt")
            rows = []
            labels = []
            for ln_no, line in enumerate(f.read_text().splitlines(), start=1):
                if not line.strip():
                    continue
                parts = line.split()
                try:
                    c = int(parts[0])
                    vals = [float(v) for v in parts[1:5]]
                    if len(vals) != 4:
                        raise ValueError("need 5 values")
                    if c < 0:
                        raise IndexError(f"class {c} < 0")
                    label = names[c]
                except (ValueError, IndexError) as exc:
                    raise BagError(f"ground truth {f}:{ln_no}: expected 'class cx cy w h' with a "
                                   f"class in 0..{len(names) - 1} ({exc})") from exc
                problem = yolo_row_problem(*vals)
                if problem is not None:
                    raise BagError(f"ground truth {f}:{ln_no}: {problem}: {line.strip()!r}")
                rows.append(vals)
                labels.append(label)
            # float64 until the pixel boxes exist, so w / 96 * 96 comes back as the same pixel.
            gt._normalized[int(f.stem)] = (np.array(rows, np.float64).reshape(-1, 4), labels)
        return gt
