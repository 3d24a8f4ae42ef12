"""The check schedule and alert boards kept in this process, over any window store.

This is ``window_scope: worker``: every process counts its own outcomes towards the next
check and keeps its own alerts. It implements the same :class:`MonitorStore` contract as
the Redis store (same schedule arithmetic, same compare-and-set publish), so the rate
monitors run one code path whatever the scope, and the Redis store can be tested against
it call for call.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from fairgate.guardrails.store import (
    AlertBoard,
    BoardUpdate,
    CheckSchedule,
    InMemoryWindowStore,
    MonitorBatch,
    MonitorQuery,
    MonitorReply,
    MonitorStore,
    Scope,
    StoreReply,
    WindowCounts,
    WindowSpec,
    WindowStore,
    window_key,
)


@dataclass(slots=True)
class _Control:
    outcomes: int = 0
    slot: int | None = None
    board: AlertBoard = field(default_factory=AlertBoard)

    def advance(self, schedule: CheckSchedule, observed: int, now: float) -> bool:
        """Count a batch towards the schedule; True when it makes a check due."""
        if schedule.every_n is not None:
            before = self.outcomes
            self.outcomes += observed
            return observed > 0 and before // schedule.every_n != self.outcomes // schedule.every_n
        slot = schedule.slot(now)
        if slot is None:
            return False
        if self.slot is None:
            self.slot = slot  # the first batch arms the schedule
            return False
        if slot > self.slot:
            self.slot = slot
            return True
        return False


class LocalMonitorStore:
    """Windows of ``windows`` (default: a new :class:`InMemoryWindowStore`), schedule and
    alert boards in this process. Thread-safe: one lock around each call."""

    def __init__(self, *, windows: WindowStore | None = None) -> None:
        self._windows: WindowStore = windows if windows is not None else InMemoryWindowStore()
        self._controls: dict[str, _Control] = {}
        self._lock = threading.RLock()

    @property
    def scope(self) -> Scope:
        return "worker"

    @property
    def windows(self) -> WindowStore:
        return self._windows

    # -- windows ------------------------------------------------------------------------

    def add(self, events: Mapping[str, Sequence[int]], *, now: float, spec: WindowSpec) -> None:
        with self._lock:
            self._windows.add(events, now=now, spec=spec)

    def counts(self, keys: Sequence[str], *, now: float, spec: WindowSpec) -> dict[str, WindowCounts]:
        with self._lock:
            return self._windows.counts(keys, now=now, spec=spec)

    def clear(self) -> None:
        with self._lock:
            self._windows.clear()
            self._controls.clear()

    def forget(self, keys: Sequence[str], *, spec: WindowSpec) -> None:
        """Empty the windows of ``keys``; schedules and boards stay (admin resets, policy changes)."""
        from fairgate.guardrails.reload import forget_windows

        with self._lock:
            forget_windows(self._windows, keys, spec=spec)

    # -- schedule and boards ------------------------------------------------------------

    def _control(self, monitor: str) -> _Control:
        control = self._controls.get(monitor)
        if control is None:
            control = self._controls[monitor] = _Control()
        return control

    def _group_counts(self, query: MonitorQuery, now: float) -> dict[str, WindowCounts]:
        keys = [window_key(query.monitor, g) for g in query.groups]
        raw = self._windows.counts(keys, now=now, spec=query.spec)
        return {g: raw[k] for g, k in zip(query.groups, keys, strict=True)}

    def record(self, batches: Sequence[MonitorBatch], *, now: float) -> StoreReply:
        replies: dict[str, MonitorReply] = {}
        with self._lock:
            for batch in batches:
                events = {window_key(batch.monitor, g): v for g, v in batch.events.items() if v}
                if events:
                    self._windows.add(events, now=now, spec=batch.spec)
                control = self._control(batch.monitor)
                due = control.advance(batch.schedule, batch.observed, now)
                counts = self._group_counts(batch, now) if due else None
                replies[batch.monitor] = MonitorReply(board=control.board, due=due, counts=counts)
        return StoreReply(monitors=replies)

    def snapshot(self, queries: Sequence[MonitorQuery], *, now: float) -> StoreReply:
        with self._lock:
            return StoreReply(
                monitors={
                    q.monitor: MonitorReply(board=self._control(q.monitor).board, counts=self._group_counts(q, now))
                    for q in queries
                }
            )

    def publish(self, updates: Sequence[BoardUpdate]) -> StoreReply:
        replies: dict[str, MonitorReply] = {}
        with self._lock:
            for update in updates:
                control = self._control(update.monitor)
                board = control.board
                if board.epoch != update.expected_epoch:
                    replies[update.monitor] = MonitorReply(board=board, accepted=False)
                    continue
                control.board = AlertBoard(
                    active=frozenset(update.active),
                    raised=board.raised + update.newly_raised,
                    epoch=board.epoch + 1,
                    last=update.last,
                )
                replies[update.monitor] = MonitorReply(board=control.board)
        return StoreReply(monitors=replies)

    def adopt(self, monitor: str, board: AlertBoard) -> None:
        """Take over a board (the shared store's last state, when falling back to this one)."""
        with self._lock:
            control = self._control(monitor)
            last = board.last if board.last is not None else control.board.last
            control.board = AlertBoard(active=board.active, raised=board.raised, epoch=board.epoch, last=last)


def as_monitor_store(store: WindowStore | MonitorStore) -> MonitorStore:
    """``store`` itself when it keeps schedule and boards, else a :class:`LocalMonitorStore` over it."""
    if isinstance(store, MonitorStore):
        return store
    return LocalMonitorStore(windows=store)
