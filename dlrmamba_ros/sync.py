"""RGB/thermal pairing behind one interface, with two implementations.

Both take messages that already passed the node's checks (``feed``), call ``on_pair(rgb,
thermal, skew_ns)`` for each matched pair, and report the same counters
(:class:`~dlrmamba_core.runtime.pairing.PairingStats`: received, paired, dropped per stream,
last and largest skew). ``close()`` empties the queues and breaks every reference to queued
frames, so a deactivated synchronizer holds no image memory.

- :class:`InternalSync`: ``dlrmamba_core.runtime.pairing.ApproximateTimePairer``.
- :class:`MessageFiltersSync`: ``message_filters`` (Approximate)TimeSynchronizer, fed through
  one ``SimpleFilter`` per input; its drops are derived as ``received - paired - queued``.
"""

from __future__ import annotations

from collections.abc import Callable
import importlib.util
import threading
from typing import Any

from dlrmamba_core.runtime.pairing import ApproximateTimePairer, PairingStats

PairCallback = Callable[[Any, Any, int], None]  # (rgb item, thermal item, skew ns)
STREAMS = ("rgb", "thermal")


class PairSync:
    """Interface of a pairing backend (see the module docstring)."""

    name = "base"

    def feed(self, stream: str, stamp_ns: int, item: Any) -> None:
        """Offer one accepted message (``stream`` is "rgb" or "thermal"; stamp in ns)."""
        raise NotImplementedError

    def stats(self) -> PairingStats:
        """A snapshot of the counters."""
        raise NotImplementedError

    def reset(self) -> None:
        """Forget queued messages (counters are kept)."""
        raise NotImplementedError

    def close(self) -> None:
        """Forget queued messages and the callback; the object is unusable afterwards."""
        raise NotImplementedError


class InternalSync(PairSync):
    """The built-in pairer (``ApproximateTimePairer``)."""

    name = "internal"

    def __init__(self, on_pair: PairCallback, queue_size: int, slop_s: float,
                 exact: bool) -> None:
        self._pairer: ApproximateTimePairer[Any] | None = ApproximateTimePairer(
            queue_size, slop_s, exact)
        self._on_pair: PairCallback | None = on_pair

    def feed(self, stream: str, stamp_ns: int, item: Any) -> None:
        """Raises InputError for an unusable stamp (as the pairer does)."""
        pairer, cb = self._pairer, self._on_pair
        if pairer is None or cb is None:
            return
        for pair in pairer.add(stream, stamp_ns, item):
            cb(pair.rgb, pair.thermal, pair.skew_ns)

    def stats(self) -> PairingStats:
        return self._pairer.stats if self._pairer is not None else PairingStats()

    def reset(self) -> None:
        if self._pairer is not None:
            self._pairer.reset()

    def close(self) -> None:
        if self._pairer is not None:
            self._pairer.reset()
        self._pairer = None
        self._on_pair = None


def message_filters_available() -> bool:
    """Whether ``message_filters`` can be imported."""
    return importlib.util.find_spec("message_filters") is not None


class MessageFiltersSync(PairSync):
    """``message_filters`` synchronizer with the same counters as the built-in pairer.

    Items must be ROS messages with a ``header`` (message_filters reads the stamp itself).
    """

    name = "message_filters"

    def __init__(self, on_pair: PairCallback, queue_size: int, slop_s: float,
                 exact: bool) -> None:
        import message_filters

        self._lock = threading.Lock()
        self._stats = PairingStats()
        self._on_pair: PairCallback | None = on_pair
        self._gates = {s: message_filters.SimpleFilter() for s in STREAMS}
        gates = [self._gates[s] for s in STREAMS]
        if exact:
            self._sync: Any = message_filters.TimeSynchronizer(gates, queue_size)
        else:
            self._sync = message_filters.ApproximateTimeSynchronizer(gates, queue_size, slop_s)
        self._sync.registerCallback(self._pair)
        self._stamps: dict[int, int] = {}  # id(message) -> stamp ns, for the skew

    def _pair(self, rgb: Any, thermal: Any) -> None:
        skew = self._stamps.pop(id(rgb), 0) - self._stamps.pop(id(thermal), 0)
        with self._lock:
            st = self._stats
            st.rgb.paired += 1
            st.thermal.paired += 1
            st.last_skew_ns = skew
            st.max_abs_skew_ns = max(st.max_abs_skew_ns, abs(skew))
        cb = self._on_pair
        if cb is not None:
            cb(rgb, thermal, skew)

    def feed(self, stream: str, stamp_ns: int, item: Any) -> None:
        if self._on_pair is None:
            return
        with self._lock:
            self._stats.stream(stream).received += 1
            self._stamps[id(item)] = stamp_ns
            if len(self._stamps) > 4 * 1024:  # evicted messages never pop: bound the map
                self._stamps.clear()
        self._gates[stream].signalMessage(item)

    def _queued(self) -> dict[str, int]:
        queues = getattr(self._sync, "queues", None) or [{}, {}]
        return {s: len(q) for s, q in zip(STREAMS, queues, strict=False)}

    def stats(self) -> PairingStats:
        with self._lock:
            queued = self._queued()
            snap = PairingStats(last_skew_ns=self._stats.last_skew_ns,
                                max_abs_skew_ns=self._stats.max_abs_skew_ns)
            for s in STREAMS:
                src, dst = self._stats.stream(s), snap.stream(s)
                dst.received, dst.paired = src.received, src.paired
                # message_filters evicts silently: whatever came in and neither left in a
                # pair nor waits in the queue was dropped.
                dst.dropped = max(0, src.received - src.paired - queued.get(s, 0))
        return snap

    def reset(self) -> None:
        with self._lock:
            # Queued frames are forgotten; stats() then counts them as dropped.
            for q in getattr(self._sync, "queues", []):
                q.clear()
            self._stamps.clear()

    def close(self) -> None:
        self.reset()
        self._on_pair = None
        # Break the gate -> synchronizer -> callback references (a cycle through the node
        # otherwise keeps queued frames alive until the cyclic GC runs).
        for gate in self._gates.values():
            gate.callbacks = {}
        self._sync.callbacks = {}


def make_sync(backend: str, on_pair: PairCallback, queue_size: int, slop_s: float,
              exact: bool) -> PairSync:
    """The pairing backend for the ``sync_backend`` parameter.

    Args:
        backend: "auto" (message_filters when importable, else internal) or "internal".
        on_pair: called with (rgb, thermal, skew_ns) for each pair.
        queue_size: messages kept per input waiting for a partner.
        slop_s: largest stamp difference of an approximate pair (s).
        exact: equal stamps only.
    """
    if backend == "auto" and message_filters_available():
        return MessageFiltersSync(on_pair, queue_size, slop_s, exact)
    return InternalSync(on_pair, queue_size, slop_s, exact)
