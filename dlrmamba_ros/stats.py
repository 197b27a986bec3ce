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
