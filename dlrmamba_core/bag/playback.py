"""What a live player publishes and when (no rclpy here; ``dlrmamba_ros.bag_player`` sends it).

The schedule keeps the bag's own timing: a message logged ``dt`` after the first one is due
``dt / rate`` seconds after playback starts. Stamps inside the messages are never changed, so
the node's detections carry the bag's stamps and can be compared with ``bag-eval`` output.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
import struct

from dlrmamba_core.bag.reader import BagReader
from dlrmamba_core.errors import BagError, ConfigError


@dataclass
class PlayItem:
    """One message to publish.

    Attributes:
        due_s: seconds after playback start at which to publish it.
        topic: topic name.
        msgtype: ROS type, e.g. ``sensor_msgs/msg/Image``.
        log_ns: the bag's log time (ns) (what ``/clock`` shows when it is published).
        raw: the CDR bytes, published as they are.
    """

    due_s: float
    topic: str
    msgtype: str
    log_ns: int
    raw: bytes


def header_stamp_ns(raw: bytes) -> int:
    """Stamp (ns) of a CDR message whose first field is a ``std_msgs/Header``.

    CDR: 4 bytes of encapsulation (byte 1 is 0x01 for little endian), then ``int32 sec`` and
    ``uint32 nanosec`` of the header stamp.
    """
    if len(raw) < 12:
        raise BagError(f"message of {len(raw)} bytes is too short to hold a header")
    order = "<" if raw[1] & 1 else ">"
    sec, nsec = struct.unpack_from(order + "iI", raw, 4)
    return sec * 1_000_000_000 + nsec


def schedule(bag: str | Path, topics: Iterable[str] | None = None,
             rate: float = 1.0) -> Iterator[PlayItem]:
    """The messages of ``topics`` (all topics when None) with their due times.

    Args:
        bag: rosbag2 directory or .db3/.mcap file.
        topics: topics to play; every one must be in the bag.
        rate: playback speed factor (> 0; 2.0 = twice as fast as recorded).

    Raises:
        ConfigError: ``rate <= 0``.
        BagError: a topic is missing (the message lists the bag's topics), or a corrupt bag.
    """
    if not rate > 0:
        raise ConfigError(f"playback rate must be > 0, got {rate}")
    with BagReader(bag) as reader:
        names = list(reader.topics) if topics is None else list(topics)
        for t in names:
            reader.require_topic(t)
        first: int | None = None
        for bm in reader.messages(names):
            first = bm.log_ns if first is None else first
            yield PlayItem((bm.log_ns - first) / 1e9 / rate, bm.topic, bm.msgtype, bm.log_ns,
                           bm.raw)


def bag_topics(bag: str | Path) -> dict[str, str]:
    """topic -> type of a bag."""
    with BagReader(bag) as reader:
        return dict(reader.topics)
