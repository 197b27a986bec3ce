"""Small running statistics for diagnostics (pure Python, thread safe)."""

from __future__ import annotations

from collections import deque
import math
import threading


class RateMeter:
    """Messages per second over a sliding window.

    Args:
        window_s: window length (s).
    """

    def __init__(self, window_s: float = 5.0) -> None:
        self._window_ns = int(window_s * 1e9)
        self._stamps: deque[int] = deque()
        self._lock = threading.Lock()

    def tick(self, now_ns: int) -> None:
        """Record one message received at ``now_ns`` (monotonic ns)."""
        with self._lock:
            self._stamps.append(now_ns)
            self._trim(now_ns)

    def rate_hz(self, now_ns: int) -> float:
        """Rate (Hz) over the last window ending at ``now_ns``."""
        with self._lock:
            self._trim(now_ns)
            if len(self._stamps) < 2:
                return 0.0
            span = max(now_ns - self._stamps[0], 1)
            return (len(self._stamps) - 1) * 1e9 / span

    def _trim(self, now_ns: int) -> None:
        while self._stamps and now_ns - self._stamps[0] > self._window_ns:
            self._stamps.popleft()


class Window:
    """The last ``size`` values of a series, with mean / percentile / max."""

    def __init__(self, size: int = 200) -> None:
        self._values: deque[float] = deque(maxlen=size)
        self._lock = threading.Lock()

    def add(self, value: float) -> None:
        with self._lock:
            self._values.append(float(value))

    def percentile(self, q: float) -> float:
        """Nearest-rank percentile ``q`` in [0, 100]; 0.0 when empty."""
        with self._lock:
            values = sorted(self._values)
        if not values:
            return 0.0
        rank = min(len(values) - 1, max(0, math.ceil(q / 100.0 * len(values)) - 1))
        return values[rank]

    def mean(self) -> float:
        with self._lock:
            return sum(self._values) / len(self._values) if self._values else 0.0

    def __len__(self) -> int:
        return len(self._values)


class DeliveryMeter:
    """Share of a publisher's frames that arrive, estimated from header stamps alone.

    The publisher's period is the smallest positive gap between consecutive received stamps
    (two frames in a row arrive now and then even on a lossy link); the frames it sent in the
    window are ``(last - first) / period + 1``. Valid for one publisher at a steady rate.

    Args:
        window_s: stamp span (s) of one estimate; the window restarts after it.
        min_frames: fewest frames before an estimate is made.
    """

    def __init__(self, window_s: float = 3.0, min_frames: int = 5) -> None:
        self.window_ns = int(window_s * 1e9)
        self.min_frames = min_frames
        self._first: int | None = None
        self._last = 0
        self._n = 0
        self._gap = 0
        self._ratio: float | None = None
        self._period_ns = 0

    def add(self, stamp_ns: int, now_ns: int) -> None:
        """One received frame with header stamp ``stamp_ns`` (ns)."""
        if self._first is None or stamp_ns < self._last:  # first frame, or the clock jumped
            self._first, self._last, self._n, self._gap = stamp_ns, stamp_ns, 1, 0
            return
        gap = stamp_ns - self._last
        if gap > 0:
            self._gap = gap if self._gap == 0 else min(self._gap, gap)
        self._last = stamp_ns
        self._n += 1
        if stamp_ns - self._first >= self.window_ns:
            if self._n >= self.min_frames and self._gap > 0:
                sent = (stamp_ns - self._first) / self._gap + 1
                self._ratio = min(1.0, self._n / sent)
                self._period_ns = self._gap
            self._first, self._n, self._gap = stamp_ns, 1, 0

    def delivered_ratio(self) -> float | None:
        """Received / sent of the last complete window, or None before one completed."""
        return self._ratio

    def period_ms(self) -> float:
        """The publisher's estimated period (ms) of the last complete window."""
        return self._period_ns / 1e6
