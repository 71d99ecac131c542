"""Node progress on its way to the caller: the latest line of each host, at most a few a second.

A node task may print progress as fast as it likes, and a thousand hosts may do so at once.
What reaches the caller (through a worker's frames too) is bounded by the hosts, not by what
they print: each host has one slot that the newest line overwrites, and the thread that
drains the slots takes a host's line only PROGRESS_INTERVAL_S after the last one it took.
A line that waits in its slot is not lost: it is taken once the interval has passed, so a
host that goes quiet after a burst still shows where it stopped.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

# At most four lines a second per host reach the caller: a live display needs no more.
PROGRESS_INTERVAL_S = 0.25
# The slots are looked at no more often than this, however many messages wake the drainer.
_SCAN_INTERVAL_S = 0.05

# (host name, progress): what the caller of Fleet.run() is given, in its own thread.
HostProgressCallback = Callable[[str, dict[str, Any]], None]


class ProgressGate:
    """Progress offered from any thread; taken, throttled per host, by the thread draining it.

    A host that has landed is closed: a line still on its way must not show it running again.
    """

    def __init__(
        self,
        interval_s: float = PROGRESS_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._interval_s = interval_s
        self._clock = clock
        self._lock = threading.Lock()
        self._latest: dict[str, dict[str, Any]] = {}
        self._taken_at: dict[str, float] = {}
        self._closed: set[str] = set()
        self._next_scan = float("-inf")

    def offer(self, host_name: str, progress: dict[str, Any]) -> None:
        with self._lock:
            if host_name not in self._closed:
                self._latest[host_name] = progress

    def close(self, host_name: str) -> None:
        with self._lock:
            self._closed.add(host_name)
            self._latest.pop(host_name, None)

    def take_due(self) -> list[tuple[str, dict[str, Any]]]:
        """The waiting lines whose hosts' interval has passed, as (host name, progress)."""
        if not self._latest:  # the common case, progress or not: nothing waits
            return []
        now = self._clock()
        if now < self._next_scan:
            return []
        self._next_scan = now + _SCAN_INTERVAL_S
        with self._lock:
            due = [
                name
                for name in self._latest
                if now - self._taken_at.get(name, float("-inf")) >= self._interval_s
            ]
            for name in due:
                self._taken_at[name] = now
            return [(name, self._latest.pop(name)) for name in due]
