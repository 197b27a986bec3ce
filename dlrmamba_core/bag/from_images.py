"""``dlrmamba make-bag``: a rosbag2 from an RGB folder and a thermal folder (real cameras).

Replays recorded or published image pairs through the real node (``dlrmamba bag-play``) and
``dlrmamba bag-eval``. Two ways to name the images:

* ``--rgb DIR --thermal DIR [--labels DIR]``: pairs by file stem (``010001.jpg`` in both);
  optional YOLO labels ``<stem>.txt`` (``cls cx cy w h`` normalized, RGB frame) with class
  names from ``--classes`` or a ``classes.txt`` in the labels folder or above it;
* ``--data ROOT --data-format FMT``: any dataset reader (``yolo:thermal_dir=ir``, ``llvip``,
  ``dronevehicle``, ...) with its labels and class map.

Frames are written in file-stem order with stamps ``start + i / rate`` (RGB); the thermal
frame of a pair gets the same stamp plus ``--thermal-offset-ms`` (a real rig's cameras are
not triggered together: a few ms of offset exercises the node's approximate-time pairing).
Topics are those of ``synth-bag`` (``/camera/rgb/image_raw`` rgb8, ``/camera/thermal/
image_raw`` mono8/mono16, ground truth ``/ground_truth/detections`` whose header is the RGB
header). 3-channel thermal files with equal channels become mono8. ``--scale`` shrinks both
images (and the boxes) to keep bags of high-resolution cameras small. The bag's custom data
says it is NOT synthetic and where the images came from.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from dataclasses import dataclass
import json
from pathlib import Path
from typing import Any

import numpy as np

from dlrmamba_core.errors import BagError, ConfigError, DatasetError

__all__ = ["FramePair", "make_bag", "pairs_from_dataset", "pairs_from_folders", "register"]


@dataclass
class FramePair:
    """One RGB + thermal pair to write.

    Attributes:
        stem: file stem / image id.
        rgb: (H, W, 3) uint8, RGB order.
        thermal: (Ht, Wt) uint8 or uint16.
        boxes: (N, 4) float32 xyxy RGB pixels, or None (no labels).
        labels: (N,) int64 class indices, or None.
    """

    stem: str
    rgb: np.ndarray
    thermal: np.ndarray
    boxes: np.ndarray | None = None
    labels: np.ndarray | None = None


def _class_names_near(labels: Path, given: str | None) -> list[str] | None:
    if given:
        p = Path(given)
        if p.is_file():
            return [ln.strip() for ln in p.read_text().splitlines() if ln.strip()]
        return [n.strip() for n in given.split(",") if n.strip()]
    for d in (labels, labels.parent):
        f = d / "classes.txt"
        if f.is_file():
            return [ln.strip() for ln in f.read_text().splitlines() if ln.strip()]
    return None


def pairs_from_folders(rgb_dir: str | Path, thermal_dir: str | Path,
                       labels_dir: str | Path | None = None, classes: str | None = None
                       ) -> tuple[list[str], list[Path], Iterator[FramePair]]:
    """Pairs of two image folders by stem (see the module docstring).

    Returns:
        (class names (empty without labels), files without a partner, lazy pairs).

    Raises:
        DatasetError: a folder is missing, no stem is in both, or labels without class names.
    """
    from dlrmamba_core.data.readers.base import list_images, read_rgb, read_thermal, require_dir
    from dlrmamba_core.data.readers.yolo import parse_yolo_txt

    rgb = list_images(require_dir(Path(rgb_dir), "make-bag RGB folder"))
    th = list_images(require_dir(Path(thermal_dir), "make-bag thermal folder"))
    stems = sorted(set(rgb) & set(th))
    unpaired = sorted([p for s, p in rgb.items() if s not in th]
                      + [p for s, p in th.items() if s not in rgb])
    if not stems:
        raise DatasetError(f"make-bag: no file stem is in both {rgb_dir} ({len(rgb)} images) "
                           f"and {thermal_dir} ({len(th)} images); pairs need equal names")
    names: list[str] = []
    lab = None
    if labels_dir is not None:
        lab = require_dir(Path(labels_dir), "make-bag labels folder")
        found = _class_names_near(lab, classes)
        if not found:
            raise DatasetError(f"make-bag: labels in {lab} but no class names; pass --classes "
                               "a,b,c or a classes.txt file (one name per line)")
        names = found

    def gen() -> Iterator[FramePair]:
        for s in stems:
            img = read_rgb(rgb[s])
            t = read_thermal(th[s])
            boxes = labels = None
            if lab is not None:
                f = lab / f"{s}.txt"
                if f.is_file():
                    boxes, labels, _ = parse_yolo_txt(f, img.shape[1], img.shape[0],
                                                      len(names))
                else:
                    boxes, labels = np.zeros((0, 4), np.float32), np.zeros(0, np.int64)
            yield FramePair(s, img, t, boxes, labels)

    return names, unpaired, gen()


def pairs_from_dataset(data_format: str, root: str | Path, split: str | None = None
                       ) -> tuple[list[str], list[Path], Iterator[FramePair]]:
    """Pairs of a dataset reader, in image-id order, with its labels and class map.

    Raises:
        BagError: the pairs need a homography (make-bag writes registered pairs only).
    """
    from dlrmamba_core.engine.runs import open_pairs

    ds = open_pairs(data_format, root, split)
    order = sorted(range(len(ds)), key=lambda i: ds.entries[i].image_id)

    def gen() -> Iterator[FramePair]:
        for i in order:
            s = ds[i]
            if s.homography is not None:
                raise BagError(f"make-bag: pair {s.image_id} has a thermal->RGB homography; "
                               "write registered pairs, or warp the thermal images first")
            yield FramePair(s.image_id, s.rgb, s.thermal,
                            np.asarray(s.boxes, np.float32), np.asarray(s.labels, np.int64))

    return list(ds.class_names), [Path(p) for p in ds.unpaired], gen()


def _scaled(p: FramePair, scale: float) -> FramePair:
    if scale == 1.0:
        return p
    import cv2

    def resize(img: np.ndarray) -> np.ndarray:
        h, w = img.shape[:2]
        return cv2.resize(img, (max(1, round(w * scale)), max(1, round(h * scale))),
                          interpolation=cv2.INTER_AREA)

    boxes = None if p.boxes is None else np.asarray(p.boxes, np.float32) * scale
    return FramePair(p.stem, resize(p.rgb), resize(p.thermal), boxes, p.labels)


def make_bag(out: str | Path, class_names: list[str], pairs: Iterator[FramePair],
             rate_hz: float = 10.0, start_ns: int = 1_700_000_000_000_000_000,
             thermal_offset_ms: float = 0.0, scale: float = 1.0, storage: str = "sqlite3",
             compressed: bool = False, overwrite: bool = False,
             source: dict[str, Any] | None = None) -> Any:
    """Write ``pairs`` as a rosbag2 (see the module docstring).

    Args:
        out: bag directory to create.
        class_names: class map of the labels (empty: no ground-truth topic content).
        pairs: the frames, in the order to play them.
        rate_hz: frames per second (RGB stamps ``start_ns + i * 1e9 / rate_hz``).
        start_ns: stamp of the first RGB frame (ns).
        thermal_offset_ms: thermal stamp minus RGB stamp of a pair (ms; may be negative).
        scale: resize factor of both images and the boxes (0 < scale <= 1).
        storage: "sqlite3" or "mcap".
        compressed: also write CompressedImage topics.
        overwrite: replace an existing bag.
        source: what the images are (stored in the bag's custom data).

    Returns:
        ``bag.synth.BagSummary`` with ``counts`` per topic.

    Raises:
        ConfigError: rate <= 0, scale outside (0, 1], or an offset of half a frame or more.
    """
    from dlrmamba_core.bag.synth import StreamFrame, write_frames_bag

    if not rate_hz > 0:
        raise ConfigError(f"--rate {rate_hz}: frames per second must be > 0")
    if not 0.0 < scale <= 1.0:
        raise ConfigError(f"--scale {scale}: must be in (0, 1]")
    period_ns = round(1e9 / rate_hz)
    offset_ns = round(thermal_offset_ms * 1e6)
    if abs(offset_ns) * 2 >= period_ns:
        raise ConfigError(f"--thermal-offset-ms {thermal_offset_ms}: must be under half a frame "
                          f"({period_ns / 2e6:.1f} ms at {rate_hz} Hz), or pairs get mixed up")

    def frames() -> Iterator[StreamFrame]:
        for i, p in enumerate(pairs):
            p = _scaled(p, scale)
            stamp = start_ns + i * period_ns
            yield StreamFrame("rgb", stamp, p.rgb, boxes=p.boxes if class_names else None,
                              labels=p.labels if class_names else None)
            yield StreamFrame("thermal", stamp + offset_ns, p.thermal)

    custom = {"dlrmamba.source": json.dumps({**(source or {}), "rate_hz": rate_hz,
                                             "thermal_offset_ms": thermal_offset_ms,
                                             "scale": scale})}
    return write_frames_bag(out, frames(), list(class_names), storage=storage,
                            compressed=compressed, homography=None, synthetic=False,
                            overwrite=overwrite, custom=custom)


def _cmd(args: argparse.Namespace) -> int:
    if args.data is not None:
        if args.rgb or args.thermal or args.labels:
            raise ConfigError("make-bag: pass either --data (with --data-format) or --rgb and "
                              "--thermal folders, not both")
        names, unpaired, pairs = pairs_from_dataset(args.data_format, args.data,
                                                    args.split or None)
        source = {"data": str(args.data), "data_format": args.data_format}
    else:
        if not (args.rgb and args.thermal):
            raise ConfigError("make-bag: pass --rgb DIR and --thermal DIR (or --data ROOT "
                              "--data-format FMT)")
        names, unpaired, pairs = pairs_from_folders(args.rgb, args.thermal, args.labels,
                                                    args.classes)
        source = {"rgb": str(args.rgb), "thermal": str(args.thermal),
                  "labels": None if args.labels is None else str(args.labels)}
    if args.skip or args.limit is not None:
        import itertools

        stop = None if args.limit is None else args.skip + args.limit
        pairs = itertools.islice(pairs, args.skip, stop)
    s = make_bag(args.out, names, pairs, rate_hz=args.rate,
                 thermal_offset_ms=args.thermal_offset_ms, scale=args.scale,
                 storage=args.storage, compressed=args.compressed, overwrite=args.overwrite,
                 source=source)
    print(f"wrote bag {s.path} ({s.storage}, {s.duration_s:.2f} s, not synthetic)")
    for topic, n in s.counts.items():
        print(f"  {topic}: {n} msgs")
    if unpaired:
        print(f"  {len(unpaired)} images without a partner were left out, e.g. {unpaired[:3]}")
    return 0


def register(subparsers: Any) -> None:
    """Add ``make-bag`` to the ``dlrmamba`` command."""
    p = subparsers.add_parser(
        "make-bag", help="write a rosbag2 from an RGB + thermal image folder pair",
        description="Write a rosbag2 from paired RGB and thermal images (equal file stems, "
                    "or any dataset reader), stamped at --rate, with the labels as a "
                    "ground-truth Detection2DArray topic, for bag-play / bag-eval.")
    p.add_argument("out", type=Path, help="bag directory to create")
    p.add_argument("--rgb", type=Path, default=None, help="folder of RGB images")
    p.add_argument("--thermal", type=Path, default=None, help="folder of thermal images")
    p.add_argument("--labels", type=Path, default=None,
                   help="folder of YOLO <stem>.txt labels (RGB frame, normalized)")
    p.add_argument("--classes", default=None,
                   help="class names of the labels: a,b,c or a file with one per line "
                        "(default: classes.txt in the labels folder or its parent)")
    p.add_argument("--data", type=Path, default=None,
                   help="instead of the folders: a dataset root read by --data-format")
    p.add_argument("--data-format", default="yolo",
                   help="reader for --data, e.g. yolo:thermal_dir=ir (default yolo)")
    p.add_argument("--split", default="", help="split for --data ('' = whole folder)")
    p.add_argument("--rate", type=float, default=10.0, help="frames per second (default 10)")
    p.add_argument("--thermal-offset-ms", type=float, default=0.0,
                   help="thermal stamp minus RGB stamp, ms (default 0)")
    p.add_argument("--scale", type=float, default=1.0,
                   help="resize both images by this factor, 0..1 (default 1)")
    p.add_argument("--skip", type=int, default=0, help="leave out the first N pairs")
    p.add_argument("--limit", type=int, default=None, help="at most N pairs (after --skip)")
    p.add_argument("--storage", default="sqlite3", choices=("sqlite3", "mcap"))
    p.add_argument("--compressed", action="store_true",
                   help="also write CompressedImage topics")
    p.add_argument("--overwrite", action="store_true", help="replace an existing bag")
    p.set_defaults(func=_cmd)
