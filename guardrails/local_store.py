"""The check schedule and alert boards kept in this process, over any window store.

This is ``window_scope: worker``: every process counts its own outcomes towards the next
check and keeps its own alerts. It implements the same :class:`MonitorStore` contract as
the Redis store (same schedule arithmetic, same compare-and-set publish), so the rate
monitors run one code path whatever the scope, and the Redis store can be tested against
it call for call. That includes the e-detectors of ``rates.method: sequential``: a batch
that names one updates this store's :class:`~fairgate.guardrails.sequential.SequentialDetector`
for the monitor, and its alarms wait here until a published check acts on them.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from fairgate.guardrails.sequential import (
    Alarm,
    SequentialDetector,
    SequentialSetup,
    batch_counts,
    merge_alarms,
)
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
class _Evidence:
    """One monitor's e-detector and the alarms no published check has acted on yet."""

    setup: SequentialSetup
    detector: SequentialDetector
    alarms: dict[str, Alarm] = field(default_factory=dict)

    def update(self, events: Mapping[str, Sequence[int]], active: frozenset[str], due: bool) -> bool:
        """Feed one batch; True when an alarm names a group not yet alerting (a check is urgent).

        Alarms only for groups already alerting are dropped unless a check is due anyway:
        there is nothing to raise (the rule :class:`~fairgate.guardrails.rates.RateMonitor` had).
        """
        merge_alarms(self.alarms, self.detector.update(batch_counts(events)))
        urgent = any(g not in active for g in self.alarms)
        if not due and not urgent:
            self.alarms.clear()
        return urgent


@dataclass(slots=True)
class _Control:
    outcomes: int = 0
    slot: int | None = None
    board: AlertBoard = field(default_factory=AlertBoard)
    evidence: _Evidence | None = None

    def sequential(self, setup: SequentialSetup) -> _Evidence:
        """The detector of ``setup``, new (empty) when the monitor had none or another setup's."""
        if self.evidence is None or self.evidence.setup != setup:
            self.evidence = _Evidence(setup=setup, detector=setup.detector())
        return self.evidence

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
                urgent = False
                if batch.sequential is not None:
                    urgent = control.sequential(batch.sequential).update(batch.events, control.board.active, due)
                replies[batch.monitor] = self._reply(control, batch, now, due=due, urgent=urgent, counted=due)
        return StoreReply(monitors=replies)

    def snapshot(self, queries: Sequence[MonitorQuery], *, now: float) -> StoreReply:
        with self._lock:
            return StoreReply(
                monitors={q.monitor: self._reply(self._control(q.monitor), q, now, counted=True) for q in queries}
            )

    def _reply(
        self, control: _Control, query: MonitorQuery, now: float, *, counted: bool, due: bool = False,
        urgent: bool = False,
    ) -> MonitorReply:
        if not counted:
            return MonitorReply(board=control.board, due=due, urgent=urgent)
        evidence = None
        alarms: dict[str, Alarm] = {}
        if query.sequential is not None:
            held = control.sequential(query.sequential)
            evidence, alarms = held.detector.evidence(), dict(held.alarms)
        return MonitorReply(
            board=control.board, due=due, counts=self._group_counts(query, now), urgent=urgent, evidence=evidence,
            alarms=alarms,
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
                if control.evidence is not None:
                    for group in update.consumed:
                        control.evidence.alarms.pop(group, None)
                replies[update.monitor] = MonitorReply(board=control.board)
        return StoreReply(monitors=replies)

    def reset_evidence(self, monitor: str, setup: SequentialSetup, groups: Sequence[str] | None = None) -> None:
        with self._lock:
            held = self._control(monitor).sequential(setup)
            held.detector.reset(groups)
            for group in list(held.alarms) if groups is None else groups:
                held.alarms.pop(group, None)

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
    wanted = ("scope", "record", "snapshot", "publish", "reset_evidence")
    missing = [name for name in wanted if not hasattr(store, name)]
    if len(missing) < len(wanted):  # a monitor store written to an older protocol: say so, never downgrade it
        raise TypeError(
            f"{type(store).__name__} implements part of MonitorStore but lacks {missing}; add them "
            "(guardrails/store.py) or pass a plain WindowStore to keep schedule and boards in process"
        )
    return LocalMonitorStore(windows=store)
