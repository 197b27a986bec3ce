"""Pairing of RGB and thermal frames by timestamp (numpy-free, torch-free, rclpy-free).

:class:`ApproximateTimePairer` reproduces the matching rule of ``message_filters``'
Python ``ApproximateTimeSynchronizer`` (and, with ``exact=True``, of ``TimeSynchronizer``)
for two streams, so that the live node (where ``message_filters`` is not importable) and the
offline rosbag evaluation pair exactly the same frames:

* each stream keeps a queue of at most ``queue_size`` messages keyed by stamp; a new message
  with a stamp already queued replaces the old one; when a queue grows beyond ``queue_size``
  its **oldest** message is evicted (counted as dropped, possibly the new one itself);
* approximate: a new message is matched with the queued message of the other stream whose
  stamp is closest to its own, provided the difference is strictly below ``slop``; the two
  leave their queues (older unmatched messages stay until evicted);
* exact: a new message is matched only with a message of the other stream of equal stamp.

On top of the reference behaviour it counts received / paired / dropped messages per stream
and reports the stamp skew of every pair, which ``message_filters`` does not.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import threading
from typing import Any, Generic, TypeVar

from dlrmamba_core.errors import ConfigError, InputError

STREAMS: tuple[str, str] = ("rgb", "thermal")

T = TypeVar("T")


@dataclass(frozen=True)
class Pair(Generic[T]):
    """One matched RGB + thermal pair.

    Attributes:
        rgb_stamp_ns: stamp of the RGB message (ns).
        thermal_stamp_ns: stamp of the thermal message (ns).
        rgb: the RGB item given to :meth:`ApproximateTimePairer.add`.
        thermal: the thermal item.
        skew_ns: ``rgb_stamp_ns - thermal_stamp_ns`` (ns, signed; positive when the thermal
            frame is older than the RGB frame).
    """

    rgb_stamp_ns: int
    thermal_stamp_ns: int
    rgb: T
    thermal: T
    skew_ns: int


@dataclass
class StreamStats:
    """Counters of one input stream.

    Attributes:
        received: messages given to ``add``.
        paired: messages that left the queue inside a :class:`Pair`.
        dropped: messages evicted from the queue (queue overflow or a newer message with the
            same stamp) without ever being paired.
    """

    received: int = 0
    paired: int = 0
    dropped: int = 0


@dataclass
class PairingStats:
    """Counters of both streams plus the skew of the most recent pair."""

    rgb: StreamStats = field(default_factory=StreamStats)
    thermal: StreamStats = field(default_factory=StreamStats)
    last_skew_ns: int | None = None
    max_abs_skew_ns: int = 0

    def stream(self, name: str) -> StreamStats:
        """The counters of ``name`` ("rgb" or "thermal")."""
        return self.rgb if name == "rgb" else self.thermal

    def as_dict(self) -> dict[str, Any]:
        """Plain dict (for diagnostics, JSON reports)."""
        return {
            "rgb": vars(self.rgb).copy(),
            "thermal": vars(self.thermal).copy(),
            "last_skew_ns": self.last_skew_ns,
            "max_abs_skew_ns": self.max_abs_skew_ns,
        }


class ApproximateTimePairer(Generic[T]):
    """Match RGB and thermal messages by stamp like ``message_filters`` does.

    Thread safe: :meth:`add` may be called from several subscription callbacks at once.

    Args:
        queue_size: messages kept per stream while waiting for a partner (>= 1).
        slop_s: largest stamp difference of an approximate pair (s, > 0; a pair needs a
            difference strictly below it, as in ``message_filters``). Ignored when ``exact``.
        exact: match only equal stamps (``message_filters.TimeSynchronizer``).

    Raises:
        ConfigError: ``queue_size < 1`` or ``slop_s <= 0`` in approximate mode.
    """

    def __init__(self, queue_size: int = 10, slop_s: float = 0.05, exact: bool = False) -> None:
        if int(queue_size) != queue_size or queue_size < 1:
            raise ConfigError(f"pairing queue_size must be an integer >= 1, got {queue_size!r}")
        if not exact and not slop_s > 0:
            raise ConfigError(
                f"pairing slop_s must be > 0 s in approximate mode, got {slop_s!r} "
                "(use exact=True to match equal stamps only)"
            )
        self.queue_size = int(queue_size)
        self.slop_s = float(slop_s)
        self.exact = bool(exact)
        # Integer ns so that comparisons are exact; round() keeps 0.05 s == 50_000_000 ns.
        self._slop_ns = round(self.slop_s * 1e9)
        self._lock = threading.Lock()
        # dicts keep insertion order: ties in distance go to the earliest queued message,
        # like the stable sort of the reference implementation.
        self._queues: dict[str, dict[int, T]] = {s: {} for s in STREAMS}
        self.stats = PairingStats()

    def add(self, stream: str, stamp_ns: int, item: T) -> list[Pair[T]]:
        """Queue one message and return the pairs it completes (zero or one).

        Args:
            stream: "rgb" or "thermal".
            stamp_ns: the message's header stamp (ns since the epoch of its clock).
            item: anything (a ROS message, a decoded array); handed back inside the pair.

        Returns:
            A list with the completed :class:`Pair`, or an empty list.

        Raises:
            InputError: unknown stream name or a non-integer / negative stamp.
        """
        if stream not in self._queues:
            raise InputError(f"unknown stream {stream!r}: expected one of {STREAMS}")
        if isinstance(stamp_ns, bool) or not isinstance(stamp_ns, int) or stamp_ns < 0:
            raise InputError(
                f"stamp_ns of a {stream} message must be a non-negative int (ns), "
                f"got {stamp_ns!r}"
            )
        other = STREAMS[1 - STREAMS.index(stream)]
        with self._lock:
            mine = self._queues[stream]
            st = self.stats.stream(stream)
            st.received += 1
            if stamp_ns in mine:
                # Same stamp again: the newer message replaces the queued one.
                # (assignment below keeps its queue position, as a dict overwrite does in the
                # reference, which matters only for ties in distance).
                st.dropped += 1
            mine[stamp_ns] = item
            while len(mine) > self.queue_size:
                del mine[min(mine)]
                st.dropped += 1
            if stamp_ns not in mine:
                # The new message was itself the oldest and got evicted: nothing to match.
                return []
            partner = self._find_partner(self._queues[other], stamp_ns)
            if partner is None:
                return []
            other_item = self._queues[other].pop(partner)
            del mine[stamp_ns]
            st.paired += 1
            self.stats.stream(other).paired += 1
            if stream == "rgb":
                pair = Pair(stamp_ns, partner, item, other_item, stamp_ns - partner)
            else:
                pair = Pair(partner, stamp_ns, other_item, item, partner - stamp_ns)
            self.stats.last_skew_ns = pair.skew_ns
            self.stats.max_abs_skew_ns = max(self.stats.max_abs_skew_ns, abs(pair.skew_ns))
            return [pair]

    def _find_partner(self, queue: dict[int, T], stamp_ns: int) -> int | None:
        """Stamp of the queued message to match with ``stamp_ns``, or None."""
        if self.exact:
            return stamp_ns if stamp_ns in queue else None
        best: int | None = None
        best_delta = 0
        for s in queue:
            delta = abs(s - stamp_ns)
            if delta < self._slop_ns and (best is None or delta < best_delta):
                best, best_delta = s, delta
        return best

    def pending(self, stream: str) -> int:
        """Number of messages of ``stream`` waiting for a partner."""
        with self._lock:
            return len(self._queues[stream])

    def reset(self) -> None:
        """Forget queued messages (e.g. on deactivate); counters are kept."""
        with self._lock:
            for q in self._queues.values():
                q.clear()
