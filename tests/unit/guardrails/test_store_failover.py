"""Redis down or slow never fails a batch: rates.on_error applies, the worker's own windows
take over visibly (metrics, reasons, status), retries back off, nothing is buffered, and the
windows are shared again once Redis answers. With a fake failing client, and with a real
redis-server stopped, restarted and frozen.
"""

from __future__ import annotations

import itertools
import random
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from fairgate.guardrails import Guard, Policy
from fairgate.guardrails.failover import Backoff, FailoverStore
from fairgate.guardrails.redis_store import RedisWindowStore
from fairgate.guardrails.store import StoreTimeout, WindowCounts
from tests.setup.redis_server import RedisServer, require_redis

from .conftest import FakeClock
from .test_guard_decisions import KeywordScorer


class FailingClient:
    """A Redis client whose every round trip raises ``error`` (counted in ``attempts``)."""

    def __init__(self, error: BaseException) -> None:
        self.error = error
        self.attempts = 0

    def ping(self) -> None:
        self.attempts += 1
        raise self.error

    def pipeline(self, transaction: bool = False) -> Any:
        owner = self

        class Pipe:
            def execute_command(self, *args: Any) -> None:
                pass

            def execute(self, raise_on_error: bool = True) -> Any:
                owner.attempts += 1
                raise owner.error

        return Pipe()


class Switch:
    """A real client that can be made to fail (``broken = True``) like a cut network."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.broken = False
        self.attempts = 0

    def pipeline(self, transaction: bool = False) -> Any:
        self.attempts += 1
        if self.broken:
            return FailingClient(ConnectionRefusedError("connection refused")).pipeline()
        return self.inner.pipeline(transaction=transaction)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def policy(on_error: str = "flag") -> Policy:
    return Policy.from_mapping(
        {
            "version": "fo",
            "groups": {"source": "request", "allowed": ["a", "b"]},
            "toxicity": {"categories": {"toxicity": {"flag": 0.5, "block": 0.8}}},
            "rates": {
                "monitors": [{"name": "negative", "outcome": "negative"}],
                "window": {"size": 400},
                "min_samples": 50,
                "checks_per_window": 8,
                "on_error": on_error,
            },
        }
    )


def make(
    client: Any, clock: FakeClock, *, on_error: str = "flag", version: str = "fo"
) -> tuple[Guard, FailoverStore, CollectorRegistry]:
    store = FailoverStore(
        primary=RedisWindowStore(client=client, policy_version=version),
        backoff=Backoff(base_s=0.1, max_s=0.8, rng=random.Random(0)),
        clock=clock,
    )
    registry = CollectorRegistry()
    guard = Guard(policy=policy(on_error), scorer=KeywordScorer(), registry=registry, clock=clock, store=store)
    return guard, store, registry


def review(guard: Guard, groups: list[str], labels: list[str]) -> list[Any]:
    return guard.review(guard.screen(["hello"] * len(groups), groups), labels)


def test_a_timeout_fails_over_visibly_and_follows_on_error(clock: FakeClock) -> None:
    client = FailingClient(TimeoutError("timed out"))
    guard, _, registry = make(client, clock, on_error="flag")
    decisions = review(guard, ["a", "b", "a"], ["negative", "positive", "negative"])
    assert [d.action for d in decisions] == ["flag"] * 3
    assert {r.code for d in decisions for r in d.reasons} == {"monitor_error"}
    assert "shared window store is unavailable" in decisions[0].reasons[0].message
    assert registry.get_sample_value("fairgate_store_errors_total", {"operation": "record", "error": "timeout"}) == 1
    assert registry.get_sample_value("fairgate_monitor_errors_total", {"monitor": "negative"}) == 1
    assert registry.get_sample_value("fairgate_store_degraded") == 1
    status = guard.status()
    assert (status.window_scope, status.degraded) == ("fleet", True)
    counts = {g.group: (g.n, g.positives) for g in status.monitors[0].groups}
    assert counts["a"] == (2, 2) and counts["b"] == (1, 0)  # this worker's own windows


def test_on_error_allow_lets_items_through_but_still_counts(clock: FakeClock) -> None:
    guard, _, registry = make(FailingClient(ConnectionRefusedError("refused")), clock, on_error="allow")
    decisions = review(guard, ["a"], ["negative"])
    assert decisions[0].action == "allow" and decisions[0].reasons == ()
    assert registry.get_sample_value("fairgate_store_errors_total", {"operation": "record", "error": "connection"}) == 1
    assert registry.get_sample_value("fairgate_monitor_errors_total", {"monitor": "negative"}) == 1


def test_retries_back_off_and_batches_in_between_do_not_wait(clock: FakeClock) -> None:
    client = FailingClient(TimeoutError("timed out"))
    guard, _, registry = make(client, clock)
    review(guard, ["a"], ["negative"])
    assert client.attempts == 1
    for _ in range(20):  # within the first backoff (at most 0.1 s): no new attempt
        review(guard, ["a"], ["negative"])
    assert client.attempts == 1
    attempts_at = []
    for _ in range(200):  # 10 s in steps of 50 ms
        clock.advance(0.05)
        before = client.attempts
        review(guard, ["a"], ["negative"])
        if client.attempts > before:
            attempts_at.append(clock.now)
    gaps = [later - earlier for earlier, later in itertools.pairwise(attempts_at)]
    # doubling up to the 0.8 s cap, jittered by a factor in [0.5, 1)
    assert gaps and max(gaps) <= 0.8 + 0.05 and gaps[-1] >= 0.4 - 0.05
    assert registry.get_sample_value("fairgate_store_errors_total", {"operation": "record", "error": "timeout"}) == (
        client.attempts
    )
    assert registry.get_sample_value("fairgate_monitor_errors_total", {"monitor": "negative"}) == 221


def test_backoff_doubles_to_its_cap_with_jitter() -> None:
    backoff = Backoff(base_s=0.1, max_s=1.0, rng=random.Random(1))
    for failures, ceiling in [(1, 0.1), (2, 0.2), (3, 0.4), (4, 0.8), (5, 1.0), (50, 1.0)]:
        delay = backoff.delay(failures)
        assert ceiling / 2 <= delay < ceiling
    with pytest.raises(ValueError, match=r"0 < base_s \(2\) <= max_s \(1\)"):
        Backoff(base_s=2, max_s=1)


def test_a_store_without_fallback_fails_over_to_on_error_only(clock: FakeClock) -> None:
    """The bare Redis store raises: every rate monitor is in error, nothing else breaks."""
    store = RedisWindowStore(client=FailingClient(TimeoutError("slow")), policy_version="bare")
    registry = CollectorRegistry()
    guard = Guard(policy=policy("block"), scorer=KeywordScorer(), registry=registry, clock=clock, store=store)
    decisions = review(guard, ["a", "b"], ["positive", "positive"])
    assert [d.action for d in decisions] == ["block", "block"]
    assert guard.status().degraded is True
    with pytest.raises(StoreTimeout, match="raise FAIRGATE_REDIS_TIMEOUT_MS"):
        store.ping()
    assert registry.get_sample_value("fairgate_store_errors_total", {"operation": "record", "error": "timeout"}) == 1


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    with RedisServer(bin_dir=require_redis()) as running:
        yield running


def test_recovery_shares_windows_again_and_replays_nothing(server: RedisServer, clock: FakeClock) -> None:
    version = f"heal-{uuid.uuid4().hex}"
    switch = Switch(server.client())
    guard, store, _ = make(switch, clock, version=version)
    review(guard, ["a"] * 10, ["negative"] * 10)  # shared: 10 in Redis
    switch.broken = True
    for _ in range(30):  # an outage of 30 batches (300 outcomes), stamped in the local windows only
        review(guard, ["a"] * 10, ["positive"] * 10)
        clock.advance(0.01)
    assert store.degraded
    switch.broken = False
    clock.advance(1.0)  # past any backoff
    review(guard, ["b"] * 5, ["negative"] * 5)
    assert not store.degraded
    shared = RedisWindowStore(client=server.client(), policy_version=version)
    got = shared.counts(["negative/a", "negative/b"], now=clock.now, spec=guard.monitors[0].spec)
    assert got == {"negative/a": WindowCounts(10, 10), "negative/b": WindowCounts(5, 5)}  # no replay
    local = store.local.counts(["negative/a"], now=clock.now, spec=guard.monitors[0].spec)
    assert local["negative/a"] == WindowCounts(310, 10)  # the worker's own windows saw everything
    status = guard.status()
    assert status.degraded is False and {g.group: g.n for g in status.monitors[0].groups}["a"] == 10


def test_an_active_fleet_alert_stays_active_on_local_windows(server: RedisServer, clock: FakeClock) -> None:
    version = f"keep-{uuid.uuid4().hex}"
    switch = Switch(server.client())
    guard, store, _ = make(switch, clock, on_error="allow", version=version)
    labels = ["negative"] * 15 + ["positive"] * 10 + ["negative"] * 3 + ["positive"] * 22
    for _ in range(8):  # a: 60% negative, b: 12%: the fleet alert for a is raised
        review(guard, ["a"] * 25 + ["b"] * 25, labels)
    assert guard.monitors[0].active == {"a"}
    switch.broken = True
    decisions = review(guard, ["a", "b"], ["positive", "positive"])
    assert store.degraded
    assert [d.action for d in decisions] == ["flag", "allow"]  # judged on the board it had


def test_real_redis_stopped_and_restarted(server: RedisServer) -> None:
    """A real outage: every batch still decided within the timeout; shared again after."""
    version = f"outage-{uuid.uuid4().hex}"
    store = FailoverStore(
        primary=RedisWindowStore.from_url(server.url, policy_version=version, timeout_s=0.05),
        backoff=Backoff(base_s=0.05, max_s=0.2),
    )
    registry = CollectorRegistry()
    guard = Guard(policy=policy("flag"), scorer=KeywordScorer(), registry=registry, clock=time.time, store=store)
    review(guard, ["a"] * 4, ["negative"] * 4)
    server.stop()
    try:
        slowest = 0.0
        for _ in range(20):
            started = time.perf_counter()
            decisions = review(guard, ["a", "b"], ["positive", "negative"])
            slowest = max(slowest, time.perf_counter() - started)
            assert [d.action for d in decisions] == ["flag", "flag"]
            assert decisions[0].reasons[0].code == "monitor_error"
            time.sleep(0.02)
        assert slowest < 0.5
        assert guard.status().degraded is True
        errors = registry.get_sample_value(
            "fairgate_store_errors_total", {"operation": "record", "error": "connection"}
        )
        assert errors is not None and 1 <= errors < 20  # backoff: not every batch tried
    finally:
        server.start()  # empty, scripts gone: the store reloads them
    deadline = time.monotonic() + 5
    while store.degraded and time.monotonic() < deadline:
        review(guard, ["b"], ["positive"])
        time.sleep(0.05)
    assert not store.degraded
    decisions = review(guard, ["a"] * 3, ["negative"] * 3)
    assert all(d.action == "allow" for d in decisions)
    status = guard.status()
    assert status.degraded is False
    assert {g.group: g.n for g in status.monitors[0].groups}["a"] == 3  # what was sent since Redis came back


def test_frozen_redis_times_out_within_the_budget(server: RedisServer) -> None:
    version = f"frozen-{uuid.uuid4().hex}"
    store = FailoverStore(
        primary=RedisWindowStore.from_url(server.url, policy_version=version, timeout_s=0.05),
        backoff=Backoff(base_s=5, max_s=5),
    )
    registry = CollectorRegistry()
    guard = Guard(policy=policy("flag"), scorer=KeywordScorer(), registry=registry, clock=time.time, store=store)
    review(guard, ["a"], ["negative"])
    server.pause()
    try:
        started = time.perf_counter()
        decisions = review(guard, ["a"], ["negative"])
        elapsed = time.perf_counter() - started
    finally:
        server.resume()
    assert decisions[0].action == "flag" and decisions[0].reasons[0].code == "monitor_error"
    assert elapsed < 0.3, elapsed  # 50 ms timeout, no client retries
    assert registry.get_sample_value("fairgate_store_errors_total", {"operation": "record", "error": "timeout"}) == 1
