"""Draw recorded detections (e.g. the live node's) over the bag's images, into a video."""

from __future__ import annotations

import bisect
from pathlib import Path

import cv2

from dlrmamba_core.bag import messages as m
from dlrmamba_core.bag.annotate import AnnotatedVideo, draw
from dlrmamba_core.bag.reader import BagReader


def render_detections(bag: str | Path, rgb_topic: str, thermal_topic: str,
                      detections: dict[int, m.FrameDetections], class_names: list[str],
                      out_dir: Path, gt_topic: str | None = None, fps: float = 9.0,
                      name: str = "annotated") -> tuple[Path | None, Path | None]:
    """Write ``<name>.mp4`` (or ``<name>_strip.png``) and ``<name>_preview.png``.

    One frame per RGB image that has detections: the detections (class colour), the ground
    truth of ``gt_topic`` (white) and, as an inset, the thermal image nearest in stamp at or
    before the RGB stamp (the one a pairer would have had).

    Returns:
        (video or strip path, preview path); (None, None) when no frame matched.
    """
    rgb_type = thermal_type = ""
    thermal_stamps: list[int] = []
    thermal_msgs: list[object] = []
    gts: dict[int, m.FrameDetections] = {}
    video = AnnotatedVideo(out_dir / f"{name}.mp4", out_dir / f"{name}_strip.png", fps=fps)
    with BagReader(bag) as reader:
        rgb_type = reader.require_topic(rgb_topic, m.IMAGE_TYPES)
        thermal_type = reader.require_topic(thermal_topic, m.IMAGE_TYPES)
        topics = [rgb_topic, thermal_topic] + ([gt_topic] if gt_topic else [])
        rgb_by_stamp: dict[int, object] = {}
        for bm in reader.messages(topics):
            msg = bm.decode()
            stamp = m.stamp_of(msg)
            if bm.topic == thermal_topic:
                thermal_stamps.append(stamp)
                thermal_msgs.append(msg)
            elif bm.topic == gt_topic:
                gts[stamp] = m.parse_detections(msg, class_names)
            elif stamp in detections:
                rgb_by_stamp[stamp] = msg
    order = sorted(thermal_stamps)
    th_sorted = [thermal_msgs[i] for i in sorted(range(len(thermal_stamps)),
                                                 key=thermal_stamps.__getitem__)]
    for stamp in sorted(rgb_by_stamp):
        rgb = m.decode_rgb(rgb_by_stamp[stamp], rgb_type, rgb_topic)
        k = bisect.bisect_right(order, stamp + 50_000_000) - 1  # nearest earlier (+slop)
        thermal = (m.decode_thermal(th_sorted[k], thermal_type, thermal_topic)
                   if k >= 0 else None)
        det = detections[stamp]
        video.add(draw(rgb, det, gts.get(stamp), class_names,
                       f"t={stamp / 1e9:.3f}s  {len(det)} det", thermal))
    path = video.close()
    preview = None
    frame = video.preview_frame()
    if frame is not None:
        preview = out_dir / f"{name}_preview.png"
        cv2.imwrite(str(preview), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    return path, preview
