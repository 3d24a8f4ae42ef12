"""`rates.method: sequential` on the fleet store, against a real redis-server: the Lua update
of the e-detectors gives the Python detector's numbers and alarms batch for batch, two
store clients (two workers) interleaving batches build the detector one process would
build from the union stream, and two guards on one Redis raise one alert that both act on.
A Redis that fails leaves each worker on its own (outage-only) detector, visibly degraded.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from fairgate.guardrails import Guard, Policy
from fairgate.guardrails.failover import Backoff, FailoverStore
from fairgate.guardrails.redis_store import RedisWindowStore
from fairgate.guardrails.sequential import (
    Alarm,
    SequentialDetector,
    SequentialSetup,
    SequentialSpec,
    batch_counts,
    merge_alarms,
)
from fairgate.guardrails.store import CheckSchedule, MonitorBatch, WindowSpec
from tests.setup.redis_server import RedisServer, require_redis

from .conftest import FakeClock
from .test_guard_decisions import KeywordScorer
from .test_store_failover import FailingClient

MONITOR = "neg"
NEVER = CheckSchedule(every_n=10**9)  # no scheduled check: the detector alone is under test


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    with RedisServer(bin_dir=require_redis()) as running:
        yield running


SETUPS = {
    # two groups, every ordered pair, impact ratio of an adverse outcome
    "pair": SequentialSetup(
        groups=("a", "b"),
        spec=SequentialSpec(harm="high_rate", ratio_min=0.8, difference_max=None, arl=60, start_every=4),
    ),
    # five groups, both tests, a favourable outcome: 10 pairs x 2 directions x 2 tests
    "five": SequentialSetup(
        groups=("a", "b", "c", "d", "e"),
        spec=SequentialSpec(harm="low_rate", ratio_min=0.8, difference_max=0.1, arl=200, start_every=3),
    ),
    # a named reference: pairs (g, ref) only, one direction
    "reference": SequentialSetup(
        groups=("a", "b", "c", "d"),
        spec=SequentialSpec(
            harm="high_rate", ratio_min=0.8, difference_max=None, arl=80, start_every=5, reference="c"
        ),
    ),
}
RATES = {"a": 0.55, "b": 0.25, "c": 0.3, "d": 0.2, "e": 0.35}  # unequal: alarms happen


def stream(setup: SequentialSetup, *, batches: int, seed: int) -> list[dict[str, list[int]]]:
    """Seeded batches: each names a few groups (sometimes one: no unit closes), plus an
    uncompared group ``none`` that both detectors must ignore."""
    rng = random.Random(seed)
    found = []
    for _ in range(batches):
        chosen = rng.sample(setup.groups, rng.randint(1, min(3, len(setup.groups))))
        events = {g: [int(rng.random() < RATES[g]) for _ in range(rng.randint(1, 4))] for g in chosen}
        if rng.random() < 0.2:
            events["none"] = [1, 0]
        found.append(events)
    return found


def batch(setup: SequentialSetup, events: dict[str, list[int]]) -> MonitorBatch:
    return MonitorBatch(
        monitor=MONITOR,
        groups=(*setup.groups, "none"),
        spec=WindowSpec(size=50),
        sequential=setup,
        events=events,
        observed=sum(len(v) for v in events.values()),
        schedule=NEVER,
    )


def store_on(server: RedisServer, version: str) -> RedisWindowStore:
    return RedisWindowStore(client=server.client(), policy_version=version)


def take_alarms(server: RedisServer, store: RedisWindowStore, setup: SequentialSetup) -> dict[str, tuple[float, str]]:
    """The pending alarms in Redis (then deleted, as a published check would)."""
    key = store.keys(MONITOR).alarms(setup)
    client = server.client()
    raw = client.hgetall(key)
    client.delete(key)
    found = {}
    for group, value in raw.items():
        evidence, other, _ = value.decode().split("|")
        found[group.decode()] = (float(evidence), other)
    return found


def assert_same_state(python: SequentialDetector, fleet: SequentialDetector) -> None:
    ours, theirs = python.state(), fleet.state()
    assert ours.keys() == theirs.keys()
    for pair, row in ours.items():
        np.testing.assert_allclose(theirs[pair], row, rtol=1e-9, atol=1e-300, err_msg=f"pair {pair}")
    for group, (value, against) in python.evidence().items():
        other_value, other_against = fleet.evidence()[group]
        assert other_value == pytest.approx(value, rel=1e-9, abs=1e-300), group
        assert other_against == against or value == 0.0, group


def feed(
    setup: SequentialSetup,
    events: Sequence[dict[str, list[int]]],
    stores: Sequence[RedisWindowStore],
    server: RedisServer,
    *,
    pick: random.Random | None = None,
) -> tuple[SequentialDetector, list[int]]:
    """Every batch through one of ``stores`` (``pick``ed, else the first) and through one
    Python detector, comparing state and alarms after each; the batches that alarmed."""
    python = setup.detector()
    alarmed = []
    for step, item in enumerate(events):
        store = stores[pick.randrange(len(stores))] if pick is not None else stores[0]
        reply = store.record([batch(setup, item)], now=1000.0 + step).monitors[MONITOR]
        strongest: dict[str, Alarm] = {}  # a group can alarm in several comparisons: the store keeps the strongest
        merge_alarms(strongest, python.update(batch_counts(item)))
        expected = {a.group: (a.evidence, a.other) for a in strongest.values()}
        got = take_alarms(server, stores[0], setup)
        assert got.keys() == expected.keys(), f"batch {step}: Redis alarmed {got}, Python {expected}"
        for group, (evidence, other) in expected.items():
            assert got[group][0] == pytest.approx(evidence, rel=1e-9) and got[group][1] == other
        assert reply.urgent == bool(expected)  # nothing is alerting: an alarm makes a check urgent
        if expected:
            alarmed.append(step)
        assert_same_state(python, stores[0].read_detector(MONITOR, setup))
    return python, alarmed


@pytest.mark.parametrize("name", sorted(SETUPS))
def test_the_lua_update_gives_the_python_detectors_evidence_and_alarms(server: RedisServer, name: str) -> None:
    setup = SETUPS[name]
    store = store_on(server, f"lua-{name}-{uuid.uuid4().hex}")
    _, alarmed = feed(setup, stream(setup, batches=250, seed=7), [store], server)
    assert len(alarmed) >= 2, "the stream must make both detectors alarm (and reset) to test that path"


def test_two_clients_interleaving_build_the_detector_of_the_union_stream(server: RedisServer) -> None:
    """Two stores with their own connections (two workers) on one namespace: whichever
    records a batch, the fleet's detector is the one a single process builds from all the
    batches in the order Redis ran them."""
    setup = SETUPS["five"]
    version = f"two-{uuid.uuid4().hex}"
    workers = [store_on(server, version), store_on(server, version)]
    python, alarmed = feed(setup, stream(setup, batches=200, seed=11), workers, server, pick=random.Random(3))
    assert alarmed
    for worker in workers:  # either client reads the same numbers
        assert_same_state(python, worker.read_detector(MONITOR, setup))


def test_resetting_evidence_forgets_the_pairs_of_a_group_for_the_fleet(server: RedisServer) -> None:
    setup = SETUPS["five"]
    version = f"reset-{uuid.uuid4().hex}"
    store = store_on(server, version)
    python, _ = feed(setup, stream(setup, batches=40, seed=5), [store], server)
    store.reset_evidence(MONITOR, setup, ["b"])
    python.reset(["b"])
    assert_same_state(python, store_on(server, version).read_detector(MONITOR, setup))
    store.reset_evidence(MONITOR, setup)
    assert store.read_detector(MONITOR, setup).state() == {}


# -- two guards ("workers") on one Redis -----------------------------------------------------


def sequential_policy(version: str, on_error: str = "allow") -> Policy:
    return Policy.from_mapping(
        {
            "version": version,
            "groups": {"source": "request", "allowed": ["a", "b"]},
            "toxicity": {"categories": {"toxicity": {"flag": 0.5, "block": 0.8}}},
            "rates": {
                "monitors": [{"name": "negative", "outcome": "negative"}],
                "method": "sequential",
                "window": {"size": 400},
                "min_samples": 50,
                "checks_per_window": 8,
                "on_error": on_error,
            },
        }
    )


def review(guard: Guard, groups: list[str], labels: list[str]) -> list[Any]:
    return guard.review(guard.screen(["hello"] * len(groups), groups), labels)


def test_two_workers_feed_one_detector_and_raise_one_alert(server: RedisServer) -> None:
    """A sequential policy loads on the Redis store; two guards alternate batches, one
    alert is raised for the fleet (not one per worker), and both flag the group's items."""
    version = f"guards-{uuid.uuid4().hex}"
    registries = [CollectorRegistry(), CollectorRegistry()]
    workers = [
        Guard(
            policy=sequential_policy(version), scorer=KeywordScorer(), registry=r, clock=time.time,
            store=FailoverStore(primary=RedisWindowStore.from_url(server.url, policy_version=version, timeout_s=2.0)),
        )
        for r in registries
    ]
    rng = random.Random(1)
    raised_at = None
    for step in range(300):
        labels = ["negative" if rng.random() < 0.6 else "positive" for _ in range(2)]
        labels += ["negative" if rng.random() < 0.1 else "positive" for _ in range(2)]
        review(workers[step % 2], ["a", "a", "b", "b"], labels)
        if raised_at is None and "a" in workers[step % 2].monitors[0].active:
            raised_at = step
        if raised_at is not None and step >= raised_at + 4:
            break
    assert raised_at is not None, "no alert: the fleet detector never alarmed"
    statuses = [w.status() for w in workers]
    for status in statuses:
        monitor = status.monitors[0]
        assert status.window_scope == "fleet" and status.degraded is False
        assert monitor.method == "sequential" and monitor.active == ["a"] and monitor.alerts_raised == 1
        a = next(g for g in monitor.groups if g.group == "a")
        # the alarm's evidence (>= 1) at the check that raised it; later checks show the reset detector's
        assert a.alert and a.evidence is not None and a.evidence_against == "b"
    assert statuses[0].model_dump() == statuses[1].model_dump()
    shown = next(g for g in statuses[0].monitors[0].groups if g.group == "a").evidence
    for worker, registry in zip(workers, registries, strict=True):
        gauge = registry.get_sample_value("fairgate_rate_evidence", {"monitor": "negative", "group": "a"})
        assert gauge == pytest.approx(shown)  # every worker exports the fleet's last check
        assert [d.action for d in review(worker, ["a", "b"], ["positive", "positive"])] == ["flag", "allow"]
    # One detector for the fleet: its units count the batches of both workers.
    setup = workers[0].monitors[0].sequential
    assert setup is not None
    fleet = RedisWindowStore(client=server.client(), policy_version=version).read_detector("negative", setup)
    units = {pair: row[4] for pair, row in fleet.state().items()}
    assert sum(units.values()) >= raised_at + 1  # every batch of both workers closed a unit
    # Its keys share the monitor's hash tag (one Redis Cluster slot) and carry a TTL.
    client = server.client()
    keys = [k.decode() for k in client.keys("{fairgate:" + version + ":negative}:seq:*")]
    assert any(k.endswith(":seq:" + setup.tag) for k in keys)
    for key in keys:
        assert 0 < client.pttl(key) <= 7 * 24 * 3600 * 1000, key


def test_without_redis_each_worker_falls_back_to_its_own_detector(clock: FakeClock) -> None:
    """Redis down: the batch is judged on this worker's windows and detector (fed only while
    degraded), visibly: degraded status and monitor_error reasons; the alert still comes."""
    version = "seq-down"
    store = FailoverStore(
        primary=RedisWindowStore(client=FailingClient(ConnectionRefusedError("refused")), policy_version=version),
        backoff=Backoff(base_s=0.1, max_s=0.8, rng=random.Random(0)),
        clock=clock,
    )
    guard = Guard(policy=sequential_policy(version, on_error="flag"), scorer=KeywordScorer(),
                  registry=CollectorRegistry(), clock=clock, store=store)
    rng = random.Random(2)
    for _ in range(300):
        labels = ["negative" if rng.random() < 0.6 else "positive" for _ in range(2)]
        labels += ["negative" if rng.random() < 0.1 else "positive" for _ in range(2)]
        decisions = review(guard, ["a", "a", "b", "b"], labels)
        clock.advance(0.01)
        if "a" in guard.monitors[0].active:
            break
    assert "a" in guard.monitors[0].active
    assert any(r.code == "monitor_error" for r in decisions[2].reasons)
    status = guard.status()
    assert status.degraded is True and status.monitors[0].alerts_raised == 1
