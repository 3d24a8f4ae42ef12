"""Opportunistic micro-batching: whatever queued while the last batch ran is the next batch.

No timer and no learned wait: an idle worker runs a lone request at once, a busy one
runs everything that arrived meanwhile (up to ``max_batch_size`` items) as one batch, so
the batch size follows the load. BentoML's adaptive dispatcher (``batchable=True``)
stays available with ``FAIRGATE_BATCHING=bentoml``; it is not the default because its
queue has no bound (``CorkDispatcher._queue`` is a plain deque, "TODO: maxlen" in
BentoML 1.4.39) and it cancels calls it predicts will miss its latency budget from a
model it is still learning (with a 200 ms budget, 245 of the first 640 calls from 16
concurrent clients got 503; docs/service.md, "Batching").

The queue is bounded (``max_queue_items``): past it, callers get :class:`QueueFull` at
once instead of waiting in an unbounded line.

One batch at a time is the batching policy, not a lock: one drain task awaits each batch
before taking the next, which is what makes a batch whatever queued meanwhile. The
batcher's thread only keeps the batch off the event loop. The state a batch shares (the
guard's rate monitors) is protected by the guard's lock, which the pipeline holds around
the batch (``fairgate.service._pipeline``); the batcher protects nothing of it.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = ["MicroBatcher", "QueueFull"]

logger = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


class QueueFull(RuntimeError):
    """The batch queue holds ``max_queue_items`` items already; retry later."""


@dataclass
class _Job(Generic[T, R]):
    items: Sequence[T]
    future: asyncio.Future[list[R]]


class MicroBatcher(Generic[T, R]):
    """Joins concurrent ``submit`` calls into batches for ``run``, one batch at a time.

    ``run`` takes the joined items and returns one result per item, in order. It runs on
    the batcher's own thread, never on the event loop, and never twice at once: the one
    drain task awaits each batch before it takes the next (the module docstring says why
    that is scheduling, not locking). A request's items always stay in one batch (a
    request larger than ``max_batch_size`` runs alone).
    """

    def __init__(
        self,
        *,
        run: Callable[[list[T]], list[R]],
        max_batch_size: int,
        max_queue_items: int,
        on_depth: Callable[[int], None] | None = None,
    ) -> None:
        """``on_depth`` hears the number of queued items each time it changes (a gauge)."""
        if max_batch_size < 1 or max_queue_items < 1:
            raise ValueError("max_batch_size and max_queue_items must be at least 1")
        self._run = run
        self._max_batch = max_batch_size
        self._max_queue = max_queue_items
        self._queue: collections.deque[_Job[T, R]] = collections.deque()
        self._queued_items = 0
        self._on_depth = on_depth
        # One named thread for the batches: the drain loop never has two in flight.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fairgate-batch")
        self._drainer: asyncio.Task[None] | None = None

    async def submit(self, items: Sequence[T]) -> list[R]:
        """Results for ``items``, computed in some batch together with other callers' items."""
        if not items:
            return []
        if self._queued_items + len(items) > self._max_queue:
            raise QueueFull(
                f"the batch queue is full ({self._queued_items} items queued, limit {self._max_queue}); "
                "retry shortly or raise FAIRGATE_MAX_QUEUE_ITEMS"
            )
        loop = asyncio.get_running_loop()
        job: _Job[T, R] = _Job(items=items, future=loop.create_future())
        self._queue.append(job)
        self._queued_items += len(items)
        self._depth_changed()
        if self._drainer is None or self._drainer.done():
            self._drainer = loop.create_task(self._drain())
        return await job.future

    def _take_batch(self) -> list[_Job[T, R]]:
        jobs = [self._queue.popleft()]
        size = len(jobs[0].items)
        while self._queue and size + len(self._queue[0].items) <= self._max_batch:
            job = self._queue.popleft()
            size += len(job.items)
            jobs.append(job)
        self._queued_items -= size
        self._depth_changed()
        return jobs

    def _depth_changed(self) -> None:
        if self._on_depth is not None:
            self._on_depth(self._queued_items)

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        while self._queue:
            jobs = self._take_batch()
            batch = [item for job in jobs for item in job.items]
            try:
                results = await loop.run_in_executor(self._executor, self._run, batch)
                if len(results) != len(batch):
                    raise RuntimeError(f"batch function returned {len(results)} results for {len(batch)} items")
            except Exception as error:
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(error)
                continue
            start = 0
            for job in jobs:
                end = start + len(job.items)
                if not job.future.done():  # the caller may have gone away
                    job.future.set_result(results[start:end])
                start = end

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
