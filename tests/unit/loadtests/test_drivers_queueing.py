"""The drivers against a fake server: open loop shows queueing delay, closed loop hides it.

Every driver test runs in virtual time: an event loop whose clock jumps straight to the
next timer instead of waiting for it, with the loop's own ``time`` passed as the drivers'
``clock``. ``asyncio.sleep``, ``wait_for`` timeouts and the drain all follow that clock, so
a fake server's service times are exact, the expected figures follow by arithmetic, and
nothing depends on how fast or how busy the machine is (speed is the benchmark's job).
Times are chosen so that no decision falls on a tie that float rounding could flip.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import pytest

from loadtests._drivers import (
    CLIENT_CAP,
    TIMEOUT,
    Clock,
    PhaseResult,
    arrival_offsets,
    run_closed_loop,
    run_open_loop,
)

T = TypeVar("T")
EXACT = 1e-9  # virtual time is exact up to float rounding


class _AdvancingSelector(selectors.DefaultSelector):
    """Polls without blocking; when nothing is ready, jumps the clock over the wait instead."""

    def __init__(self, advance: Callable[[float], None]) -> None:
        super().__init__()
        self._advance = advance

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        events = super().select(0)
        if events or timeout == 0:
            return events
        if timeout is None:
            # Nothing ready and no timer: a real loop would block for ever, so fail loudly.
            raise RuntimeError("virtual-time loop deadlocked: no timer and no I/O to wait for")
        self._advance(timeout)
        return events


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An event loop whose ``time()`` starts at 0 and only moves when every task waits."""

    def __init__(self) -> None:
        self._now = 0.0
        super().__init__(selector=_AdvancingSelector(self._advance))

    def time(self) -> float:
        return self._now

    def _advance(self, seconds: float) -> None:
        self._now += seconds


def run_virtual(main: Callable[[Clock], Coroutine[Any, Any, T]]) -> T:
    """Run ``main(clock)`` on a virtual-time loop, ``clock`` being that loop's own time."""
    with asyncio.Runner(loop_factory=VirtualTimeLoop) as runner:
        return runner.run(main(runner.get_loop().time))


class FakeServer:
    """Serves one request at a time, each taking ``service_s``: a server with capacity 1/service_s."""

    def __init__(self, service_s: float, status: int = 200) -> None:
        self.service_s = service_s
        self.status = status
        self.lock = asyncio.Lock()
        self.served = 0

    async def __call__(self, payload: int) -> int:
        async with self.lock:
            await asyncio.sleep(self.service_s)
            self.served += 1
            return self.status


class BurstServer:
    """Answers everything pending once every ``period_s``: a slow server with large batches."""

    def __init__(self, period_s: float) -> None:
        self.period_s = period_s

    async def __call__(self, payload: int) -> int:
        loop = asyncio.get_running_loop()
        now = loop.time()
        next_tick = (now // self.period_s + 1) * self.period_s
        await asyncio.sleep(next_tick - now)
        return 200


def test_the_virtual_loop_jumps_over_waits() -> None:
    """The harness itself: an hour's sleep takes no real time and lands exactly on the hour."""

    async def go(clock: Clock) -> tuple[float, float]:
        before = clock()
        await asyncio.sleep(3600.0)
        return before, clock()

    assert run_virtual(go) == (0.0, 3600.0)


def test_open_loop_below_capacity_answers_in_the_service_time() -> None:
    """Offered 40/s against a capacity of 200/s, nothing queues: each latency is the 5 ms service."""
    server = FakeServer(0.005)
    offsets = arrival_offsets(rate=40.0, duration_s=0.5, max_requests=1000)
    result = run_virtual(lambda clock: run_open_loop(server, [1, 2, 3], offsets, clock=clock))

    summary = result.summary()
    assert server.served == 20
    assert summary.ok == 20 and summary.errors == 0
    assert [r.sent_s for r in result.records] == pytest.approx(offsets, abs=EXACT)
    assert [r.latency_s for r in result.records] == pytest.approx([0.005] * 20, abs=EXACT)
    assert summary.p50_ms == 5.0 and summary.max_ms == 5.0


def test_open_loop_over_capacity_measures_the_queue_from_the_scheduled_time() -> None:
    """Offered 100/s against 50/s: sent on schedule anyway, so the queue grows into the latency.

    Request ``i`` is due at ``i * 10 ms`` and answered at ``(i + 1) * 20 ms`` (the server
    works back to back), so its latency is ``20 ms + i * 10 ms``: 510 ms for the last one,
    where a closed loop on the same server reports 20 ms.
    """
    server = FakeServer(0.02)
    offsets = arrival_offsets(rate=100.0, duration_s=0.5, max_requests=1000)
    result = run_virtual(lambda clock: run_open_loop(server, [1], offsets, timeout_s=5.0, clock=clock))

    assert len(result.records) == 50
    assert [r.send_lag_s for r in result.records] == pytest.approx([0.0] * 50, abs=EXACT)
    expected = [0.02 + 0.01 * i for i in range(50)]
    assert [r.latency_s for r in result.records] == pytest.approx(expected, abs=EXACT)
    assert result.summary().max_ms == 510.0


def test_open_loop_counts_the_clients_own_lag_in_the_latency() -> None:
    """A client that wakes 2 ms late (busy loop, slow timer) sends late; the user still waits.

    Latency runs from the scheduled time, so it is the 2 ms lag plus the 5 ms service, and
    the lag is reported on its own; measuring from the actual send would hide it. The lag
    does not accumulate: each send is aimed at its own scheduled time, not at the last send.
    """

    async def late_sleep(delay: float) -> None:
        await asyncio.sleep(delay + 0.002)

    server = FakeServer(0.005)
    offsets = arrival_offsets(rate=40.0, duration_s=0.25, max_requests=1000)
    result = run_virtual(lambda clock: run_open_loop(server, [1], offsets, clock=clock, sleep=late_sleep))

    # The first request is due at once, so no sleep and no lag; every later one is 2 ms late.
    assert [r.send_lag_s for r in result.records] == pytest.approx([0.0] + [0.002] * 9, abs=EXACT)
    assert [r.latency_s for r in result.records] == pytest.approx([0.005] + [0.007] * 9, abs=EXACT)


def test_closed_loop_hides_that_queue() -> None:
    """One user on the same 50/s server: it only ever waits for its own request, 20 ms each."""
    server = FakeServer(0.02)
    result = run_virtual(
        lambda clock: run_closed_loop(server, [1], concurrency=1, duration_s=0.51, max_requests=1000, clock=clock)
    )

    # Sends at 0, 20, ..., 500 ms; at 520 ms the 510 ms duration is over.
    assert len(result.records) == 26
    assert [r.latency_s for r in result.records] == pytest.approx([0.02] * 26, abs=EXACT)
    summary = result.summary(end_s=0.51)
    assert summary.ok == 26
    assert summary.p99_ms == 20.0


@pytest.mark.parametrize("concurrency", [1, 4])
def test_closed_loop_throughput_is_the_servers_capacity_not_the_users(concurrency: int) -> None:
    """More users do not make a 50/s server faster: they only queue, up to one request each.

    The window [10 ms, 510 ms) sees the answers at 20, 40, ..., 500 ms: 25 in 0.5 s.
    """
    server = FakeServer(0.02)
    result = run_virtual(
        lambda clock: run_closed_loop(
            server, [1], concurrency=concurrency, duration_s=0.51, max_requests=1000, clock=clock
        )
    )

    assert result.summary(start_s=0.01, end_s=0.51).throughput_rps == 50.0
    # The queue a closed loop can build is bounded by its users: each waits behind the others.
    assert max(r.latency_s for r in result.records) == pytest.approx(concurrency * 0.02, abs=EXACT)


def test_closed_loop_stops_at_the_request_cap() -> None:
    """Nine requests of 250 ms for four users, in a 10 s phase: the cap ends it, not the clock.

    Requests 0-3 go at 0 s and the server answers one every 250 ms; the users send requests
    4-8 as they are freed (250 ms to 1.25 s), and the next user freed (at 1.5 s) finds the
    cap reached and stops. The last answer arrives at 9 x 250 ms = 2.25 s.
    """
    server = FakeServer(0.25)
    result = run_virtual(
        lambda clock: run_closed_loop(server, [1, 2], concurrency=4, duration_s=10.0, max_requests=9, clock=clock)
    )

    assert len(result.records) == 9 and server.served == 9
    assert result.stop_s == pytest.approx(1.5, abs=EXACT)
    assert result.wall_s == pytest.approx(2.25, abs=EXACT)


def test_timeouts_and_the_in_flight_cap_count_as_errors_by_kind() -> None:
    """A stalled server (1 s per request) with a 100 ms timeout and at most 3 requests in flight.

    Requests due at 0, 10 and 20 ms are sent and time out 100 ms later; those due at 30 and
    40 ms find 3 in flight and are not sent. The phase ends with the last timeout, at
    120 ms, not when the slow server would have answered.
    """
    server = FakeServer(1.0)
    offsets = arrival_offsets(rate=100.0, duration_s=0.05, max_requests=100)
    result = run_virtual(lambda clock: run_open_loop(server, [1], offsets, timeout_s=0.1, max_in_flight=3, clock=clock))

    assert result.error_counts() == {TIMEOUT: 3, CLIENT_CAP: 2}
    assert [r.error for r in result.records] == [TIMEOUT] * 3 + [CLIENT_CAP] * 2
    assert [r.latency_s for r in result.records[:3]] == pytest.approx([0.1] * 3, abs=EXACT)
    assert result.summary().ok == 0
    assert result.wall_s == pytest.approx(0.12, abs=EXACT)


def test_http_errors_are_not_counted_as_throughput() -> None:
    """503s are answers, but not served work: they are errors by status and add no throughput."""
    server = FakeServer(0.001, status=503)
    result = run_virtual(
        lambda clock: run_closed_loop(server, [1], concurrency=2, duration_s=0.1, max_requests=10, clock=clock)
    )

    summary = result.summary(end_s=0.2)
    assert summary.ok == 0
    assert summary.throughput_rps == 0.0
    assert result.error_counts() == {"http_503": 10}


@pytest.mark.parametrize(
    ("warmup_s", "window", "wall_s"),
    [
        # Bursts at 125, 250, 375 ms: the window opens at the first answer (125 ms), not at
        # 0, and stays open until the third burst brings the 12th answer.
        (0.0, (0.125, 0.375), 0.5),
        # A warm-up ending after the first answer opens the window at its own end (200 ms):
        # only the bursts at 250, 375 and 500 ms count.
        (0.2, (0.2, 0.5), 0.625),
    ],
)
def test_closed_loop_extends_past_its_duration_until_enough_answers_are_measured(
    warmup_s: float, window: tuple[float, float], wall_s: float
) -> None:
    """A server answering 4 requests every 125 ms, asked for 50 ms and at least 12 answers.

    A 50 ms window would hold no answer at all; the users go on until 12 answers landed
    inside the window, then the requests still in flight finish one burst later.
    """
    result = run_virtual(
        lambda clock: run_closed_loop(
            BurstServer(0.125),
            [1],
            concurrency=4,
            duration_s=0.05,
            max_requests=10_000,
            warmup_s=warmup_s,
            min_completions=12,
            max_duration_s=2.0,
            clock=clock,
        )
    )

    start, end = result.window()
    assert (start, end) == pytest.approx(window, abs=EXACT)
    assert result.wall_s == pytest.approx(wall_s, abs=EXACT)
    answered = [r for r in result.records if r.ok and start - EXACT <= r.done_s <= end + EXACT]
    assert len(answered) == 12


def test_closed_loop_never_passes_its_hard_cap() -> None:
    """Users stuck on a request (answers at 375 and 750 ms) cannot hold the window past the 500 ms cap.

    The window closes at the cap itself, while both users still wait for the 750 ms burst;
    those answers drain afterwards but belong to no window.
    """
    result = run_virtual(
        lambda clock: run_closed_loop(
            BurstServer(0.375),
            [1],
            concurrency=2,
            duration_s=0.05,
            max_requests=10_000,
            min_completions=10_000,
            max_duration_s=0.5,
            clock=clock,
        )
    )

    assert result.stop_s == pytest.approx(0.5, abs=EXACT)
    assert result.window()[1] == pytest.approx(0.5, abs=EXACT)
    assert result.wall_s == pytest.approx(0.75, abs=EXACT)


def test_closed_loop_cancels_answers_still_missing_after_the_drain() -> None:
    """Three instant answers, then a server stuck for 30 s (longer than the 10 s timeout).

    The 10 ms phase closes at 10 ms; the two stuck requests get the 100 ms drain and are
    then cancelled and dropped, so the phase ends at 110 ms with only the finished three.
    """

    class Stuck:
        def __init__(self) -> None:
            self.calls = 0

        async def __call__(self, payload: int) -> int:
            self.calls += 1
            if self.calls > 3:
                await asyncio.sleep(30)
            return 200

    server = Stuck()
    result = run_virtual(
        lambda clock: run_closed_loop(
            server, [1], concurrency=2, duration_s=0.01, max_requests=100, drain_s=0.1, clock=clock
        )
    )

    assert server.calls == 5
    assert len(result.records) == 3
    assert all(r.finished and r.ok for r in result.records)
    assert result.error_counts() == {}
    assert result.stop_s == pytest.approx(0.01, abs=EXACT)
    assert result.wall_s == pytest.approx(0.11, abs=EXACT)


def test_open_loop_with_the_real_clock_and_sleep_keeps_its_schedule() -> None:
    """The defaults (real clock, real sleep) are wired, checked without any speed threshold.

    On a real loop a send can be late (a busy machine) but never early, requests go out in
    order, and no answer comes faster than the 5 ms the server sleeps: facts that hold
    however slow the machine is. The 1 µs slack only absorbs timer rounding.
    """

    async def go() -> tuple[FakeServer, list[float], PhaseResult]:
        server = FakeServer(0.005)
        offsets = arrival_offsets(rate=400.0, duration_s=0.025, max_requests=1000)
        return server, offsets, await run_open_loop(server, [1], offsets)

    server, offsets, result = asyncio.run(go())
    assert server.served == len(offsets) == 10
    assert [r.scheduled_s for r in result.records] == offsets
    sent = [r.sent_s for r in result.records]
    assert sent == sorted(sent)
    assert all(r.send_lag_s >= -1e-6 for r in result.records)
    assert all(r.ok and r.done_s - r.sent_s >= 0.005 - 1e-6 for r in result.records)
