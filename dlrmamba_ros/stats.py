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
    """Share of a publisher's frames that arrive, estimated from header stamps.

    The publisher's period is the smallest positive gap between consecutive received stamps
    (two frames in a row arrive now and then even on a lossy link); the frames it sent in the
    window are ``(last - first) / period + 1``. The estimate is only made when it can be
    trusted: at least two gaps within 1.5 periods (a steady rate, not one close pair), and
    stamps that advance like the arrival clock (within 25 %; replayed or synthetic stamps
    do not). Valid for one publisher.

    Args:
        window_s: stamp span (s) of one estimate; the window restarts after it.
        min_frames: fewest frames before an estimate is made.
    """

    def __init__(self, window_s: float = 3.0, min_frames: int = 5) -> None:
        self.window_ns = int(window_s * 1e9)
        self.min_frames = min_frames
        self._stamps: list[int] = []
        self._arrivals: list[int] = []
        self._ratio: float | None = None
        self._period_ns = 0

    def add(self, stamp_ns: int, now_ns: int) -> None:
        """One received frame: header stamp and monotonic arrival time (both ns)."""
        if self._stamps and stamp_ns < self._stamps[-1]:  # the clock jumped back: restart
            self._stamps, self._arrivals = [], []
        self._stamps.append(stamp_ns)
        self._arrivals.append(now_ns)
        span = stamp_ns - self._stamps[0]
        if span < self.window_ns:
            return
        self._estimate(span, now_ns - self._arrivals[0])
        self._stamps, self._arrivals = [stamp_ns], [now_ns]

    def _estimate(self, span: int, arrival_span: int) -> None:
        gaps = [b - a for a, b in zip(self._stamps, self._stamps[1:], strict=False) if b > a]
        if len(self._stamps) < self.min_frames or not gaps:
            return
        if abs(arrival_span - span) > 0.25 * span:
            return  # stamps do not follow the arrival clock: no rate can be read from them
        period = min(gaps)
        if sum(g <= 1.5 * period for g in gaps) < 2:
            return
        self._ratio = min(1.0, len(self._stamps) / (span / period + 1))
        self._period_ns = period

    def delivered_ratio(self) -> float | None:
        """Received / sent of the last trusted window, or None before one."""
        return self._ratio

    def period_ms(self) -> float:
        """The publisher's estimated period (ms) of the last trusted window."""
        return self._period_ns / 1e6


class LossMeter:
    """Share of a publisher's samples that arrive, from the middleware's own loss count.

    DDS numbers every sample a writer sends; a reader that sees a gap in the numbers (a
    best-effort sample lost on the wire, or a large image whose fragments never all arrived)
    raises rclpy's ``message_lost`` event with the count. This meter keeps received and lost
    counts over a sliding window, so the ratio is exact where ``DeliveryMeter`` has to guess
    from stamps, and it is valid for any number of publishers and any stamps.

    Args:
        window_s: window length (s).
        min_samples: fewest samples (received + lost) in the window before a ratio is given.
    """

    def __init__(self, window_s: float = 5.0, min_samples: int = 10) -> None:
        self.window_s = window_s
        self._window_ns = int(window_s * 1e9)
        self.min_samples = min_samples
        self._events: deque[tuple[int, int, int]] = deque()  # (arrival ns, received, lost)
        self._lock = threading.Lock()
        self.total_lost = 0  # since construction (the node makes one per activation)

    def received(self, now_ns: int) -> None:
        """One sample arrived at ``now_ns`` (monotonic ns)."""
        with self._lock:
            self._events.append((now_ns, 1, 0))
            self._trim(now_ns)

    def lost(self, count: int, now_ns: int) -> None:
        """The middleware reported ``count`` more samples lost at ``now_ns``."""
        if count <= 0:
            return
        with self._lock:
            self.total_lost += count
            self._events.append((now_ns, 0, count))
            self._trim(now_ns)

    def counts(self, now_ns: int) -> tuple[int, int]:
        """(received, lost) in the window ending at ``now_ns``."""
        with self._lock:
            self._trim(now_ns)
            return (sum(e[1] for e in self._events), sum(e[2] for e in self._events))

    def delivered_ratio(self, now_ns: int) -> float | None:
        """received / (received + lost) over the window, or None with too few samples."""
        return self.ratio_of(*self.counts(now_ns))

    def ratio_of(self, got: int, lost: int) -> float | None:
        """received / (received + lost) of counts from :meth:`counts`, or None with fewer
        than ``min_samples``."""
        if got + lost < self.min_samples:
            return None
        return got / (got + lost)

    def _trim(self, now_ns: int) -> None:
        while self._events and now_ns - self._events[0][0] > self._window_ns:
            self._events.popleft()
