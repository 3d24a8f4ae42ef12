"""The Redis store against a real redis-server: key layout, TTLs, one round trip per batch,
scripts reloaded after a restart, and two guards ("workers") sharing windows, check
schedule and alerts.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from fairgate.guardrails import Guard, Policy
from fairgate.guardrails.failover import FailoverStore
from fairgate.guardrails.redis_store import RedisWindowStore
from fairgate.guardrails.store import BoardUpdate, MonitorStore, WindowCounts, WindowSpec
from tests.setup.redis_server import RedisServer, require_redis

from .test_guard_decisions import KeywordScorer


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    with RedisServer(bin_dir=require_redis()) as running:
        yield running


class CountingClient:
    """A redis-py client that counts pipeline executions (network round trips) and keeps
    the keys of every script call."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.round_trips = 0
        self.calls: list[list[str]] = []

    def pipeline(self, transaction: bool = False) -> Any:
        pipe = self.inner.pipeline(transaction=transaction)
        outer = self

        class Pipe:
            def execute_command(self, *args: Any) -> None:
                count = int(args[2])
                outer.calls.append([str(k) for k in args[3 : 3 + count]])
                pipe.execute_command(*args)

            def execute(self, raise_on_error: bool = True) -> Any:
                outer.round_trips += 1
                return pipe.execute(raise_on_error=raise_on_error)

        return Pipe()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def policy(version: str, **rates: Any) -> Policy:
    return Policy.from_mapping(
        {
            "version": version,
            "groups": {"source": "request", "allowed": ["a", "b"]},
            "toxicity": {"categories": {"toxicity": {"flag": 0.5, "block": 0.8}}},
            "rates": {
                "monitors": [
                    {"name": "negative", "outcome": "negative"},
                    {"name": "guard_flag", "source": "guard", "outcome": "flag"},
                    {"name": "guard_block", "source": "guard", "outcome": "block"},
                ],
                "window": {"size": 400},
                "min_samples": 50,
                "checks_per_window": 8,  # a fleet-wide check every 50 outcomes
                "confidence": 0.95,
                **rates,
            },
        }
    )


def fleet_guard(store: MonitorStore, version: str, registry: CollectorRegistry | None = None) -> Guard:
    return Guard(
        policy=policy(version), scorer=KeywordScorer(), registry=registry or CollectorRegistry(),
        clock=time.time, store=store,
    )


def review(guard: Guard, groups: list[str], labels: list[str]) -> list[Any]:
    screens = guard.screen(["hello"] * len(groups), groups)
    return guard.review(screens, labels)


def test_one_round_trip_per_batch_for_all_monitors(server: RedisServer) -> None:
    client = CountingClient(server.client())
    store = RedisWindowStore(client=client, policy_version=f"rt-{uuid.uuid4().hex}")
    guard = fleet_guard(store, "rt")
    server.client().script_flush()
    review(guard, ["b"], ["positive"])  # the first call on a fresh Redis also loads the scripts
    assert client.round_trips == 2
    client.round_trips, client.calls = 0, []
    review(guard, ["a", "b", "a"], ["negative", "positive", "positive"])  # no check due yet
    assert client.round_trips == 1
    assert len(client.calls) == 3  # one script call per monitor, in that one pipeline
    review(guard, ["a"] * 47, ["negative"] * 47)  # crosses 50 outcomes: a check is due
    assert client.round_trips == 4  # the batch, then the windows of the 3 monitors now due, then their publish
    assert [len(keys) for keys in client.calls[3:6]] == [1 + 2] * 3  # the batch: group a's keys only
    assert [len(keys) for keys in client.calls[6:9]] == [1 + 2 * 4] * 3  # the check: every group (a, b, other, none)


def test_keys_share_the_monitor_hash_tag_and_carry_ttls(server: RedisServer) -> None:
    from redis.crc import key_slot

    client = CountingClient(server.client())
    version = f"layout {uuid.uuid4().hex}"  # a space: percent-encoded, no brace can leak in
    store = RedisWindowStore(client=client, policy_version=version, key_ttl_s=3600)
    guard = fleet_guard(store, version)
    review(guard, ["a", "b"] * 30, ["negative", "positive"] * 30)
    assert client.calls
    for keys in client.calls:  # every key of one script call lives in one Redis Cluster slot
        assert len({key_slot(k.encode()) for k in keys}) == 1, keys
        tag = keys[0][: keys[0].index("}") + 1]
        assert all(k.startswith(tag) for k in keys) and tag.count("{") == 1
    stored = [k.decode() for k in server.client().keys("{fairgate:layout%20*")]
    monitors = {k[: k.index("}") + 1] for k in stored}
    assert monitors == {"{fairgate:" + f"layout%20{version.split()[1]}:{m}" + "}" for m in
                        ("negative", "guard_flag", "guard_block")}
    assert any(":c400:w:a" in k for k in stored) and any(k.endswith("}:ctl") for k in stored)
    for key in stored:
        ttl = server.client().pttl(key)
        assert 0 < ttl <= 3600 * 1000, (key, ttl)


def test_retired_keys_expire_on_their_own(server: RedisServer) -> None:
    version = f"retired-{uuid.uuid4().hex}"
    store = RedisWindowStore(client=server.client(), policy_version=version, key_ttl_s=0.3)
    store.add({"m/a": [1, 0, 1]}, now=1.0, spec=WindowSpec(size=10))
    assert server.client().keys(f"{{fairgate:{version}:*")
    time.sleep(0.6)
    assert server.client().keys(f"{{fairgate:{version}:*") == []


def test_lost_scripts_are_reloaded_and_each_batch_applied_once(server: RedisServer) -> None:
    store = RedisWindowStore(client=server.client(), policy_version=f"noscript-{uuid.uuid4().hex}")
    spec = WindowSpec(size=100)
    store.add({"m/a": [1, 1]}, now=1.0, spec=spec)
    server.client().script_flush()  # what a Redis restart does to loaded scripts
    store.add({"m/a": [0], "n/b": [1]}, now=2.0, spec=spec)
    assert store.counts(["m/a", "n/b"], now=2.0, spec=spec) == {"m/a": WindowCounts(3, 2), "n/b": WindowCounts(1, 1)}


def test_positives_that_expired_before_their_list_are_counted_again(server: RedisServer) -> None:
    store = RedisWindowStore(client=server.client(), policy_version=f"heal-{uuid.uuid4().hex}")
    spec = WindowSpec(size=5)
    store.add({"m/a": [1, 0, 1, 1]}, now=1.0, spec=spec)
    server.client().delete(store.keys("m").positives(spec, "a"))  # as if its TTL ran out first
    assert store.counts(["m/a"], now=1.0, spec=spec) == {"m/a": WindowCounts(4, 3)}
    store.add({"m/a": [0, 0]}, now=2.0, spec=spec)  # and it keeps counting from there
    assert store.counts(["m/a"], now=2.0, spec=spec) == {"m/a": WindowCounts(5, 2)}


def test_compare_and_set_lets_one_of_two_concurrent_checks_win(server: RedisServer) -> None:
    version = f"cas-{uuid.uuid4().hex}"
    first = RedisWindowStore(client=server.client(), policy_version=version)
    second = RedisWindowStore(client=server.client(), policy_version=version)
    update = BoardUpdate(monitor="m", expected_epoch=0, active=frozenset({"a"}), newly_raised=1, last="{}")
    assert first.publish([update]).monitors["m"].accepted is True
    lost = second.publish([update]).monitors["m"]  # computed from the same epoch: too late
    assert lost.accepted is False
    assert (lost.board.epoch, lost.board.raised, lost.board.active) == (1, 1, frozenset({"a"}))


def test_two_workers_share_windows_schedule_and_one_alert(server: RedisServer) -> None:
    """Two guards (as two worker processes) on one Redis: each sees every outcome, checks
    are counted fleet-wide, the alert is raised once and both act on it."""
    version = f"fleet-{uuid.uuid4().hex}"
    registries = [CollectorRegistry(), CollectorRegistry()]
    workers = [
        fleet_guard(FailoverStore(primary=RedisWindowStore.from_url(server.url, policy_version=version)), version, r)
        for r in registries
    ]
    assert workers[0].status().window_scope == "fleet"
    # group a: 60% negative, group b: 10%: 40 batches of 10, alternating workers
    for batch in range(40):
        groups = ["a"] * 5 + ["b"] * 5
        labels = ["negative" if i < 3 else "positive" for i in range(5)]
        labels += ["negative" if i < 1 and batch % 2 == 0 else "positive" for i in range(5)]
        review(workers[batch % 2], groups, labels)
    statuses = [w.status() for w in workers]
    for status in statuses:
        monitor = next(m for m in status.monitors if m.name == "negative")
        counts = {g.group: (g.n, g.positives) for g in monitor.groups}
        assert counts["a"] == (200, 120) and counts["b"] == (200, 20)  # every outcome of both workers
        assert monitor.active == ["a"] and monitor.alerts_raised == 1
        assert monitor.checks == 400 // 50  # one check per 50 outcomes of the fleet, not per worker
        assert status.degraded is False
    assert statuses[0].model_dump() == statuses[1].model_dump()
    # both workers flag group a's next item, whichever answers
    for worker, registry in zip(workers, registries, strict=True):
        decision = review(worker, ["a", "b"], ["positive", "positive"])
        assert [d.action for d in decision] == ["flag", "allow"]
        assert registry.get_sample_value("fairgate_alert_active", {"monitor": "negative", "group": "a"}) == 1
