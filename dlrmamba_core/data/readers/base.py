"""Common machinery of the dataset readers (numpy/OpenCV; no torch)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from dlrmamba_core.data.masks import MaskSource, render_masks
from dlrmamba_core.data.types import PairSample
from dlrmamba_core.errors import DatasetError, InputError

__all__ = [
    "IMAGE_EXTS",
    "Entry",
    "PairDataset",
    "as_bool",
    "box_polygon",
    "class_index",
    "list_images",
    "read_rgb",
    "read_thermal",
    "read_thermal_raw",
    "require_dir",
    "thermal_to_gray",
]

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")


@dataclass
class Entry:
    """One pair as found on disk (images are read lazily by :class:`PairDataset`).

    Attributes:
        image_id: stable id (usually the file stem).
        rgb_path: path of the RGB image.
        thermal_path: path of the thermal image.
        boxes: (N, 4) float32 xyxy in RGB pixels.
        labels: (N,) int64 class indices.
        homography: (3, 3) thermal -> RGB or None (registered pair).
        visible: (N, 2) bool or None.
        crop: optional (x0, y0, x1, y1) applied to both images when read (e.g. borders);
            boxes are already in the cropped frame.
        meta: extras.
        masks: one :data:`~dlrmamba_core.data.masks.MaskSource` per object (polygons in RGB
            pixels of the cropped frame, or a COCO RLE of the cropped frame's size), rasterized
            when the pair is read; None when the dataset has no instance masks.
    """

    image_id: str
    rgb_path: Path
    thermal_path: Path
    boxes: np.ndarray
    labels: np.ndarray
    homography: np.ndarray | None = None
    visible: np.ndarray | None = None
    crop: tuple[int, int, int, int] | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    masks: list[MaskSource] | None = None


class PairDataset:
    """A list of RGB + thermal pairs with labels (the reader interface).

    Attributes:
        entries: the pairs found.
        class_names: class names (label i -> class_names[i]).
        unpaired: paths of images without a partner in the other modality (never dropped
            silently: reported here and by ``dlrmamba data stats``).
        name: the format name.
        root: the dataset root.
        notes: what the reader decided on its own (a split fallback, boxes clipped ...).
    """

    def __init__(self, name: str, root: Path, entries: list[Entry], class_names: list[str],
                 unpaired: list[str]) -> None:
        self.name = name
        self.root = root
        self.entries = entries
        self.class_names = class_names
        self.unpaired = unpaired
        #: what the reader decided on its own (split fallback, clipped boxes ...), for the CLI
        self.notes: list[str] = []

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def has_masks(self) -> bool:
        """Whether the pairs carry instance masks (``PairSample.masks`` is not None)."""
        return any(e.masks is not None for e in self.entries)

    def __getitem__(self, i: int) -> PairSample:
        return self.load(i)

    def load(self, i: int, masks: bool = True) -> PairSample:
        """Pair ``i``; ``masks=False`` skips rasterizing its instance masks (detection only).

        Raises:
            IndexError: ``i`` out of range.
            DatasetError: an image is unreadable, or a mask does not fit the RGB image.
        """
        if not -len(self.entries) <= i < len(self.entries):
            raise IndexError(f"{self.name} dataset index {i} out of range ({len(self)} pairs)")
        e = self.entries[i]
        rgb = read_rgb(e.rgb_path)
        thermal = read_thermal(e.thermal_path)
        if e.crop is not None:
            x0, y0, x1, y1 = e.crop
            rgb = rgb[y0:y1, x0:x1]
            thermal = thermal[y0:y1, x0:x1]
        mask_arr = None
        if masks and e.masks is not None:
            try:
                mask_arr = render_masks(e.masks, rgb.shape[:2])
            except InputError as exc:
                raise DatasetError(f"{self.name}: instance mask of {e.rgb_path}: {exc}; fix "
                                   "the annotation or the image") from exc
        return PairSample(
            rgb=rgb, thermal=thermal, boxes=e.boxes, labels=e.labels, homography=e.homography,
            image_id=e.image_id, visible=e.visible,
            meta={**e.meta, "rgb_path": str(e.rgb_path), "thermal_path": str(e.thermal_path)},
            masks=mask_arr,
        )

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.name!r}, root={str(self.root)!r}, "
                f"pairs={len(self)}, unpaired={len(self.unpaired)})")


def as_bool(value: bool | int | str, name: str) -> bool:
    """A reader option given as ``1/0``, ``true/false`` or ``yes/no`` (``--data-format``)."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise DatasetError(f"reader option {name}={value!r}: use 1 or 0 (e.g. yolo:{name}=1)")


def require_dir(path: Path, what: str) -> Path:
    """Return ``path`` if it is a directory, else raise DatasetError naming it."""
    if not path.is_dir():
        raise DatasetError(f"{what}: directory {path} not found; check the dataset root "
                           "(--data, or --root for `dlrmamba data`) and --data-format against "
                           "the layouts in docs/data_formats.md")
    return path


def list_images(folder: Path) -> dict[str, Path]:
    """Map file stem -> path for the images directly inside ``folder`` (sorted)."""
    out: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.is_file() and p.suffix.lower() in IMAGE_EXTS:
            out[p.stem] = p
    return out


def read_rgb(path: Path) -> np.ndarray:
    """Read an image as (H, W, 3) uint8 RGB; DatasetError naming the file if unreadable."""
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise DatasetError(f"cannot read RGB image {path} (missing or not an image)")
    return img[..., ::-1].copy()


def read_thermal_raw(path: Path) -> np.ndarray:
    """Read a thermal image file as stored: (H, W) or (H, W, 3) BGR, uint8 or uint16.

    Use :func:`thermal_to_gray` to get the detector's input; the raw array lets a caller check
    whether a 3-channel file is grey saved as RGB or really colour
    (``runtime.input_checks.check_pair``).
    """
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise DatasetError(f"cannot read thermal image {path} (missing or not an image)")
    if img.dtype not in (np.uint8, np.uint16):
        raise DatasetError(f"thermal image {path} has dtype {img.dtype}: expected 8/16-bit")
    if img.ndim == 3 and img.shape[2] == 4:
        img = img[..., :3]
    return img


def thermal_to_gray(img: np.ndarray) -> np.ndarray:
    """(H, W) unchanged; (H, W, 1) squeezed; (H, W, 3) BGR converted to grey."""
    if img.ndim == 3 and img.shape[2] == 1:
        return img[..., 0]
    if img.ndim == 3:
        return cv2.cvtColor(img[..., :3], cv2.COLOR_BGR2GRAY)
    return img


def read_thermal(path: Path) -> np.ndarray:
    """Read a thermal image keeping its bit depth: (H, W) uint16 or uint8.

    3-channel files (8-bit false-colour or grey saved as RGB) are converted to grey.
    """
    return thermal_to_gray(read_thermal_raw(path))


def class_index(name: str, class_names: Sequence[str], aliases: dict[str, str],
                where: str) -> int:
    """Index of ``name`` (after ``aliases``, case-insensitive) in ``class_names``."""
    key = aliases.get(name.strip().lower(), name.strip().lower())
    lowered = [c.lower() for c in class_names]
    if key not in lowered:
        raise DatasetError(
            f"{where}: unknown class {name!r}; this format's classes are "
            f"{list(class_names)}: fix the annotation, or convert the dataset to the yolo "
            "layout with its own classes.txt (docs/data_formats.md)"
        )
    return lowered.index(key)


def box_polygon(box: Sequence[float]) -> list[np.ndarray]:
    """The rectangle of an xyxy box as a one-polygon :data:`MaskSource` (the mask of an
    object whose annotation has a box but no outline, in a dataset with masks)."""
    x1, y1, x2, y2 = (float(v) for v in box)
    return [np.float32([[x1, y1], [x2, y1], [x2, y2], [x1, y2]])]


def boxes_array(rows: list[list[float]]) -> np.ndarray:
    """(N, 4) float32 from a list of xyxy rows (N may be 0)."""
    return np.asarray(rows, np.float32).reshape(-1, 4)


def no_objects() -> tuple[np.ndarray, np.ndarray]:
    """Empty (boxes (0, 4) float32, labels (0,) int64)."""
    return boxes_array([]), np.zeros(0, np.int64)


def parse_if_present(path: Path, parse: Any) -> tuple[np.ndarray, np.ndarray]:
    """``parse(path)`` when the annotation file exists; a missing file means no objects."""
    return parse(path) if path.is_file() else no_objects()
