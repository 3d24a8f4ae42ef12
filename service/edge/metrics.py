"""What the edge refuses, as Prometheus metrics: shed requests, queue depth, auth failures.

The guard's metrics say what was decided; these say what was never decided because the
worker refused it first, which is what an operator needs to tell "quiet" from "shedding".
Labels are bounded by code (:data:`SHED_REASONS`, :data:`AUTH_FAILURE_REASONS`).

- ``fairgate_shed_total{reason}``: requests answered without a decision. ``concurrency``:
  past ``FAIRGATE_MAX_CONCURRENCY`` in flight (503); ``queue``: the batch queue was full
  (503); ``deadline``: no answer within ``FAIRGATE_REQUEST_TIMEOUT_S`` (503; these are the
  deadline timeouts); ``body``: refused by the body checks (400/413/415).
- ``fairgate_queue_items``: items waiting in this worker's batch queue (summed over workers).
- ``fairgate_auth_failures_total{reason}``: refused keys (``missing``, ``invalid``,
  ``admin_disabled``: an admin path while no ops key is configured).

The metric objects are made on first use, in the worker, not when the service module is
imported: BentoML switches prometheus_client to multiprocess mode in each worker before
serving, and a value created earlier would live in the wrong place. Each worker gets its
own :class:`EdgeMetrics` (``build_service`` makes one), passed to the middlewares that use it.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry, Counter, Gauge

__all__ = ["AUTH_FAILURE_REASONS", "SHED_REASONS", "EdgeMetrics"]

SHED_REASONS = ("concurrency", "queue", "deadline", "body")
AUTH_FAILURE_REASONS = ("missing", "invalid", "admin_disabled")


class EdgeMetrics:
    """The edge's counters and gauge, registered in ``registry`` (a fresh one per worker by default).

    The labelled children are looked up once, when the metrics are made (``.labels()`` per
    call costs a lock and a dict lookup), and the queue gauge is written only when its value
    changes: the batcher reports the depth twice per request.
    """

    def __init__(self, *, registry: CollectorRegistry | None = None) -> None:
        self._registry = registry
        self._made: _Made | None = None
        self._lock = threading.Lock()
        self._queue_depth: int | None = None  # the value last written to the gauge

    def _metrics(self) -> _Made:
        made = self._made
        if made is not None:
            return made
        with self._lock:
            if self._made is None:
                from prometheus_client import CollectorRegistry, Counter, Gauge

                registry = self._registry if self._registry is not None else CollectorRegistry()
                shed = Counter(
                    "fairgate_shed",
                    "Requests answered without a decision, by reason (concurrency, queue, deadline, body).",
                    ["reason"],
                    registry=registry,
                )
                queue = Gauge(
                    "fairgate_queue_items",
                    "Items waiting in the worker's batch queue.",
                    registry=registry,
                    multiprocess_mode="livesum",
                )
                auth = Counter(
                    "fairgate_auth_failures",
                    "Requests refused for their API key, by reason (missing, invalid, admin_disabled).",
                    ["reason"],
                    registry=registry,
                )
                # Every series from the start, so rate() sees 0 rather than nothing.
                queue.set(0)
                self._queue_depth = 0
                self._made = _Made(
                    shed={reason: shed.labels(reason=reason) for reason in SHED_REASONS},
                    queue=queue,
                    auth={reason: auth.labels(reason=reason) for reason in AUTH_FAILURE_REASONS},
                )
            return self._made

    def start(self) -> None:
        """Create every series now (a worker calls this once it serves)."""
        self._metrics()

    def shed(self, reason: str) -> None:
        if reason not in SHED_REASONS:
            raise ValueError(f"shed reason {reason!r} is not one of {', '.join(SHED_REASONS)}")
        self._metrics().shed[reason].inc()

    def queue_items(self, items: int) -> None:
        made = self._metrics()
        if items != self._queue_depth:
            self._queue_depth = items
            made.queue.set(items)

    def auth_failure(self, reason: str) -> None:
        self._metrics().auth[reason if reason in AUTH_FAILURE_REASONS else "invalid"].inc()


class _Made(NamedTuple):
    """The metric objects, made once: each label's child, and the gauge."""

    shed: dict[str, Counter]
    queue: Gauge
    auth: dict[str, Counter]
