"""Window state behind a small interface, so a shared store can replace the in-process one.

Two layers, both batch-shaped (one call per request batch, so a networked store answers each
in one round trip):

* :class:`WindowStore` holds the sliding windows of 0/1 outcomes (``add``, ``counts``).
  :class:`InMemoryWindowStore` is the embedded default and the reference semantics.
* :class:`MonitorStore` adds what the rate monitors share besides windows: the check
  schedule (a check every N recorded outcomes, or every S seconds) and the alert board
  (active groups, alerts raised, the last check's figures). ``record`` adds a batch's
  outcomes *and* advances the schedule in one call; ``publish`` writes a check's result
  with compare-and-set on the board's epoch, so exactly one concurrent check wins. The
  store also keeps the e-detectors of ``rates.method: sequential`` (a batch that names one
  updates it in the same call) and their alarms until a published check consumes them, so
  a shared store runs one detector for the fleet.
  :class:`~fairgate.guardrails.local_store.LocalMonitorStore` keeps these in the process
  (``window_scope: worker``), :class:`~fairgate.guardrails.redis_store.RedisWindowStore` in
  Redis for every worker and replica (``window_scope: fleet``).

Time windows are bucketed counts, in memory and in Redis alike: a window of ``seconds``
is cut into ``buckets`` buckets of ``w = seconds / buckets``; an event stamped ``t`` is in
bucket ``floor(t * buckets / seconds)`` and counts at ``now`` while its bucket is one of
the last ``buckets`` buckets, i.e. ``bucket(t) > bucket(now) - buckets``. An event
therefore counts for at least ``seconds - w`` and less than ``seconds`` after it was
recorded (exactly: until the clock enters bucket ``bucket(t) + buckets``). The bucket index
is computed here, in Python, by :meth:`WindowSpec.bucket` for every store, so the edges
are the same integers in memory and in Redis. Count windows keep one bit per event (they
are bounded by ``size``); a window with both bounds keeps the bit and its bucket.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

if TYPE_CHECKING:
    from fairgate.guardrails.sequential import Alarm, SequentialSetup

Scope = Literal["worker", "fleet"]
DEFAULT_BUCKETS = 60
KEY_SEPARATOR = "/"


def window_key(monitor: str, group: str) -> str:
    """The ``add``/``counts`` key of one monitor's window of one group."""
    return f"{monitor}{KEY_SEPARATOR}{group}"


def split_key(key: str) -> tuple[str, str]:
    """``monitor/group`` -> (monitor, group); a key without ``/`` is its own monitor and group."""
    monitor, sep, group = key.partition(KEY_SEPARATOR)
    return (monitor, group) if sep else (key, key)


@dataclass(frozen=True, slots=True)
class WindowSpec:
    """The last ``size`` events, those of the last ``seconds`` (bucketed), or both.

    ``buckets`` sets the time resolution of a time window (module docstring): 60 buckets
    make a one-hour window forget in one-minute steps.
    """

    size: int | None = None
    seconds: float | None = None
    buckets: int = DEFAULT_BUCKETS

    def __post_init__(self) -> None:
        if self.size is None and self.seconds is None:
            raise ValueError("a window needs size or seconds")
        if self.size is not None and self.size < 1:
            raise ValueError(f"window size {self.size} must be >= 1")
        if self.seconds is not None and not self.seconds > 0:
            raise ValueError(f"window seconds {self.seconds} must be > 0")
        if self.buckets < 1:
            raise ValueError(f"window buckets {self.buckets} must be >= 1")

    @property
    def timed(self) -> bool:
        return self.seconds is not None

    @property
    def bucket_seconds(self) -> float | None:
        """Width of one time bucket (None for a count-only window)."""
        return None if self.seconds is None else self.seconds / self.buckets

    def bucket(self, now: float) -> int:
        """The time bucket of ``now``; 0 for a count-only window."""
        if self.seconds is None:
            return 0
        return math.floor(now * self.buckets / self.seconds)

    def oldest_bucket(self, now: float) -> int:
        """The oldest bucket still inside the window at ``now``."""
        return self.bucket(now) - self.buckets + 1

    @property
    def tag(self) -> str:
        """A short name of the window's shape, so windows of different shapes never mix in a store."""
        parts = []
        if self.size is not None:
            parts.append(f"c{self.size}")
        if self.seconds is not None:
            parts.append(f"t{self.seconds:g}x{self.buckets}")
        return "".join(parts)


@dataclass(frozen=True, slots=True)
class WindowCounts:
    """Events in a window and how many of them were the monitored outcome."""

    n: int
    positives: int

    @property
    def rate(self) -> float:
        """The outcome rate; NaN (not 0) when the window is empty, so it is never mistaken for a rate."""
        return self.positives / self.n if self.n else float("nan")


@dataclass(frozen=True, slots=True)
class CheckSchedule:
    """When a check is due: each time the recorded outcomes cross a multiple of ``every_n``,
    or at the first batch in each new time slot of ``every_s`` seconds (the first batch ever
    only arms it). Counted by the store, so a shared store counts the whole fleet."""

    every_n: int | None = None
    every_s: float | None = None

    def __post_init__(self) -> None:
        if (self.every_n is None) == (self.every_s is None):
            raise ValueError("a check schedule needs exactly one of every_n or every_s")
        if self.every_n is not None and self.every_n < 1:
            raise ValueError(f"every_n {self.every_n} must be >= 1")
        if self.every_s is not None and not self.every_s > 0:
            raise ValueError(f"every_s {self.every_s} must be > 0")

    def slot(self, now: float) -> int | None:
        return None if self.every_s is None else math.floor(now / self.every_s)


@dataclass(frozen=True, slots=True)
class AlertBoard:
    """One monitor's shared alert state.

    ``epoch`` counts the checks published so far (a publish must name the epoch it read);
    ``raised`` counts alerts raised over the board's life; ``last`` is the last check's
    figures, serialised by the monitor (None where a store did not resend an unchanged one).
    """

    active: frozenset[str] = frozenset()
    raised: int = 0
    epoch: int = 0
    last: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class MonitorQuery:
    """Read one monitor's windows of ``groups`` and its board.

    ``known_epoch`` is the board epoch the caller already has: a store may leave out
    ``board.last`` when the epoch is unchanged (it is the largest part of a reply).
    ``sequential``: the monitor's e-detector (``rates.method: sequential``), kept by the
    store: a batch updates it, a query with it also returns its evidence and pending alarms.
    """

    monitor: str
    groups: tuple[str, ...]
    spec: WindowSpec
    known_epoch: int = -1
    sequential: SequentialSetup | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class MonitorBatch(MonitorQuery):
    """One batch of one monitor: outcomes per group (in order), how many items were observed."""

    events: Mapping[str, Sequence[int]]
    observed: int
    schedule: CheckSchedule


@dataclass(frozen=True, slots=True, kw_only=True)
class BoardUpdate:
    """A check's result for ``monitor``, accepted only if the board is still at ``expected_epoch``."""

    monitor: str
    expected_epoch: int
    active: frozenset[str]
    newly_raised: int
    last: str
    consumed: frozenset[str] = frozenset()  # pending sequential alarms this check acted on
    sequential: SequentialSetup | None = None  # the detector whose alarms those are


@dataclass(frozen=True, slots=True, kw_only=True)
class MonitorReply:
    """A store's answer for one monitor.

    ``due``: this batch made a check due (for a shared store, exactly one batch of the
    fleet gets each due check). ``counts``: the windows after the batch, when ``due`` or
    asked for. ``accepted``: for ``publish``, whether the update won.

    Sequential monitors: ``urgent``, a pending alarm names a group the board does not have
    active yet (a check should run now); ``evidence`` (per compared group: detector over
    threshold and the group of that comparison) and ``alarms`` (pending, by group), sent
    with ``counts`` when the query named the detector.
    """

    board: AlertBoard
    due: bool = False
    counts: Mapping[str, WindowCounts] | None = None
    accepted: bool = True
    urgent: bool = False
    evidence: Mapping[str, tuple[float, str | None]] | None = None
    alarms: Mapping[str, Alarm] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreReply:
    """Every monitor's reply for one call.

    ``degraded``: the shared store could not be used and the answer comes from this
    process's own windows; ``error``: the kind of the failed round trip in this call, if
    one failed (``timeout``, ``connection`` or ``response``; a bounded metric label).
    """

    monitors: Mapping[str, MonitorReply] = field(default_factory=dict)
    degraded: bool = False
    error: str | None = None


class StoreError(RuntimeError):
    """A store round trip failed; ``kind`` is a bounded label for metrics."""

    kind = "error"


class StoreTimeout(StoreError):
    """The store did not answer within its per-round-trip timeout."""

    kind = "timeout"


class StoreUnavailable(StoreError):
    """The store cannot be reached (refused, reset, loading, DNS)."""

    kind = "connection"


class StoreResponseError(StoreError):
    """The store answered with an error (script error, wrong type, out of memory, read-only)."""

    kind = "response"


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


@runtime_checkable
class MonitorStore(WindowStore, Protocol):
    """Windows plus the check schedule and alert boards of the rate monitors (module docstring)."""

    @property
    def scope(self) -> Scope:
        """``worker`` (this process's traffic) or ``fleet`` (every worker and replica)."""
        ...

    def record(self, batches: Sequence[MonitorBatch], *, now: float) -> StoreReply:
        """Add each monitor's outcomes, advance its schedule; counts of the monitors now due."""
        ...

    def snapshot(self, queries: Sequence[MonitorQuery], *, now: float) -> StoreReply:
        """Windows and boards, changing nothing but expiry."""
        ...

    def publish(self, updates: Sequence[BoardUpdate]) -> StoreReply:
        """Write check results, each only if its board is still at the expected epoch
        (and then drop the pending sequential alarms each one ``consumed``)."""
        ...

    def reset_evidence(self, monitor: str, setup: SequentialSetup, groups: Sequence[str] | None = None) -> None:
        """Forget the e-detector state of pairs involving ``groups`` (all when None) and their pending alarms."""
        ...


class _EventWindow:
    """A count window (optionally also timed): one (bucket, bit) per event, at most ``size``."""

    __slots__ = ("events", "positives")

    def __init__(self) -> None:
        self.events: deque[tuple[int, int]] = deque()
        self.positives = 0

    def add(self, values: Sequence[int], bucket: int, spec: WindowSpec) -> None:
        for value in values:
            bit = 1 if value else 0
            self.events.append((bucket, bit))
            self.positives += bit
        self.expire(bucket, spec)

    def expire(self, bucket: int, spec: WindowSpec) -> None:
        events = self.events
        if spec.seconds is not None:
            oldest = bucket - spec.buckets + 1
            while events and events[0][0] < oldest:
                self.positives -= events.popleft()[1]
        if spec.size is not None:
            while len(events) > spec.size:
                self.positives -= events.popleft()[1]

    def counts(self) -> WindowCounts:
        return WindowCounts(len(self.events), self.positives)


class _BucketWindow:
    """A time-only window: (bucket, n, positives) per bucket, oldest first; at most ``buckets`` entries."""

    __slots__ = ("buckets", "n", "positives")

    def __init__(self) -> None:
        self.buckets: deque[list[int]] = deque()
        self.n = 0
        self.positives = 0

    def add(self, values: Sequence[int], bucket: int, spec: WindowSpec) -> None:
        if values:
            n = len(values)
            ones = sum(1 for v in values if v)
            entries = self.buckets
            if not entries or entries[-1][0] < bucket:
                entries.append([bucket, n, ones])
            else:
                # Not the newest bucket (a clock behind another writer's): find or insert its bucket.
                index = len(entries) - 1
                while index >= 0 and entries[index][0] > bucket:
                    index -= 1
                if index >= 0 and entries[index][0] == bucket:
                    entries[index][1] += n
                    entries[index][2] += ones
                else:
                    entries.insert(index + 1, [bucket, n, ones])
            self.n += n
            self.positives += ones
        self.expire(bucket, spec)

    def expire(self, bucket: int, spec: WindowSpec) -> None:
        oldest = bucket - spec.buckets + 1
        entries = self.buckets
        while entries and entries[0][0] < oldest:
            _, n, ones = entries.popleft()
            self.n -= n
            self.positives -= ones

    def counts(self) -> WindowCounts:
        return WindowCounts(self.n, self.positives)


_Window = _EventWindow | _BucketWindow


class InMemoryWindowStore:
    """The embedded default: windows in this process, guarded by a lock.

    Memory per key: ``size`` bits for a count window, at most ``buckets`` (bucket, n,
    positives) triples for a time window, whatever the traffic. With several BentoML
    workers each worker keeps its own windows (each sees its share of the traffic); a
    shared store (Redis) gives every worker the same view.
    """

    def __init__(self) -> None:
        self._windows: dict[tuple[str, WindowSpec], _Window] = {}
        self._lock = threading.Lock()

    def _window(self, key: str, spec: WindowSpec) -> _Window:
        window = self._windows.get((key, spec))
        if window is None:
            window = _EventWindow() if spec.size is not None else _BucketWindow()
            self._windows[(key, spec)] = window
        return window

    def add(self, events: Mapping[str, Sequence[int]], *, now: float, spec: WindowSpec) -> None:
        bucket = spec.bucket(now)
        with self._lock:
            for key, values in events.items():
                self._window(key, spec).add(values, bucket, spec)

    def counts(self, keys: Sequence[str], *, now: float, spec: WindowSpec) -> dict[str, WindowCounts]:
        bucket = spec.bucket(now)
        result: dict[str, WindowCounts] = {}
        with self._lock:
            for key in keys:
                window = self._windows.get((key, spec))
                if window is None:
                    result[key] = WindowCounts(0, 0)
                    continue
                window.expire(bucket, spec)
                result[key] = window.counts()
        return result

    def clear(self) -> None:
        with self._lock:
            self._windows.clear()

    def forget(self, keys: Sequence[str], *, spec: WindowSpec) -> None:
        """Empty the windows of ``keys`` of shape ``spec`` (admin resets, policy changes)."""
        with self._lock:
            for key in keys:
                self._windows.pop((key, spec), None)
