"""The drivers against a fake server: open loop shows queueing delay, closed loop hides it."""

from __future__ import annotations

import asyncio

from loadtests._drivers import CLIENT_CAP, TIMEOUT, arrival_offsets, run_closed_loop, run_open_loop


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


def test_open_loop_below_capacity_has_latency_near_the_service_time() -> None:
    async def go():
        server = FakeServer(0.005)  # capacity 200/s
        offsets = arrival_offsets(rate=40.0, duration_s=0.5, max_requests=1000)
        return await run_open_loop(server, [1, 2, 3], offsets), server

    result, server = asyncio.run(go())
    summary = result.summary()
    assert server.served == 20
    assert summary.ok == 20 and summary.errors == 0
    assert summary.p50_ms is not None and 4.0 <= summary.p50_ms < 40.0


def test_open_loop_over_capacity_measures_the_queue_from_the_scheduled_time() -> None:
    async def go():
        server = FakeServer(0.02)  # capacity 50/s, offered 100/s for 0.5 s
        offsets = arrival_offsets(rate=100.0, duration_s=0.5, max_requests=1000)
        return await run_open_loop(server, [1], offsets, timeout_s=5.0)

    result = asyncio.run(go())
    latencies = [r.latency_s for r in result.records]
    assert len(latencies) == 50
    # Sent on schedule regardless of completions (the client did not slow down)...
    assert max(r.send_lag_s for r in result.records) < 0.05
    # ...so the 50th request (due at 0.49 s) waited behind 49 others of 20 ms and was
    # answered at about 1.0 s: a latency of about 0.5 s, not the 20 ms a closed loop sees.
    assert latencies[-1] > 0.4
    assert latencies[-1] > 10 * latencies[0]


def test_closed_loop_hides_that_queue() -> None:
    async def go():
        server = FakeServer(0.02)
        return await run_closed_loop(server, [1], concurrency=1, duration_s=0.5, max_requests=1000)

    result = asyncio.run(go())
    summary = result.summary(end_s=0.5)
    assert 15 <= summary.ok <= 26
    assert summary.p99_ms is not None and summary.p99_ms < 60.0  # each request only sees its own 20 ms
    assert 30.0 <= summary.throughput_rps <= 52.0  # the server's capacity, 50/s


def test_closed_loop_stops_at_the_request_cap() -> None:
    async def go():
        server = FakeServer(0.0)
        return await run_closed_loop(server, [1, 2], concurrency=4, duration_s=10.0, max_requests=9)

    result = asyncio.run(go())
    assert len(result.records) == 9
    assert result.wall_s < 1.0


def test_timeouts_and_the_in_flight_cap_count_as_errors_by_kind() -> None:
    async def go():
        server = FakeServer(1.0)
        offsets = arrival_offsets(rate=100.0, duration_s=0.05, max_requests=100)
        return await run_open_loop(server, [1], offsets, timeout_s=0.1, max_in_flight=3)

    result = asyncio.run(go())
    counts = result.error_counts()
    assert counts[TIMEOUT] == 3
    assert counts[CLIENT_CAP] == 2
    assert result.summary().ok == 0
    assert result.wall_s < 0.5  # bounded by the timeout, not by the slow server


def test_http_errors_are_not_counted_as_throughput() -> None:
    async def go():
        server = FakeServer(0.001, status=503)
        return await run_closed_loop(server, [1], concurrency=2, duration_s=0.1, max_requests=10)

    result = asyncio.run(go())
    summary = result.summary(end_s=0.2)
    assert summary.ok == 0
    assert summary.throughput_rps == 0.0
    assert result.error_counts() == {"http_503": 10}


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


def test_closed_loop_extends_past_its_duration_until_enough_answers_are_measured() -> None:
    async def go():
        return await run_closed_loop(
            BurstServer(0.1),
            [1],
            concurrency=4,
            duration_s=0.05,
            max_requests=10_000,
            warmup_s=0.0,
            min_completions=12,
            max_duration_s=2.0,
        )

    result = asyncio.run(go())
    start, end = result.window()
    assert start > 0.0  # the window opens at the first answer, not before it
    # 12 answers at 4 per burst, one burst every 0.1 s: three bursts, far past the 0.05 s asked.
    assert end - start > 0.19
    assert result.wall_s < 1.0
    measured = [r for r in result.records if r.ok and start <= r.done_s < end]
    assert len(measured) >= 12 - 4  # the burst at `start` itself may sit on the boundary


def test_closed_loop_never_passes_its_hard_cap() -> None:
    async def go():
        return await run_closed_loop(
            BurstServer(0.2),
            [1],
            concurrency=2,
            duration_s=0.05,
            max_requests=10_000,
            min_completions=10_000,
            max_duration_s=0.5,
        )

    result = asyncio.run(go())
    assert result.stop_s is not None and result.stop_s <= 0.75


def test_closed_loop_cancels_answers_still_missing_after_the_drain() -> None:
    class Stuck:
        def __init__(self) -> None:
            self.calls = 0

        async def __call__(self, payload: int) -> int:
            self.calls += 1
            if self.calls > 3:
                await asyncio.sleep(30)
            return 200

    async def go():
        return await run_closed_loop(
            Stuck(), [1], concurrency=2, duration_s=0.01, max_requests=100, drain_s=0.1
        )

    result = asyncio.run(go())
    assert result.wall_s < 1.0
    assert all(r.finished for r in result.records)
    assert result.error_counts() == {}
