"""Window state behind a small interface, so a shared store can replace the in-process one.

The interface is batch-shaped (one ``add`` and one ``counts`` call per request batch) so
a Redis implementation can serve each in one pipeline round trip: a count window maps to
a capped list (``RPUSH`` + ``LTRIM``) and a time window to a sorted set scored by time
(``ZADD`` + ``ZREMRANGEBYSCORE``), with the positives kept alongside.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class WindowSpec:
    """The last ``size`` events, those younger than ``seconds``, or both (at least one)."""

    size: int | None = None
    seconds: float | None = None

    def __post_init__(self) -> None:
        if self.size is None and self.seconds is None:
            raise ValueError("a window needs size or seconds")
        if self.size is not None and self.size < 1:
            raise ValueError(f"window size {self.size} must be >= 1")
        if self.seconds is not None and self.seconds <= 0:
            raise ValueError(f"window seconds {self.seconds} must be > 0")


@dataclass(frozen=True, slots=True)
class WindowCounts:
    """Events in a window and how many of them were the monitored outcome."""

    n: int
    positives: int

    @property
    def rate(self) -> float:
        """The outcome rate; NaN (not 0) when the window is empty, so it is never mistaken for a rate."""
        return self.positives / self.n if self.n else float("nan")


@runtime_checkable
class WindowStore(Protocol):
    """Sliding windows of 0/1 outcomes, keyed by ``monitor/group``.

    ``now`` comes from the caller's clock and must not go backwards for one key.
    """

    def add(self, events: Mapping[str, Sequence[int]], *, now: float, spec: WindowSpec) -> None:
        """Append outcomes (0 or 1) per key, all stamped ``now``; expire what falls out."""
        ...

    def counts(self, keys: Sequence[str], *, now: float, spec: WindowSpec) -> dict[str, WindowCounts]:
        """The window of each key at ``now`` (zero counts for unknown keys)."""
        ...

    def clear(self) -> None:
        """Forget every window (tests, policy reloads)."""
        ...


class _Window:
    __slots__ = ("events", "positives")

    def __init__(self) -> None:
        self.events: deque[tuple[float, int]] = deque()
        self.positives = 0

    def expire(self, now: float, spec: WindowSpec) -> None:
        events = self.events
        if spec.seconds is not None:
            horizon = now - spec.seconds
            while events and events[0][0] <= horizon:
                self.positives -= events.popleft()[1]
        if spec.size is not None:
            while len(events) > spec.size:
                self.positives -= events.popleft()[1]


class InMemoryWindowStore:
    """The embedded default: windows in this process, guarded by a lock.

    With several BentoML workers each worker keeps its own windows (each sees its share of
    the traffic); a shared store gives every worker the same view.
    """

    def __init__(self) -> None:
        self._windows: dict[str, _Window] = {}
        self._lock = threading.Lock()

    def add(self, events: Mapping[str, Sequence[int]], *, now: float, spec: WindowSpec) -> None:
        with self._lock:
            for key, values in events.items():
                window = self._windows.get(key)
                if window is None:
                    window = self._windows[key] = _Window()
                for value in values:
                    bit = 1 if value else 0
                    window.events.append((now, bit))
                    window.positives += bit
                window.expire(now, spec)

    def counts(self, keys: Sequence[str], *, now: float, spec: WindowSpec) -> dict[str, WindowCounts]:
        result: dict[str, WindowCounts] = {}
        with self._lock:
            for key in keys:
                window = self._windows.get(key)
                if window is None:
                    result[key] = WindowCounts(0, 0)
                    continue
                window.expire(now, spec)
                result[key] = WindowCounts(len(window.events), window.positives)
        return result

    def clear(self) -> None:
        with self._lock:
            self._windows.clear()
