"""Write RGB + thermal image sequences (synthetic or given) into a rosbag2 with ground truth.

Topics written (defaults; the names match the node's default parameters):

* ``/camera/rgb/image_raw`` ``sensor_msgs/Image`` ``rgb8`` at the RGB rate;
* ``/camera/thermal/image_raw`` ``sensor_msgs/Image`` ``mono16`` at the thermal rate;
* with ``compressed``, also ``.../image_raw/compressed`` ``sensor_msgs/CompressedImage``
  (JPEG for RGB, 16-bit PNG for thermal);
* ``/ground_truth/detections`` ``vision_msgs/Detection2DArray`` whose header **is** the RGB
  image header (same stamp and frame id), boxes in RGB pixels, ``class_id`` the class name.

Each stream has its own stamps; a message's log time is its stamp plus a transport delay
(as a recorder would log it). No ``/tf``. The bag's ``custom_data`` says it is synthetic and
carries the class names and the thermal->RGB homography.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
import heapq
import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np

from dlrmamba_core.bag import messages as m
from dlrmamba_core.bag.outdir import AtomicDir
from dlrmamba_core.bag.typestore import get_bag_typestore
from dlrmamba_core.errors import BagError, ConfigError

RGB_TOPIC = "/camera/rgb/image_raw"
THERMAL_TOPIC = "/camera/thermal/image_raw"
GT_TOPIC = "/ground_truth/detections"
COMPRESSED_SUFFIX = "/compressed"
RGB_FRAME = "rgb_camera"
THERMAL_FRAME = "thermal_camera"
#: Transport delays (ns) between a frame's stamp and its log time in the synthetic bags.
RGB_DELAY_NS = 4_000_000
THERMAL_DELAY_NS = 9_000_000
#: Frames are reordered by log time within this window (ns) before writing.
_REORDER_WINDOW_NS = 500_000_000

CUSTOM_SYNTHETIC = "dlrmamba.synthetic"
CUSTOM_CLASSES = "dlrmamba.class_names"
CUSTOM_HOMOGRAPHY = "dlrmamba.homography"
CUSTOM_TOPICS = "dlrmamba.topics"


@dataclass
class StreamFrame:
    """One camera frame to write.

    Attributes:
        stream: "rgb" or "thermal".
        stamp_ns: header stamp (ns).
        image: RGB (H, W, 3) uint8 in RGB order, or thermal (Ht, Wt) uint16 / uint8.
        log_ns: log time (ns); None = stamp + the stream's transport delay.
        boxes: RGB frames only: (N, 4) float32 xyxy ground truth in RGB pixels (or None).
        labels: RGB frames only: (N,) int64 class indices (or None).
    """

    stream: str
    stamp_ns: int
    image: np.ndarray
    log_ns: int | None = None
    boxes: np.ndarray | None = None
    labels: np.ndarray | None = None


@dataclass
class BagSummary:
    """What :func:`write_frames_bag` wrote.

    Attributes:
        path: the bag directory.
        storage: "sqlite3" or "mcap".
        counts: messages per topic.
        duration_s: log-time span (s).
        topics: role -> topic name ("rgb", "thermal", "gt", "rgb_compressed", ...).
    """

    path: Path
    storage: str
    counts: dict[str, int] = field(default_factory=dict)
    duration_s: float = 0.0
    topics: dict[str, str] = field(default_factory=dict)


def _storage_plugin(storage: str) -> Any:
    from rosbags.rosbag2 import StoragePlugin

    plugins = {"sqlite3": StoragePlugin.SQLITE3, "mcap": StoragePlugin.MCAP}
    if storage not in plugins:
        raise BagError(f"unknown bag storage {storage!r}; use one of {sorted(plugins)}")
    return plugins[storage]


def _in_log_order(frames: Iterable[StreamFrame]) -> Iterator[tuple[int, StreamFrame]]:
    """(log_ns, frame) in log-time order; input must be in stamp order within the window."""
    heap: list[tuple[int, int, StreamFrame]] = []
    tie = itertools.count()  # keeps the sort stable and never compares frames
    for f in frames:
        delay = RGB_DELAY_NS if f.stream == "rgb" else THERMAL_DELAY_NS
        log_ns = f.log_ns if f.log_ns is not None else f.stamp_ns + delay
        heapq.heappush(heap, (log_ns, next(tie), f))
        while heap and heap[0][0] < f.stamp_ns - _REORDER_WINDOW_NS:
            log, _, g = heapq.heappop(heap)
            yield log, g
    while heap:
        log, _, g = heapq.heappop(heap)
        yield log, g


def write_frames_bag(
    out: str | Path,
    frames: Iterable[StreamFrame],
    class_names: list[str],
    storage: str = "sqlite3",
    compressed: bool = False,
    homography: np.ndarray | None = None,
    synthetic: bool = True,
    overwrite: bool = False,
    custom: dict[str, str] | None = None,
) -> BagSummary:
    """Write frames (and the ground truth of the RGB frames) to a new rosbag2, atomically.

    Args:
        out: bag directory to create.
        frames: RGB and thermal frames, roughly in stamp order.
        class_names: the class map (label index -> name) of the ground truth.
        storage: "sqlite3" or "mcap".
        compressed: also write CompressedImage topics (JPEG RGB, 16-bit PNG thermal).
        homography: (3, 3) thermal->RGB pixel mapping stored in custom_data, or None.
        synthetic: mark the bag synthetic in its custom_data.
        overwrite: replace an existing ``out``.
        custom: extra custom_data entries.

    Returns:
        A :class:`BagSummary`.

    Raises:
        BagError: ``out`` exists, unknown storage, a frame with a bad stream name or image.
    """
    from rosbags.rosbag2 import Writer

    plugin = _storage_plugin(storage)
    store = get_bag_typestore()
    topics = {"rgb": RGB_TOPIC, "thermal": THERMAL_TOPIC, "gt": GT_TOPIC}
    if compressed:
        topics["rgb_compressed"] = RGB_TOPIC + COMPRESSED_SUFFIX
        topics["thermal_compressed"] = THERMAL_TOPIC + COMPRESSED_SUFFIX
    types = {"rgb": m.IMAGE, "thermal": m.IMAGE, "gt": m.DETECTIONS,
             "rgb_compressed": m.COMPRESSED, "thermal_compressed": m.COMPRESSED}
    target = AtomicDir(out, overwrite=overwrite)
    bag_path = target.tmp / target.dest.name
    counts = dict.fromkeys(topics.values(), 0)
    first = last = None
    writer = Writer(bag_path, version=9, storage_plugin=plugin)
    try:
        writer.open()
        conns = {role: writer.add_connection(t, types[role], typestore=store)
                 for role, t in topics.items()}
        meta = {CUSTOM_SYNTHETIC: "true" if synthetic else "false",
                CUSTOM_CLASSES: json.dumps(list(class_names)),
                CUSTOM_TOPICS: json.dumps(topics)}
        if homography is not None:
            meta[CUSTOM_HOMOGRAPHY] = json.dumps(np.asarray(homography, float).tolist())
        meta.update(custom or {})
        for k, v in meta.items():
            writer.set_custom_data(k, v)

        def put(role: str, log_ns: int, msg: Any) -> None:
            writer.write(conns[role], log_ns, m.serialize(msg, types[role]))
            counts[topics[role]] += 1

        for log_ns, f in _in_log_order(frames):
            first = log_ns if first is None else min(first, log_ns)
            last = log_ns if last is None else max(last, log_ns)
            if f.stream == "rgb":
                if f.image.ndim != 3 or f.image.shape[2] != 3 or f.image.dtype != np.uint8:
                    raise BagError(f"RGB frame at {f.stamp_ns} ns is {f.image.dtype} "
                                   f"{f.image.shape}; expected (H, W, 3) uint8")
                put("rgb", log_ns, m.image_message(f.image, "rgb8", f.stamp_ns, RGB_FRAME))
                if compressed:
                    put("rgb_compressed", log_ns,
                        m.compressed_message(f.image, "rgb8", "jpeg", f.stamp_ns, RGB_FRAME))
                if f.boxes is not None and f.labels is not None:
                    gt = m.FrameDetections(
                        f.stamp_ns, RGB_FRAME, np.asarray(f.boxes, np.float32).reshape(-1, 4),
                        np.ones(len(f.labels), np.float32),
                        [_class_name(class_names, int(c)) for c in f.labels])
                    put("gt", log_ns, m.detections_message(gt))
            elif f.stream == "thermal":
                enc = {np.dtype(np.uint16): "mono16", np.dtype(np.uint8): "mono8"}.get(
                    f.image.dtype)
                if enc is None or f.image.ndim != 2:
                    raise BagError(f"thermal frame at {f.stamp_ns} ns is {f.image.dtype} "
                                   f"{f.image.shape}; expected (H, W) uint16 or uint8")
                put("thermal", log_ns,
                    m.image_message(f.image, enc, f.stamp_ns, THERMAL_FRAME))
                if compressed:
                    put("thermal_compressed", log_ns,
                        m.compressed_message(f.image, enc, "png", f.stamp_ns, THERMAL_FRAME))
            else:
                raise BagError(f"frame stream {f.stream!r} is neither 'rgb' nor 'thermal'")
        writer.close()
    except BaseException:
        if writer.storage is not None:
            writer.abort()
        target.discard()
        raise
    # The storage file keeps the final name (<out>/<out name>.db3|.mcap): move the bag up.
    final_tmp = target.tmp
    target.tmp = bag_path
    target.commit()
    final_tmp.rmdir()
    span = (last - first) / 1e9 if first is not None and last is not None else 0.0
    return BagSummary(target.dest, storage, counts, span, topics)


def _class_name(class_names: list[str], idx: int) -> str:
    if not 0 <= idx < len(class_names):
        raise ConfigError(f"ground-truth label {idx} is outside the class map "
                          f"0..{len(class_names) - 1} {class_names}")
    return class_names[idx]


def write_synthetic_bag(
    out: str | Path,
    duration_s: float = 10.0,
    storage: str = "sqlite3",
    compressed: bool = False,
    seed: int = 0,
    rgb_hz: float = 30.0,
    thermal_hz: float = 9.0,
    size: tuple[int, int] | None = None,
    overwrite: bool = False,
    scene: str | None = None,
    condition: str | None = None,
) -> BagSummary:
    """Write a rosbag2 of a SYNTHETIC sequence (``data.synthetic.generate_sequence``).

    Args:
        out: bag directory to create.
        duration_s: length (s).
        storage: "sqlite3" or "mcap".
        compressed: also write the CompressedImage topics.
        seed: sequence seed.
        rgb_hz: RGB rate (Hz).
        thermal_hz: thermal rate (Hz).
        size: RGB (width, height) px; the thermal camera gets half of each side. None: the
            generator's default sizes.
        overwrite: replace an existing bag.
        scene: force a scene of the generator (None: drawn from the seed).
        condition: force a condition (None: drawn from the seed).

    Returns:
        A :class:`BagSummary`.
    """
    from dlrmamba_core.data.synthetic import (
        SYNTH_CLASSES,
        SynthConfig,
        generate_sequence,
        rig_homography,
        with_sizes,
    )

    _storage_plugin(storage)  # fail on a bad storage before generating anything
    cfg = SynthConfig()
    if size is not None:
        w, h = size
        cfg = with_sizes(cfg, (int(w), int(h)), (max(16, int(w) // 2), max(16, int(h) // 2)))
    seq = generate_sequence(cfg, seed, duration_s=duration_s, rgb_hz=rgb_hz,
                            thermal_hz=thermal_hz, scene=scene, condition=condition)
    frames = (StreamFrame(f.stream, f.stamp_ns, f.image,
                          boxes=f.boxes if f.stream == "rgb" else None,
                          labels=f.labels if f.stream == "rgb" else None) for f in seq)
    custom = {"dlrmamba.generator": json.dumps({
        "function": "dlrmamba_core.data.synthetic.generate_sequence", "seed": seed,
        "duration_s": duration_s, "rgb_hz": rgb_hz, "thermal_hz": thermal_hz,
        "rgb_size": list(cfg.rgb_size), "thermal_size": list(cfg.thermal_size),
        "scene": scene, "condition": condition})}
    return write_frames_bag(out, frames, list(SYNTH_CLASSES), storage=storage,
                            compressed=compressed, homography=rig_homography(cfg),
                            synthetic=True, overwrite=overwrite, custom=custom)


#: ``make demo``'s scenario: a maritime day, then the same kind of scene at night.
DEMO_SEGMENTS: tuple[tuple[str, str, float], ...] = (("maritime", "day", 5.0),
                                                     ("maritime", "night", 5.0))


def write_scenario_bag(
    out: str | Path,
    segments: Sequence[tuple[str, str, float]] = DEMO_SEGMENTS,
    seed: int = 0,
    storage: str = "mcap",
    compressed: bool = False,
    rgb_hz: float = 30.0,
    thermal_hz: float = 9.0,
    size: tuple[int, int] | None = None,
    overwrite: bool = False,
) -> BagSummary:
    """Write a SYNTHETIC bag of several sequences one after the other (e.g. day, then night).

    Args:
        out: bag directory to create.
        segments: (scene, condition, seconds) per segment; segment ``k`` uses seed
            ``seed + k`` and starts ``seconds`` after the previous one started (one RGB
            period after its last frame).
        seed: seed of the first segment.
        storage: "sqlite3" or "mcap".
        compressed: also write the CompressedImage topics.
        rgb_hz: RGB rate (Hz).
        thermal_hz: thermal rate (Hz).
        size: RGB (width, height) px (thermal: half of each side); None: the generator's.
        overwrite: replace an existing bag.

    Returns:
        A :class:`BagSummary`.
    """
    from dlrmamba_core.data.synthetic import (
        SYNTH_CLASSES,
        SynthConfig,
        generate_sequence,
        rig_homography,
        with_sizes,
    )

    _storage_plugin(storage)
    if not segments:
        raise ConfigError("write_scenario_bag: give at least one (scene, condition, seconds)")
    cfg = SynthConfig()
    if size is not None:
        w, h = size
        cfg = with_sizes(cfg, (int(w), int(h)), (max(16, int(w) // 2), max(16, int(h) // 2)))
    start = 1_700_000_000_000_000_000

    def frames() -> Iterator[StreamFrame]:
        t0 = start
        for k, (scene, condition, seconds) in enumerate(segments):
            for f in generate_sequence(cfg, seed + k, duration_s=seconds, rgb_hz=rgb_hz,
                                       thermal_hz=thermal_hz, scene=scene,
                                       condition=condition, start_ns=t0):
                yield StreamFrame(f.stream, f.stamp_ns, f.image,
                                  boxes=f.boxes if f.stream == "rgb" else None,
                                  labels=f.labels if f.stream == "rgb" else None)
            t0 += round(seconds * 1e9)  # its frames end one RGB period before this

    custom = {"dlrmamba.generator": json.dumps({
        "function": "dlrmamba_core.bag.synth.write_scenario_bag", "seed": seed,
        "segments": [list(s) for s in segments], "rgb_hz": rgb_hz, "thermal_hz": thermal_hz,
        "rgb_size": list(cfg.rgb_size), "thermal_size": list(cfg.thermal_size)})}
    return write_frames_bag(out, frames(), list(SYNTH_CLASSES), storage=storage,
                            compressed=compressed, homography=rig_homography(cfg),
                            synthetic=True, overwrite=overwrite, custom=custom)
