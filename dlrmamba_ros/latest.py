"""A one-slot mailbox: the inference worker always takes the LATEST pair (no backlog)."""

from __future__ import annotations

import threading
from typing import Generic, TypeVar

T = TypeVar("T")


class LatestSlot(Generic[T]):
    """Holds at most one item; ``put`` replaces an item nobody took yet.

    The camera callbacks put pairs at the camera rate; the worker takes them at the inference
    rate. When inference is slower than the cameras, older pairs are overwritten (counted in
    :attr:`replaced`) instead of queueing, so the published detections are never stale by
    more than one inference.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: T | None = None
        self._closed = False
        self.replaced = 0

    def put(self, item: T) -> bool:
        """Store ``item``; True when it replaced an untaken one."""
        with self._cond:
            replaced = self._item is not None
            if replaced:
                self.replaced += 1
            self._item = item
            self._cond.notify()
            return replaced

    def take(self, timeout_s: float | None = None) -> T | None:
        """Wait up to ``timeout_s`` (s) for an item; None on timeout or after :meth:`close`."""
        with self._cond:
            self._cond.wait_for(lambda: self._item is not None or self._closed, timeout_s)
            item, self._item = self._item, None
            return None if self._closed else item

    def clear(self) -> None:
        """Drop a waiting item (not counted as replaced)."""
        with self._cond:
            self._item = None

    def close(self) -> None:
        """Wake the worker for good."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
