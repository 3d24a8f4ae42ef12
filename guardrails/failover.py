"""A shared store that never fails a request: this process's own windows take over while it is down.

:class:`FailoverStore` sends every call to the shared store (Redis) and mirrors each
batch's outcomes into a :class:`LocalMonitorStore`, so this worker's own recent windows are
warm when they are needed. When a round trip fails (timeout, refused connection, an error
reply) the call is answered from the local store and marked ``degraded``; the guard then
applies ``rates.on_error`` to the items, counts the error and keeps judging on the local
windows, starting from the last alert board the fleet published (copied over at the
switch, so an active alert stays active).

While degraded, the shared store is tried again after a backoff that doubles from
``base_s`` to ``max_s`` with jitter (so a fleet does not reconnect in step); batches in
between do not wait for a timeout at all. The first round trip that succeeds ends the
outage: windows are shared again from that batch on, and the fleet's board replaces the
local one. Outcomes recorded during the outage stay in the local windows only: nothing
is buffered for replay, so memory stays bounded whatever the length of the outage.

Sequential e-detectors (``rates.method: sequential``) are not mirrored: while the shared
store answers, its detectors (one per pair for the fleet) alone decide, and the local
store's detectors are fed only the batches of outages. A worker's fallback detector is
therefore a per-worker detector over its own outage traffic, with that detector's own
budget: at most ``(1 - confidence) + n_w / arl`` false alarms in expectation over the
``n_w`` outcomes this worker records while degraded, over all its outages together.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

from fairgate.guardrails.local_store import LocalMonitorStore
from fairgate.guardrails.sequential import SequentialSetup
from fairgate.guardrails.store import (
    AlertBoard,
    BoardUpdate,
    MonitorBatch,
    MonitorQuery,
    MonitorReply,
    MonitorStore,
    Scope,
    StoreError,
    StoreReply,
    WindowCounts,
    WindowSpec,
)

logger = logging.getLogger(__name__)

Clock = Callable[[], float]
Q = TypeVar("Q", bound=MonitorQuery)


class Backoff:
    """Delays between attempts after consecutive failures: ``base_s * 2**(k-1)`` capped at
    ``max_s``, times a random factor in [0.5, 1) so that many workers spread their retries."""

    def __init__(self, *, base_s: float = 0.1, max_s: float = 5.0, rng: random.Random | None = None) -> None:
        if not 0 < base_s <= max_s:
            raise ValueError(f"backoff needs 0 < base_s ({base_s}) <= max_s ({max_s})")
        self.base_s = base_s
        self.max_s = max_s
        self._rng = rng if rng is not None else random.Random()

    def delay(self, failures: int) -> float:
        raw = min(self.max_s, self.base_s * 2.0 ** min(64, max(0, failures - 1)))
        return raw * (0.5 + 0.5 * self._rng.random())


class FailoverStore:
    """``primary`` (shared) with ``local`` as the fallback; see the module docstring.

    ``clock`` times the backoff only (monotonic); window times come from the caller.
    """

    def __init__(
        self,
        *,
        primary: MonitorStore,
        local: LocalMonitorStore | None = None,
        backoff: Backoff | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        self._primary = primary
        self._local = local if local is not None else LocalMonitorStore()
        self._backoff = backoff if backoff is not None else Backoff()
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._retry_at = 0.0
        self._down_since: float | None = None
        self._boards: dict[str, AlertBoard] = {}  # the fleet's boards as last seen

    @property
    def scope(self) -> Scope:
        return "fleet"

    @property
    def degraded(self) -> bool:
        """True while the local windows stand in for the shared store."""
        return self._down_since is not None

    @property
    def primary(self) -> MonitorStore:
        return self._primary

    @property
    def local(self) -> LocalMonitorStore:
        return self._local

    # -- health -------------------------------------------------------------------------

    def _may_try(self) -> bool:
        return self._down_since is None or self._clock() >= self._retry_at

    def _failed(self, error: StoreError, operation: str) -> None:
        now = self._clock()
        with self._lock:
            self._failures += 1
            delay = self._backoff.delay(self._failures)
            self._retry_at = now + delay
            first = self._down_since is None
            if first:
                self._down_since = now
                for monitor, board in self._boards.items():
                    self._local.adopt(monitor, board)
        if first:
            logger.warning(
                "shared window store failed on %s (%s): rate monitors use this worker's own windows "
                "(status degraded) until it answers; next try in %.2fs",
                operation,
                error,
                delay,
            )
        else:
            logger.debug("shared window store still failing (%s); next try in %.2fs", error, delay)

    def _succeeded(self) -> None:
        if self._down_since is None:
            return
        with self._lock:
            down_for = self._clock() - self._down_since
            failures = self._failures
            self._down_since = None
            self._failures = 0
        logger.warning(
            "shared window store answers again after %.1fs and %d failed attempts: windows shared again",
            down_for,
            failures,
        )

    def _remember(self, replies: Mapping[str, MonitorReply]) -> None:
        for monitor, reply in replies.items():
            board = reply.board
            if board.last is None and board.epoch != 0 and monitor in self._boards:
                board = dataclasses.replace(board, last=self._boards[monitor].last)
            self._boards[monitor] = board

    def _resync(self, queries: Sequence[Q]) -> list[Q]:
        """After an outage ask for every board in full: the local epochs mean nothing to the fleet."""
        return [dataclasses.replace(q, known_epoch=-1) for q in queries]

    # -- MonitorStore -------------------------------------------------------------------

    def record(self, batches: Sequence[MonitorBatch], *, now: float) -> StoreReply:
        error: StoreError | None = None
        if self._may_try():
            sent = self._resync(batches) if self.degraded else list(batches)
            try:
                reply = self._primary.record(sent, now=now)
            except StoreError as failure:
                error = failure
                self._failed(failure, "record")
            else:
                self._succeeded()
                self._remember(reply.monitors)
                # Keep this worker's windows warm; its detectors see outage traffic only (docstring).
                self._local.record([dataclasses.replace(b, sequential=None) for b in batches], now=now)
                return reply
        local = self._local.record(batches, now=now)
        return StoreReply(monitors=local.monitors, degraded=True, error=error.kind if error else None)

    def snapshot(self, queries: Sequence[MonitorQuery], *, now: float) -> StoreReply:
        error: StoreError | None = None
        if self._may_try():
            sent = self._resync(queries) if self.degraded else list(queries)
            try:
                reply = self._primary.snapshot(sent, now=now)
            except StoreError as failure:
                error = failure
                self._failed(failure, "snapshot")
            else:
                self._succeeded()
                self._remember(reply.monitors)
                return reply
        local = self._local.snapshot(queries, now=now)
        return StoreReply(monitors=local.monitors, degraded=True, error=error.kind if error else None)

    def publish(self, updates: Sequence[BoardUpdate]) -> StoreReply:
        if self.degraded:
            local = self._local.publish(updates)
            return StoreReply(monitors=local.monitors, degraded=True)
        try:
            reply = self._primary.publish(updates)
        except StoreError as failure:
            self._failed(failure, "publish")
            # The check is lost (it was computed on the fleet's windows); the board stays.
            refused = {
                u.monitor: MonitorReply(board=self._boards.get(u.monitor, AlertBoard()), accepted=False)
                for u in updates
            }
            return StoreReply(monitors=refused, degraded=True, error=failure.kind)
        self._remember(reply.monitors)
        return reply

    # -- WindowStore --------------------------------------------------------------------

    def add(self, events: Mapping[str, Sequence[int]], *, now: float, spec: WindowSpec) -> None:
        self._local.add(events, now=now, spec=spec)
        if self._may_try():
            try:
                self._primary.add(events, now=now, spec=spec)
            except StoreError as failure:
                self._failed(failure, "add")
            else:
                self._succeeded()

    def counts(self, keys: Sequence[str], *, now: float, spec: WindowSpec) -> dict[str, WindowCounts]:
        if self._may_try():
            try:
                counts = self._primary.counts(keys, now=now, spec=spec)
            except StoreError as failure:
                self._failed(failure, "counts")
            else:
                self._succeeded()
                return counts
        return self._local.counts(keys, now=now, spec=spec)

    def clear(self) -> None:
        self._local.clear()
        self._boards.clear()
        self._primary.clear()

    def reset_evidence(self, monitor: str, setup: SequentialSetup, groups: Sequence[str] | None = None) -> None:
        """Forget sequential evidence in the local fallback and in the shared store (whose failure
        propagates, as for :meth:`forget`)."""
        self._local.reset_evidence(monitor, setup, groups)
        self._primary.reset_evidence(monitor, setup, groups)

    def forget(self, keys: Sequence[str], *, spec: WindowSpec) -> None:
        """Empty the windows of ``keys`` in the local fallback and in the shared store.

        The shared store's failure propagates (:class:`StoreError`): an operator asked for
        the fleet's windows to be emptied, and must hear that they were not.
        """
        from fairgate.guardrails.reload import forget_windows

        self._local.forget(keys, spec=spec)
        forget_windows(self._primary, keys, spec=spec)
