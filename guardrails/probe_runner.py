"""Run the counterfactual probe off the request path: one background thread, a bounded queue.

Why: a probe scores the sampled items' group-swapped variants, up to
``counterfactual.max_variants_per_batch`` rows per model. Inline, after the decision, that is
several requests' worth of model time added to one batch, and every request queued behind
that batch waits for it: measured on the default models (issue 14), the probe alone took
the half-load p99 from about 40 ms to 80-130 ms. The probe is a measurement; no answer
depends on it, so no answer should wait for it.

So the service hands each decided batch to :class:`BackgroundProbe` and answers at once.
One daemon thread takes the batches in order and runs the probe. It asks the operating
system for the lowest CPU priority it may have (``nice`` 19 on Linux, best effort), so on
a busy machine the requests' threads get the cores first and the probe uses the time they
leave. The queue is bounded (``max_batches``): when the probe falls behind, a new batch is
left unprobed and counted (``dropped``, ``fairgate_counterfactual_dropped_batches_total``),
never buffered without bound and never waited for. At saturation the probe therefore
samples less than ``counterfactual.sample``; the status says how much less.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from queue import Full, Queue

__all__ = ["LOWEST_PRIORITY", "BackgroundProbe"]

logger = logging.getLogger(__name__)

# Linux's largest nice value: the scheduler runs this thread when nothing else wants the core.
LOWEST_PRIORITY = 19
DEFAULT_MAX_BATCHES = 8

ProbeJob = Callable[[], object]


class BackgroundProbe:
    """A single background thread that runs submitted probe jobs in order, from a bounded queue.

    ``submit(job)`` never blocks: it queues the job (a callable that probes one decided
    batch) or, when ``max_batches`` jobs already wait, drops it and calls ``on_dropped``.
    A job that raises is logged and the thread goes on. ``priority`` is the nice value the
    thread asks for (None leaves it as it is). The thread starts on the first submit, so
    building one does no work; :meth:`close` stops it. Thread-safe.
    """

    def __init__(
        self,
        *,
        max_batches: int = DEFAULT_MAX_BATCHES,
        on_dropped: Callable[[], None] = lambda: None,
        priority: int | None = LOWEST_PRIORITY,
        name: str = "fairgate-probe",
    ) -> None:
        if max_batches < 1:
            raise ValueError(f"max_batches={max_batches} must be at least 1 (it bounds the batches waiting)")
        self.max_batches = max_batches
        self._queue: Queue[ProbeJob | None] = Queue(maxsize=max_batches)
        self._on_dropped = on_dropped
        self._priority = priority
        self._name = name
        self._lock = threading.Lock()  # the thread's start and stop, and the counts
        self._thread: threading.Thread | None = None
        self._closed = False
        self._dropped = 0
        self._done = 0

    @property
    def pending(self) -> int:
        """Jobs queued or running."""
        return self._queue.unfinished_tasks

    @property
    def dropped(self) -> int:
        """Jobs left out because the queue was full, since this runner was built."""
        with self._lock:
            return self._dropped

    @property
    def done(self) -> int:
        """Jobs run to the end (raised or not)."""
        with self._lock:
            return self._done

    def submit(self, job: ProbeJob) -> bool:
        """Queue ``job``; False when the runner is closed, False and ``on_dropped`` when the queue is full."""
        with self._lock:  # put under the lock too: a close() cannot slip its stop marker in before the job
            if self._closed:
                return False
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name=self._name, daemon=True)
                self._thread.start()
            try:
                self._queue.put_nowait(job)  # never blocks
                return True
            except Full:
                self._dropped += 1
        try:
            self._on_dropped()
        except Exception:  # counting must never fail the request that submitted
            logger.exception("counting a dropped probe batch failed")
        return False

    def wait(self, timeout_s: float) -> bool:
        """Wait until every queued job has run; False if some still wait after ``timeout_s``.

        For tests and reports that read the probe's figures after their requests; the
        service never waits.
        """
        condition = self._queue.all_tasks_done
        with condition:
            return condition.wait_for(lambda: self._queue.unfinished_tasks == 0, timeout=timeout_s)

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop taking jobs, let the queued ones run (up to ``timeout_s``), stop the thread."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            thread = self._thread
        if thread is None:
            return
        try:
            self._queue.put(None, timeout=timeout_s)
        except Full:
            logger.warning("the probe's queue did not drain in %.1fs; its thread stops with the process", timeout_s)
            return
        thread.join(timeout_s)

    def _loop(self) -> None:
        self._lower_priority()
        while True:
            job = self._queue.get()  # close() puts None to stop it
            try:
                if job is None:
                    return
                job()
            except Exception:  # a measurement: log it and take the next batch
                logger.exception("a background counterfactual probe failed; the decisions stand")
            finally:
                if job is not None:
                    with self._lock:
                        self._done += 1
                self._queue.task_done()

    def _lower_priority(self) -> None:
        """Ask for ``priority`` for this thread only (Linux schedules threads by their own nice)."""
        if self._priority is None or not hasattr(os, "setpriority"):
            return
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), self._priority)
        except OSError as error:  # not fatal: the probe still runs, only sooner than it could
            logger.warning("the probe thread keeps its CPU priority (setpriority failed: %s)", error)
