"""Conversions between numpy arrays / plain records and rosbags message objects.

Image pixels go through :mod:`dlrmamba_core.runtime.image_codec` (the same code the node uses);
this module only builds and reads the message objects of the rosbags typestore.

Conventions: stamps are integers in nanoseconds; boxes are ``x1, y1, x2, y2`` float32 in RGB
image pixels; ``vision_msgs`` boxes are center + size in the same pixels. The class of a
detection is ``results[0].hypothesis.class_id``: detector output uses the node's convention,
the class **index** as a string with the names in a ``LabelInfo``; the synthetic ground truth
uses the class **name**. :func:`parse_detections` accepts both.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dlrmamba_core.bag.typestore import get_bag_typestore
from dlrmamba_core.errors import BagError, InputError
from dlrmamba_core.runtime import image_codec
from dlrmamba_core.runtime.detections import Detections

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED = "sensor_msgs/msg/CompressedImage"
DETECTIONS = "vision_msgs/msg/Detection2DArray"
LABEL_INFO = "vision_msgs/msg/LabelInfo"
IMAGE_TYPES = (IMAGE, COMPRESSED)


@dataclass
class FrameDetections:
    """The detections (or ground truth) of one image as a ``Detection2DArray`` carries them.

    This is the message form: the image's header and one class NAME per box (what a bag's
    ground truth or a recorded topic holds, without the model's class map). The model's
    form is :class:`~dlrmamba_core.runtime.detections.Detections` (class ids + class map);
    :meth:`from_detections` converts one into the other.

    Attributes:
        stamp_ns: header stamp of the image (ns).
        frame_id: header frame id of the image.
        boxes: (N, 4) float32 ``x1, y1, x2, y2`` in image pixels.
        scores: (N,) float32 (1.0 for ground truth).
        class_names: N class names, one per box (``class_id`` strings of the messages).
    """

    stamp_ns: int
    frame_id: str
    boxes: np.ndarray
    scores: np.ndarray
    class_names: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.class_names)

    @classmethod
    def from_detections(cls, stamp_ns: int, frame_id: str, det: Detections) -> FrameDetections:
        """The message form of a Detector result (one class name per box, from its map)."""
        return cls(stamp_ns, frame_id, np.asarray(det.boxes, np.float32).reshape(-1, 4),
                   np.asarray(det.scores, np.float32).reshape(-1), det.labels)


def split_stamp(stamp_ns: int) -> tuple[int, int]:
    """``(sec, nanosec)`` of a stamp in ns."""
    return int(stamp_ns) // 1_000_000_000, int(stamp_ns) % 1_000_000_000


def stamp_of(msg: Any) -> int:
    """The header stamp of a message in ns."""
    return int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)


def header(stamp_ns: int, frame_id: str) -> Any:
    """A ``std_msgs/Header`` object."""
    store = get_bag_typestore()
    sec, nsec = split_stamp(stamp_ns)
    time_cls = store.types["builtin_interfaces/msg/Time"]
    return store.types["std_msgs/msg/Header"](stamp=time_cls(sec=sec, nanosec=nsec),
                                              frame_id=frame_id)


def image_message(img: np.ndarray, encoding: str, stamp_ns: int, frame_id: str) -> Any:
    """A ``sensor_msgs/Image`` holding ``img`` (laid out as ``encoding`` says)."""
    f = image_codec.numpy_to_image(img, encoding)
    return get_bag_typestore().types[IMAGE](
        header=header(stamp_ns, frame_id),
        height=f.height,
        width=f.width,
        encoding=f.encoding,
        is_bigendian=int(f.is_bigendian),
        step=f.step,
        data=np.frombuffer(f.data, dtype=np.uint8),
    )


def compressed_message(img: np.ndarray, encoding: str, fmt: str, stamp_ns: int,
                       frame_id: str) -> Any:
    """A ``sensor_msgs/CompressedImage`` (``fmt`` "jpeg" or "png"; 16-bit needs "png")."""
    fmt_str, data = image_codec.numpy_to_compressed(img, encoding, fmt)
    return get_bag_typestore().types[COMPRESSED](
        header=header(stamp_ns, frame_id),
        format=fmt_str,
        data=np.frombuffer(data, dtype=np.uint8),
    )


def _decode(msg: Any, msgtype: str, source: str) -> tuple[np.ndarray, str]:
    if msgtype == IMAGE:
        return image_codec.image_msg_to_numpy(msg, source), str(msg.encoding)
    if msgtype == COMPRESSED:
        return image_codec.compressed_to_numpy(msg.format, msg.data, source)
    raise BagError(f"{source}: type {msgtype} is not an image; expected one of {IMAGE_TYPES}")


def decode_rgb(msg: Any, msgtype: str, source: str) -> np.ndarray:
    """(H, W, 3) uint8 RGB of an Image / CompressedImage message.

    Raises:
        BagError: an encoding that is not usable as the RGB image, or corrupt data.
    """
    try:
        img, enc = _decode(msg, msgtype, source)
        return image_codec.to_rgb(img, enc, source)
    except InputError as exc:
        raise BagError(f"RGB {exc}") from exc


def decode_thermal(msg: Any, msgtype: str, source: str) -> np.ndarray:
    """(H, W) uint16 or uint8 thermal image of an Image / CompressedImage message.

    Raises:
        BagError: a colour encoding, an unsupported one, or corrupt data.
    """
    try:
        img, enc = _decode(msg, msgtype, source)
    except InputError as exc:
        raise BagError(f"thermal {exc}") from exc
    if img.ndim != 2 or enc not in image_codec.THERMAL_ENCODINGS:
        raise BagError(
            f"thermal image on {source} has encoding {enc} ({img.dtype} {img.shape}): expected "
            f"one channel, one of {image_codec.THERMAL_ENCODINGS}"
        )
    return img


def detections_message(det: FrameDetections, class_map: list[str] | None = None) -> Any:
    """A ``vision_msgs/Detection2DArray`` whose header (and every detection's) is the image's.

    Args:
        det: boxes in image pixels, xyxy; each becomes center + size.
        class_map: with it, ``class_id`` is the index of the name in it and ``id`` the rank
            (as the detector node publishes); without it, ``class_id`` is the name.
    """
    store = get_bag_typestore()
    t = store.types
    hdr = header(det.stamp_ns, det.frame_id)
    pose_cov = t["geometry_msgs/msg/PoseWithCovariance"]
    pose = t["geometry_msgs/msg/Pose"]
    items = []
    for k, (box, score, name) in enumerate(
            zip(det.boxes, det.scores, det.class_names, strict=True)):
        x1, y1, x2, y2 = (float(v) for v in box)
        cid = name if class_map is None else str(class_map.index(name))
        hyp = t["vision_msgs/msg/ObjectHypothesisWithPose"](
            hypothesis=t["vision_msgs/msg/ObjectHypothesis"](class_id=cid, score=float(score)),
            pose=pose_cov(
                pose=pose(
                    position=t["geometry_msgs/msg/Point"](x=0.0, y=0.0, z=0.0),
                    orientation=t["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=0.0, w=1.0),
                ),
                covariance=np.zeros(36, dtype=np.float64),
            ),
        )
        bbox = t["vision_msgs/msg/BoundingBox2D"](
            center=t["vision_msgs/msg/Pose2D"](
                position=t["vision_msgs/msg/Point2D"](x=(x1 + x2) / 2.0, y=(y1 + y2) / 2.0),
                theta=0.0,
            ),
            size_x=x2 - x1,
            size_y=y2 - y1,
        )
        items.append(t["vision_msgs/msg/Detection2D"](
            header=hdr, results=[hyp], bbox=bbox, id="" if class_map is None else str(k)))
    return t[DETECTIONS](header=hdr, detections=items)


def parse_detections(msg: Any, class_map: list[str] | None = None) -> FrameDetections:
    """A ``Detection2DArray`` message (rosbags or rclpy object) as a :class:`FrameDetections`.

    Args:
        msg: the message.
        class_map: maps a numeric ``class_id`` ("3") to its name; other ids are kept as
            they are (names).

    A detection without results gets the class name ``""`` and score 0.
    """
    boxes = np.zeros((len(msg.detections), 4), dtype=np.float32)
    scores = np.zeros(len(msg.detections), dtype=np.float32)
    names: list[str] = []
    for i, d in enumerate(msg.detections):
        cx, cy = d.bbox.center.position.x, d.bbox.center.position.y
        boxes[i] = (cx - d.bbox.size_x / 2, cy - d.bbox.size_y / 2,
                    cx + d.bbox.size_x / 2, cy + d.bbox.size_y / 2)
        if d.results:
            best = max(d.results, key=lambda r: r.hypothesis.score)
            cid = str(best.hypothesis.class_id)
            if class_map is not None and cid.isdigit() and int(cid) < len(class_map):
                cid = class_map[int(cid)]
            names.append(cid)
            scores[i] = best.hypothesis.score
        else:
            names.append("")
    return FrameDetections(stamp_ns=stamp_of(msg), frame_id=str(msg.header.frame_id),
                           boxes=boxes, scores=scores, class_names=names)


def label_info_message(class_names: list[str], stamp_ns: int, frame_id: str,
                       threshold: float) -> Any:
    """A ``vision_msgs/LabelInfo``: class map ``index -> name`` and the score threshold."""
    t = get_bag_typestore().types
    classes = [t["vision_msgs/msg/VisionClass"](class_id=i, class_name=n)
               for i, n in enumerate(class_names)]
    return t[LABEL_INFO](header=header(stamp_ns, frame_id), class_map=classes,
                         threshold=float(threshold))


def serialize(msg: Any, msgtype: str) -> bytes:
    """CDR bytes of a message object."""
    return bytes(get_bag_typestore().serialize_cdr(msg, msgtype))


def deserialize(raw: bytes | memoryview, msgtype: str, where: str) -> Any:
    """Deserialize CDR bytes; ``where`` names the topic/index for the error message.

    Raises:
        BagError: the bytes are not a valid message of ``msgtype``.
    """
    try:
        return get_bag_typestore().deserialize_cdr(raw, msgtype)
    except (ValueError, IndexError, KeyError, TypeError, AssertionError) as exc:
        raise BagError(
            f"{where}: cannot deserialize a {msgtype} message ({type(exc).__name__}: {exc}); "
            "the bag is corrupt or the topic's type definition does not match its data"
        ) from exc
