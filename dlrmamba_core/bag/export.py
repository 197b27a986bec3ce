"""``dlrmamba bag-export``: the RGB + thermal pairs of a rosbag as two PNG folders (to label).

The pairs are the ones ``bag-eval`` (and the node) would form: the RGB and thermal messages
are fed in log-time order to the same
:class:`~dlrmamba_core.runtime.pairing.ApproximateTimePairer`, with the same slop and queue
size defaults. Every ``--every``-th pair is decoded (Image or CompressedImage, as ``bag-eval``
decodes them) and written to ``--out``::

    out/rgb/<rgb_stamp_ns>.png       RGB, 8-bit colour
    out/thermal/<rgb_stamp_ns>.png   thermal, 16-bit PNG for mono16 (values kept), else 8-bit
    out/pairs.csv                    stem, rgb_stamp_ns, thermal_stamp_ns, skew_ms
    out/export.json                  bag, topics, pairing options and statistics, counts

Both files of a pair are named by the **RGB stamp** (ns, 19 digits: name order is time
order). YOLO labels saved as ``labels/<stem>.txt`` beside them then serve both
``dlrmamba finetune --data-format yolo:thermal_dir=thermal`` and, for the same bag,
``dlrmamba bag-eval --gt labels/`` (ground truth keyed by RGB stamp). The output directory
appears complete or not at all.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
import csv
from dataclasses import dataclass, field
import json
from pathlib import Path
from typing import Any

import numpy as np

from dlrmamba_core.errors import BagError, ConfigError

__all__ = ["ExportResult", "export_pairs", "iter_bag_pairs", "register"]

#: pairing defaults of ``bag-eval`` and of the node (``sync_slop_s`` / ``sync_queue_size``)
DEFAULT_SLOP_S = 0.05
DEFAULT_QUEUE_SIZE = 10


@dataclass
class ExportResult:
    """What :func:`export_pairs` wrote.

    Attributes:
        out: the output directory.
        pairs_formed: pairs the pairing formed over the whole bag.
        stems: file stems written (RGB stamps in ns, as strings), in time order.
        pairing: the pairer's statistics (received / paired / dropped per stream).
        duplicates: pairs skipped because their RGB stamp (the file name) was already written.
    """

    out: Path
    pairs_formed: int
    stems: list[str] = field(default_factory=list)
    pairing: dict[str, Any] = field(default_factory=dict)
    duplicates: int = 0


def iter_bag_pairs(reader: Any, rgb_topic: str, thermal_topic: str, pairer: Any
                   ) -> Iterator[Any]:
    """The pairs of a bag as ``bag-eval`` forms them: every RGB / thermal message in log-time
    order into ``pairer`` (an ``ApproximateTimePairer``), each completed pair yielded.

    Args:
        reader: an open :class:`~dlrmamba_core.bag.reader.BagReader`.
        rgb_topic: RGB Image / CompressedImage topic.
        thermal_topic: thermal Image / CompressedImage topic.
        pairer: the pairer (its ``stats`` count what was received, paired and dropped).

    Yields:
        ``runtime.pairing.Pair`` of :class:`~dlrmamba_core.bag.reader.BagMessage`.
    """
    from dlrmamba_core.bag import messages as m

    for bm in reader.messages([rgb_topic, thermal_topic]):
        stream = "rgb" if bm.topic == rgb_topic else "thermal"
        yield from pairer.add(stream, m.stamp_of(bm.decode()), bm)


def export_pairs(bag: str | Path, out: str | Path, rgb_topic: str, thermal_topic: str,
                 every: int = 1, slop_s: float = DEFAULT_SLOP_S,
                 queue_size: int = DEFAULT_QUEUE_SIZE, overwrite: bool = False
                 ) -> ExportResult:
    """Write every ``every``-th RGB + thermal pair of ``bag`` as PNGs (see the module
    docstring).

    Args:
        bag: rosbag2 directory or .db3 / .mcap file.
        out: output directory (must not exist unless ``overwrite``).
        rgb_topic: RGB Image / CompressedImage topic.
        thermal_topic: thermal Image / CompressedImage topic (mono8 / mono16).
        every: keep pair 0, every, 2 * every, ... of the pairs formed (>= 1).
        slop_s: pairing slop (s), as ``bag-eval --slop`` and the node's ``sync_slop_s``.
        queue_size: pairing queue size, as ``bag-eval --queue-size``.
        overwrite: replace an existing ``out``.

    Returns:
        An :class:`ExportResult`.

    Raises:
        ConfigError: ``every`` < 1, ``slop_s`` <= 0 or ``queue_size`` < 1.
        BagError: a missing topic or one that is not an image, an unusable encoding, a
            corrupt bag, no pair formed, ``out`` exists (without ``overwrite``) or a PNG that
            cannot be written.
    """
    import cv2

    from dlrmamba_core.bag import messages as m
    from dlrmamba_core.bag.outdir import AtomicDir
    from dlrmamba_core.bag.reader import BagReader
    from dlrmamba_core.runtime.pairing import ApproximateTimePairer

    if every < 1:
        raise ConfigError(f"--every {every}: keep every N-th pair with N >= 1 (1 = all)")
    if not slop_s > 0 or queue_size < 1:
        raise ConfigError(f"--slop {slop_s} / --queue-size {queue_size}: the slop must be > 0 s "
                          "and the queue size >= 1 (bag-eval's defaults: 0.05, 10)")
    bag = Path(bag)
    with BagReader(bag) as reader:
        rgb_type = reader.require_topic(rgb_topic, m.IMAGE_TYPES)
        thermal_type = reader.require_topic(thermal_topic, m.IMAGE_TYPES)
        target = AtomicDir(out, overwrite=overwrite)
        try:
            for sub in ("rgb", "thermal"):
                (target.tmp / sub).mkdir()
            pairer: ApproximateTimePairer[Any] = ApproximateTimePairer(
                queue_size=queue_size, slop_s=slop_s)
            rows: list[list[Any]] = []
            seen: set[str] = set()
            duplicates = 0
            formed = 0
            kinds: dict[str, str] = {}
            for pair in iter_bag_pairs(reader, rgb_topic, thermal_topic, pairer):
                formed += 1
                if (formed - 1) % every:
                    continue
                rgb = m.decode_rgb(pair.rgb.decode(), rgb_type, f"topic {rgb_topic}")
                thermal = m.decode_thermal(pair.thermal.decode(), thermal_type,
                                           f"topic {thermal_topic}")
                stem = f"{pair.rgb_stamp_ns:019d}"
                if stem in seen:
                    # Two pairs with one RGB stamp (a driver that repeats stamps): the files
                    # are named by it, so the second is skipped and counted, not overwritten.
                    duplicates += 1
                    continue
                seen.add(stem)
                _write_png(target.tmp / "rgb" / f"{stem}.png",
                           np.ascontiguousarray(rgb[..., ::-1]), cv2)  # RGB -> BGR for OpenCV
                _write_png(target.tmp / "thermal" / f"{stem}.png", thermal, cv2)
                kinds.setdefault("rgb", f"{rgb.shape[1]}x{rgb.shape[0]} uint8 RGB")
                kinds.setdefault("thermal", f"{thermal.shape[1]}x{thermal.shape[0]} "
                                            f"{thermal.dtype}")
                rows.append([stem, pair.rgb_stamp_ns, pair.thermal_stamp_ns,
                             round(pair.skew_ns / 1e6, 3)])
            if not rows:
                st = pairer.stats
                raise BagError(
                    f"{bag}: no RGB/thermal pair matched on {rgb_topic} + {thermal_topic} with "
                    f"slop {slop_s} s and queue size {queue_size} (rgb {st.rgb.received} msgs, "
                    f"thermal {st.thermal.received} msgs): check the topics, or raise --slop "
                    "if the cameras' stamps differ more than that")
            with (target.tmp / "pairs.csv").open("w", newline="") as fh:
                w = csv.writer(fh)
                w.writerow(["stem", "rgb_stamp_ns", "thermal_stamp_ns", "skew_ms"])
                w.writerows(rows)
            summary = {
                "bag": str(bag), "rgb_topic": rgb_topic, "thermal_topic": thermal_topic,
                "slop_s": slop_s, "queue_size": queue_size, "every": every,
                "pairs_formed": formed, "pairs_exported": len(rows),
                "skipped_duplicate_rgb_stamps": duplicates, "images": kinds,
                "pairing": pairer.stats.as_dict()}
            (target.tmp / "export.json").write_text(json.dumps(summary, indent=2) + "\n")
            final = target.commit()
        except BaseException:
            target.discard()
            raise
    return ExportResult(final, formed, [r[0] for r in rows], pairer.stats.as_dict(),
                        duplicates)


def _write_png(path: Path, img: np.ndarray, cv2: Any) -> None:
    """Write ``img`` (uint8 or uint16, grey or BGR) as a lossless PNG."""
    if not cv2.imwrite(str(path), img):
        raise BagError(f"could not write {path} ({img.dtype} {img.shape}); check the disk "
                       "space and permissions of --out")


def _cmd(args: argparse.Namespace) -> int:
    res = export_pairs(args.bag, args.out, args.rgb, args.thermal, every=args.every,
                       slop_s=args.slop, queue_size=args.queue_size, overwrite=args.overwrite)
    rgb, th = res.pairing["rgb"], res.pairing["thermal"]
    print(f"exported {len(res.stems)} of {res.pairs_formed} pairs (every {args.every}) to "
          f"{res.out}/rgb/ and thermal/ (<rgb_stamp_ns>.png), pairs.csv, export.json")
    print(f"pairing: rgb {rgb['received']} received, {rgb['dropped']} dropped; thermal "
          f"{th['received']} received, {th['dropped']} dropped")
    if res.duplicates:
        print(f"skipped {res.duplicates} pairs whose RGB stamp was already exported (the "
              "camera driver repeats stamps; the files are named by the stamp)")
    return 0


def register(subparsers: Any) -> None:
    """Add ``bag-export`` to the ``dlrmamba`` command."""
    p = subparsers.add_parser(
        "bag-export", help="write the RGB + thermal pairs of a rosbag as PNG folders",
        description="Pair the RGB and thermal frames of a rosbag2 exactly as bag-eval and the "
                    "node do, and write every N-th pair as out/rgb/<stamp>.png and "
                    "out/thermal/<stamp>.png (16-bit thermal kept), for labelling and "
                    "dlrmamba finetune (docs/finetune.md).")
    p.add_argument("bag", type=Path, help="rosbag2 directory or .db3/.mcap file")
    p.add_argument("--rgb", required=True, metavar="TOPIC",
                   help="RGB Image/CompressedImage topic, e.g. /camera/rgb/image_raw")
    p.add_argument("--thermal", required=True, metavar="TOPIC",
                   help="thermal topic, e.g. /camera/thermal/image_raw")
    p.add_argument("--out", type=Path, required=True, help="output directory to create")
    p.add_argument("--every", type=int, default=1, metavar="N",
                   help="keep every N-th pair (default 1: all); consecutive frames are "
                        "near-duplicates, so spread the labelling effort")
    p.add_argument("--slop", type=float, default=DEFAULT_SLOP_S,
                   help=f"pairing slop, s (default {DEFAULT_SLOP_S}, as bag-eval)")
    p.add_argument("--queue-size", type=int, default=DEFAULT_QUEUE_SIZE,
                   help=f"pairing queue (default {DEFAULT_QUEUE_SIZE}, as bag-eval)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.set_defaults(func=_cmd)
