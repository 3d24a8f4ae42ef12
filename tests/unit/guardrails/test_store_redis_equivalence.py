"""The Redis store counts exactly like the in-memory store, on the same random event sequences.

Property tests against a real redis-server (skipped with the reason when it cannot be
installed): count windows, bucketed time windows and both, with times that land on,
just before and just after bucket edges; the check schedule (every N outcomes, every S
seconds) and the compare-and-set of the alert board, call for call.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fairgate.guardrails.local_store import LocalMonitorStore
from fairgate.guardrails.redis_store import RedisWindowStore
from fairgate.guardrails.store import (
    BoardUpdate,
    CheckSchedule,
    InMemoryWindowStore,
    MonitorBatch,
    MonitorQuery,
    WindowCounts,
    WindowSpec,
)
from tests.setup.redis_server import RedisServer, require_redis

GROUPS = ("a", "b", "c")
START = 1_000.0  # a bucket edge for every spec drawn below


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    with RedisServer(bin_dir=require_redis()) as server:
        yield server.url


def fresh_redis(url: str) -> RedisWindowStore:
    """A store in a namespace of its own (a new policy version): examples never see each other."""
    return RedisWindowStore.from_url(url, policy_version=f"prop-{uuid.uuid4().hex}", timeout_s=2.0)


specs = st.builds(
    WindowSpec,
    size=st.one_of(st.none(), st.integers(min_value=1, max_value=12)),
    seconds=st.sampled_from([0.5, 1.0, 3.0, 10.0]),
    buckets=st.sampled_from([1, 2, 5, 60]),
) | st.builds(WindowSpec, size=st.integers(min_value=1, max_value=12))


@st.composite
def steps(draw: st.DrawFn, spec: WindowSpec) -> float:
    """A clock step: whole bucket widths (landing on edges), a hair either side, or any float."""
    width = spec.bucket_seconds or 1.0
    whole = draw(st.integers(min_value=0, max_value=2 * spec.buckets + 2)) * width
    return draw(
        st.sampled_from([whole, whole + 1e-9, max(0.0, whole - 1e-9)])
        | st.floats(min_value=0.0, max_value=2.5 * (spec.seconds or 5.0), allow_nan=False)
    )


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[WindowSpec, list[tuple[float, str, list[int]]]]:
    spec = draw(specs)
    ops = draw(
        st.lists(
            st.tuples(
                steps(spec),
                st.sampled_from(GROUPS),
                st.lists(st.integers(min_value=0, max_value=1), max_size=6),  # empty: only a read
            ),
            max_size=40,
        )
    )
    return spec, ops


def in_window(spec: WindowSpec, stamped: float, now: float) -> bool:
    return spec.bucket(stamped) > spec.bucket(now) - spec.buckets


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(scenario=scenarios())
def test_windows_count_the_same_in_redis_and_in_memory(
    redis_url: str, scenario: tuple[WindowSpec, list[tuple[float, str, list[int]]]]
) -> None:
    spec, ops = scenario
    memory, shared = InMemoryWindowStore(), fresh_redis(redis_url)
    keys = [f"m/{g}" for g in GROUPS]
    history: dict[str, list[tuple[float, int]]] = {k: [] for k in keys}
    now = START
    for step, group, values in ops:
        now += step
        if values:
            memory.add({f"m/{group}": values}, now=now, spec=spec)
            shared.add({f"m/{group}": values}, now=now, spec=spec)
            history[f"m/{group}"].extend((now, v) for v in values)
        expected = memory.counts(keys, now=now, spec=spec)
        assert shared.counts(keys, now=now, spec=spec) == expected
        for key, events in history.items():  # and both are the documented semantics
            inside = [v for t, v in events if spec.seconds is None or in_window(spec, t, now)]
            if spec.size is not None:
                inside = inside[-spec.size :]
            assert expected[key] == WindowCounts(len(inside), sum(inside))


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    scenario=scenarios(),
    every_n=st.integers(min_value=1, max_value=7),
    timed_schedule=st.booleans(),
)
def test_schedule_and_alert_board_behave_the_same(
    redis_url: str,
    scenario: tuple[WindowSpec, list[tuple[float, str, list[int]]]],
    every_n: int,
    timed_schedule: bool,
) -> None:
    """The same batches make the same checks due with the same counts; publishes win and
    lose alike; boards (active, raised, epoch, last) stay equal."""
    spec, ops = scenario
    schedule = CheckSchedule(every_s=(spec.seconds or 5.0) / 4) if timed_schedule else CheckSchedule(every_n=every_n)
    memory, shared = LocalMonitorStore(), fresh_redis(redis_url)
    now = START
    for index, (step, group, values) in enumerate(ops):
        now += step
        batch = MonitorBatch(
            monitor="neg", groups=GROUPS, spec=spec, known_epoch=-1,
            events={group: values} if values else {}, observed=len(values), schedule=schedule,
        )
        got_memory = memory.record([batch], now=now).monitors["neg"]
        got_shared = shared.record([batch], now=now).monitors["neg"]
        assert (got_shared.due, got_shared.counts, got_shared.board) == (
            got_memory.due, got_memory.counts, got_memory.board
        )
        if got_memory.due:
            assert got_memory.counts is not None
            active = frozenset(g for g, c in got_memory.counts.items() if c.n and c.positives * 2 > c.n)
            # every third check publishes from a stale epoch and must lose in both
            stale = index % 3 == 2
            update = BoardUpdate(
                monitor="neg",
                expected_epoch=got_memory.board.epoch - (1 if stale else 0),
                active=active,
                newly_raised=len(active - got_memory.board.active),
                last=f'{{"check":{index}}}',
            )
            published_memory = memory.publish([update]).monitors["neg"]
            published_shared = shared.publish([update]).monitors["neg"]
            assert published_shared.accepted == published_memory.accepted == (not stale)
        query = MonitorQuery(monitor="neg", groups=GROUPS, spec=spec, known_epoch=-1)
        snap_memory = memory.snapshot([query], now=now).monitors["neg"]
        snap_shared = shared.snapshot([query], now=now).monitors["neg"]
        assert (snap_shared.counts, snap_shared.board) == (snap_memory.counts, snap_memory.board)


def test_forget_empties_the_named_windows_only_in_memory_and_in_redis(redis_url: str) -> None:
    """What an admin reset or a policy change does to a store: the named keys go, the rest stay."""
    from fairgate.guardrails.reload import forget_windows

    spec = WindowSpec(size=10)
    for store in (LocalMonitorStore(), fresh_redis(redis_url)):
        store.add({"m/a": [1, 0, 1], "m/b": [1], "n/a": [0, 0]}, now=START, spec=spec)
        forget_windows(store, ["m/a", "n/a"], spec=spec)
        counts = store.counts(["m/a", "m/b", "n/a"], now=START, spec=spec)
        assert counts == {"m/a": WindowCounts(0, 0), "m/b": WindowCounts(1, 1), "n/a": WindowCounts(0, 0)}, store
        store.add({"m/a": [1]}, now=START + 1, spec=spec)  # a forgotten window fills again
        assert store.counts(["m/a"], now=START + 1, spec=spec) == {"m/a": WindowCounts(1, 1)}
