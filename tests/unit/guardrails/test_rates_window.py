"""Sliding windows expire by count and by (bucketed) time; their arithmetic matches a brute force."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fairgate.guardrails.store import InMemoryWindowStore, WindowCounts, WindowSpec


def test_count_window_keeps_the_last_size_outcomes() -> None:
    store = InMemoryWindowStore()
    spec = WindowSpec(size=3)
    store.add({"m/a": [1, 1, 0]}, now=0.0, spec=spec)
    assert store.counts(["m/a"], now=0.0, spec=spec)["m/a"] == WindowCounts(3, 2)
    store.add({"m/a": [0, 0]}, now=1.0, spec=spec)  # the two 1s... one of them falls out
    assert store.counts(["m/a"], now=1.0, spec=spec)["m/a"] == WindowCounts(3, 0)
    store.add({"m/a": [1]}, now=1e9, spec=spec)  # a count window ignores age
    assert store.counts(["m/a"], now=1e9, spec=spec)["m/a"] == WindowCounts(3, 1)


def test_time_window_expires_by_age() -> None:
    store = InMemoryWindowStore()
    spec = WindowSpec(seconds=10)  # 60 buckets of 1/6 s: 100.0 and 110.0 are bucket edges
    store.add({"k": [1, 1]}, now=100.0, spec=spec)
    store.add({"k": [0]}, now=105.0, spec=spec)
    assert store.counts(["k"], now=109.9, spec=spec)["k"] == WindowCounts(3, 2)
    assert store.counts(["k"], now=110.0, spec=spec)["k"] == WindowCounts(1, 0)  # age 10 is out
    assert store.counts(["k"], now=115.0, spec=spec)["k"] == WindowCounts(0, 0)


def test_count_and_time_together() -> None:
    store = InMemoryWindowStore()
    spec = WindowSpec(size=2, seconds=10)
    store.add({"k": [1, 1, 0]}, now=0.0, spec=spec)
    assert store.counts(["k"], now=0.0, spec=spec)["k"] == WindowCounts(2, 1)
    assert store.counts(["k"], now=20.0, spec=spec)["k"] == WindowCounts(0, 0)


def test_unknown_key_and_empty_rate_is_nan_not_zero() -> None:
    counts = InMemoryWindowStore().counts(["x"], now=0.0, spec=WindowSpec(size=5))["x"]
    assert counts == WindowCounts(0, 0)
    assert counts.rate != counts.rate  # NaN


def test_keys_are_independent_and_clear_forgets() -> None:
    store = InMemoryWindowStore()
    spec = WindowSpec(size=10)
    store.add({"a": [1], "b": [0, 0]}, now=0.0, spec=spec)
    got = store.counts(["a", "b"], now=0.0, spec=spec)
    assert got == {"a": WindowCounts(1, 1), "b": WindowCounts(2, 0)}
    store.clear()
    assert store.counts(["a"], now=0.0, spec=spec)["a"] == WindowCounts(0, 0)


def test_window_spec_validates() -> None:
    with pytest.raises(ValueError, match="a window needs size or seconds"):
        WindowSpec()
    with pytest.raises(ValueError, match="window size 0 must be >= 1"):
        WindowSpec(size=0)


operations = st.lists(
    st.tuples(
        st.floats(min_value=0.0, max_value=5.0, allow_nan=False),  # time step
        st.sampled_from(["a", "b"]),
        st.lists(st.integers(min_value=0, max_value=1), max_size=6),  # outcomes (may be empty: a read)
    ),
    max_size=60,
)
specs = st.one_of(
    st.builds(WindowSpec, size=st.integers(min_value=1, max_value=12)),
    st.builds(WindowSpec, seconds=st.floats(min_value=0.5, max_value=15.0)),
    st.builds(
        WindowSpec,
        size=st.integers(min_value=1, max_value=12),
        seconds=st.floats(min_value=0.5, max_value=15.0),
    ),
)


@settings(max_examples=300, deadline=None)
@given(spec=specs, ops=operations)
def test_window_matches_brute_force(spec: WindowSpec, ops: list[tuple[float, str, list[int]]]) -> None:
    """After any sequence of adds and reads, each window equals the last ``size`` events of
    the key whose time bucket is one of the last ``buckets`` buckets, recomputed from the
    full history."""
    store = InMemoryWindowStore()
    history: dict[str, list[tuple[float, int]]] = {"a": [], "b": []}
    now = 0.0
    for step, key, values in ops:
        now += step
        if values:
            store.add({key: values}, now=now, spec=spec)
            history[key].extend((now, v) for v in values)
        got = store.counts(["a", "b"], now=now, spec=spec)
        for name, events in history.items():
            inside = [v for t, v in events if spec.bucket(t) > spec.bucket(now) - spec.buckets]
            if spec.size is not None:
                inside = inside[-spec.size :]
            assert got[name] == WindowCounts(len(inside), sum(inside))
            assert got[name].n <= (spec.size or 10**9)
            assert 0 <= got[name].positives <= got[name].n


def test_time_bucket_edges_are_exact() -> None:
    """Window 60 s in 6 buckets of 10 s: an event counts until the clock enters its bucket + 6."""
    store = InMemoryWindowStore()
    spec = WindowSpec(seconds=60, buckets=6)
    store.add({"k": [1]}, now=1009.999, spec=spec)  # bucket 100 (1000 <= t < 1010)
    store.add({"k": [0]}, now=1010.0, spec=spec)  # bucket 101
    assert store.counts(["k"], now=1059.999, spec=spec)["k"] == WindowCounts(2, 1)  # bucket 105
    assert store.counts(["k"], now=1060.0, spec=spec)["k"] == WindowCounts(1, 0)  # bucket 106: 100 is out
    # the first event counted 50.001 s (= seconds - width + 0.001), the second will count 60 s
    assert store.counts(["k"], now=1069.999, spec=spec)["k"] == WindowCounts(1, 0)
    assert store.counts(["k"], now=1070.0, spec=spec)["k"] == WindowCounts(0, 0)


def test_time_window_memory_is_bounded_by_buckets() -> None:
    store = InMemoryWindowStore()
    spec = WindowSpec(seconds=60, buckets=6)
    for step in range(10_000):
        store.add({"k": [step % 2]}, now=1000.0 + step * 0.05, spec=spec)
    window = store._windows[("k", spec)]
    assert len(window.buckets) <= spec.buckets  # type: ignore[union-attr]
    assert store.counts(["k"], now=1000.0 + 9_999 * 0.05, spec=spec)["k"].n == sum(
        1 for step in range(10_000) if spec.bucket(1000.0 + step * 0.05) > spec.bucket(1000.0 + 9_999 * 0.05) - 6
    )


def test_window_spec_bucket_and_tag() -> None:
    assert WindowSpec(size=5).bucket(123.4) == 0
    assert WindowSpec(seconds=3600).bucket_seconds == 60.0
    assert WindowSpec(seconds=3600).bucket(7199.9) == 119
    assert WindowSpec(size=2000).tag == "c2000"
    assert WindowSpec(size=10, seconds=30, buckets=6).tag == "c10t30x6"
    with pytest.raises(ValueError, match="window buckets 0 must be >= 1"):
        WindowSpec(seconds=1, buckets=0)
