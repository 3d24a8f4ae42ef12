"""Open-loop and closed-loop load drivers, independent of HTTP.

Closed loop (N users, each sends its next request when the last one returns) measures
saturation throughput, but hides queueing: when the server slows down, the users slow
down with it. Open loop sends at fixed times whatever happens to earlier requests, and
measures latency from the *scheduled* send time, so time spent waiting (in the client,
the socket, the server's queue, the batcher) is part of the figure, as a user sees it.

Both take ``send``, a coroutine function ``payload -> status code``, so the timing logic
is tested with a fake server and the HTTP client lives elsewhere (``loadtests._http``).

Both also take their ``clock`` and ``sleep`` as keyword arguments (the real ones by
default), so the unit tests run them in virtual time and check exact figures instead of
wall-clock thresholds that a busy shared machine breaks. ``timeout_s`` and ``drain_s`` are
enforced by the running event loop, so a virtual clock must be that loop's own ``time``.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, TypeVar

from loadtests._stats import LatencySummary, summarize

P = TypeVar("P")
Send = Callable[[P], Awaitable[int]]
Arrival = Literal["uniform", "poisson"]
Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[object]]

CLIENT_CAP = "client_in_flight_cap"
TIMEOUT = "timeout"


@dataclass(slots=True)
class RequestRecord:
    """One request, times in seconds from the start of the phase."""

    scheduled_s: float
    sent_s: float
    done_s: float
    status: int | None = None
    error: str | None = None
    finished: bool = False

    @property
    def unfinished(self) -> bool:
        return not self.finished

    @property
    def ok(self) -> bool:
        return self.error is None and self.status is not None and 200 <= self.status < 300

    @property
    def latency_s(self) -> float:
        """Latency as the user sees it: from when the request was due to its answer."""
        return self.done_s - self.scheduled_s

    @property
    def send_lag_s(self) -> float:
        """How late the client itself sent it (a busy client shows up here, not hidden)."""
        return self.sent_s - self.scheduled_s


@dataclass(slots=True)
class PhaseResult:
    """Every request of one phase, and the phase's own wall time."""

    records: list[RequestRecord] = field(default_factory=list)
    wall_s: float = 0.0
    stop_s: float | None = None  # closed loop: when the first user stopped sending
    window_start_s: float = 0.0  # closed loop: end of warm-up (and of the wait for a first answer)

    def window(self) -> tuple[float, float]:
        """The measurement window of a closed-loop phase: after warm-up, until sending stopped."""
        end = self.stop_s if self.stop_s is not None else self.wall_s
        return self.window_start_s, end

    def scheduled_in(self, start_s: float, end_s: float) -> list[RequestRecord]:
        """The requests *scheduled* within ``[start_s, end_s)``."""
        return [r for r in self.records if start_s <= r.scheduled_s < end_s]

    def summary(
        self, *, start_s: float = 0.0, end_s: float | None = None, texts_per_request: float = 1.0
    ) -> LatencySummary:
        """Summarise requests *scheduled* within ``[start_s, end_s)`` (warm-up excluded).

        Throughput is the successful completions inside the window (whenever they were
        sent) over the window's length: the rate a saturated server sustains, not an
        average over ramp-up and drain.
        """
        end = self.wall_s if end_s is None else end_s
        if end <= start_s:
            raise ValueError(f"empty window [{start_s}, {end}) for a phase of {self.wall_s:.3f}s")
        chosen = self.scheduled_in(start_s, end)
        ok = [r for r in chosen if r.ok]
        completed_in_window = sum(1 for r in self.records if r.ok and start_s <= r.done_s < end)
        base = summarize(
            [r.latency_s for r in ok],
            errors=len(chosen) - len(ok),
            duration_s=end - start_s,
            texts_per_request=texts_per_request,
        )
        rps = completed_in_window / (end - start_s)
        return base.model_copy(
            update={
                "throughput_rps": round(rps, 3),
                "texts_per_s": round(rps * texts_per_request, 3),
            }
        )

    def error_counts(self) -> dict[str, int]:
        """Errors by kind (HTTP status or exception name), for the report."""
        counts: dict[str, int] = {}
        for record in self.records:
            if record.ok:
                continue
            key = record.error or f"http_{record.status}"
            counts[key] = counts.get(key, 0) + 1
        return counts


def arrival_offsets(
    *,
    rate: float,
    duration_s: float,
    max_requests: int,
    arrival: Arrival = "uniform",
    seed: int = 0,
) -> list[float]:
    """Send times (seconds from start) for a constant arrival rate, bounded by time and count.

    ``uniform`` spaces requests exactly ``1/rate`` apart; ``poisson`` draws exponential
    gaps with mean ``1/rate`` (the same average rate, with realistic bursts).
    """
    if rate <= 0 or not math.isfinite(rate):
        raise ValueError(f"rate={rate} must be a positive number of requests per second")
    if duration_s <= 0:
        raise ValueError(f"duration_s={duration_s} must be positive")
    if max_requests < 1:
        raise ValueError(f"max_requests={max_requests} must be at least 1")
    if arrival == "uniform":
        count = min(max_requests, math.ceil(rate * duration_s - 1e-9))
        return [index / rate for index in range(count)]
    if arrival == "poisson":
        rng = random.Random(seed)
        offsets: list[float] = []
        now = 0.0
        while len(offsets) < max_requests:
            if now >= duration_s:
                break
            offsets.append(now)
            now += rng.expovariate(rate)
        return offsets
    raise ValueError(f"arrival={arrival!r} must be 'uniform' or 'poisson'")


async def _timed_send(
    send: Send[P],
    payload: P,
    record: RequestRecord,
    *,
    timeout_s: float,
    clock: Clock,
    t0: float,
) -> None:
    try:
        record.status = await asyncio.wait_for(send(payload), timeout=timeout_s)
    except TimeoutError:
        record.error = TIMEOUT
    except Exception as error:
        record.error = type(error).__name__
    record.done_s = clock() - t0
    record.finished = True


async def run_open_loop(
    send: Send[P],
    payloads: Sequence[P],
    offsets: Sequence[float],
    *,
    timeout_s: float = 10.0,
    max_in_flight: int = 2000,
    clock: Clock = time.perf_counter,
    sleep: Sleep = asyncio.sleep,
) -> PhaseResult:
    """Send ``payloads[i % len]`` at ``offsets[i]`` regardless of earlier completions.

    A request that would exceed ``max_in_flight`` is not sent and counts as an error
    (``client_in_flight_cap``), so the phase stays bounded even against a stalled server.
    Waits for every in-flight request (each bounded by ``timeout_s``) before returning.
    ``clock`` times the records and ``sleep`` waits for each send time: a ``sleep`` that
    wakes late stands for a busy client, whose lag must show in the latencies.
    """
    if not payloads:
        raise ValueError("run_open_loop needs at least one payload")
    result = PhaseResult()
    tasks: set[asyncio.Task[None]] = set()
    t0 = clock()
    for index, offset in enumerate(offsets):
        delay = offset - (clock() - t0)
        if delay > 0:
            await sleep(delay)
        sent = clock() - t0
        record = RequestRecord(scheduled_s=offset, sent_s=sent, done_s=sent)
        result.records.append(record)
        if len(tasks) >= max_in_flight:
            record.error = CLIENT_CAP
            record.finished = True
            continue
        task = asyncio.create_task(
            _timed_send(
                send, payloads[index % len(payloads)], record, timeout_s=timeout_s, clock=clock, t0=t0
            )
        )
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.gather(*tasks)
    result.wall_s = max([clock() - t0, *(r.done_s for r in result.records)])
    return result


async def run_closed_loop(
    send: Send[P],
    payloads: Sequence[P],
    *,
    concurrency: int,
    duration_s: float,
    max_requests: int,
    timeout_s: float = 10.0,
    warmup_s: float = 0.0,
    min_completions: int = 0,
    max_duration_s: float | None = None,
    drain_s: float = 5.0,
    clock: Clock = time.perf_counter,
    sleep: Sleep = asyncio.sleep,
) -> PhaseResult:
    """``concurrency`` users send back to back for ``duration_s``, bounded by ``max_requests``.

    A request's scheduled time is when its user became free to send it, so its latency
    is the server's response time; use this for saturation throughput, not for latency.

    A slow server answering in large batches completes requests in bursts, and a fixed
    window would count 0 or 1 burst; so the users go on past ``duration_s`` until
    ``min_completions`` successful answers arrived inside the measurement window (which
    starts at ``warmup_s`` or at the first answer, whichever is later), but never past
    ``max_duration_s``. ``result.window()`` gives that window. Requests still unanswered
    ``drain_s`` after the window closed are cancelled and left out of the result.
    ``clock`` times the records and the window; ``sleep`` waits for the hard cap.
    """
    if concurrency < 1:
        raise ValueError(f"concurrency={concurrency} must be at least 1")
    if not payloads:
        raise ValueError("run_closed_loop needs at least one payload")
    cap = duration_s if max_duration_s is None else max(duration_s, max_duration_s)
    result = PhaseResult()
    counter = 0
    first_ok: list[float] = []
    in_window = 0
    stopped = asyncio.Event()
    t0 = clock()

    def keep_going() -> bool:
        elapsed = clock() - t0
        if result.stop_s is not None or counter >= max_requests or elapsed >= cap:
            return False
        return elapsed < duration_s or in_window < min_completions

    async def user() -> None:
        nonlocal counter, in_window
        while keep_going():
            index = counter
            counter += 1
            now = clock() - t0
            record = RequestRecord(scheduled_s=now, sent_s=now, done_s=now)
            result.records.append(record)
            await _timed_send(
                send, payloads[index % len(payloads)], record, timeout_s=timeout_s, clock=clock, t0=t0
            )
            if record.ok:
                if not first_ok:
                    first_ok.append(record.done_s)
                if record.done_s >= max(warmup_s, first_ok[0]) and result.stop_s is None:
                    in_window += 1
        if result.stop_s is None:
            result.stop_s = clock() - t0
        stopped.set()

    async def watchdog() -> None:
        """Close the window at the hard cap even if every user is stuck on a request."""
        await sleep(max(0.0, cap - (clock() - t0)))
        if result.stop_s is None:
            result.stop_s = clock() - t0
        stopped.set()

    tasks = [asyncio.create_task(user()) for _ in range(concurrency)]
    guard = asyncio.create_task(watchdog())
    await stopped.wait()
    guard.cancel()
    # The window is over once any user stopped: give the others `drain_s` to finish their
    # request, then cancel the rest and forget them (they belong to no window).
    _, pending = await asyncio.wait(tasks, timeout=drain_s)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    if pending:
        result.records = [r for r in result.records if not r.unfinished]
    result.wall_s = clock() - t0
    result.window_start_s = max(warmup_s, first_ok[0]) if first_ok else warmup_s
    return result
