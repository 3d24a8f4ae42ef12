"""Rates, impact ratios and parity differences against hand-computed values; the tests act
only with min_samples and evidence at the corrected confidence; hysteresis; cadence."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fairgate.guardrails._stats import difference_lower, ratio_upper, wilson, z_one_sided
from fairgate.guardrails.policy import RateMonitorPolicy, RatesPolicy
from fairgate.guardrails.rates import RateMonitor
from fairgate.guardrails.store import InMemoryWindowStore


def make(
    clock: Any, *, harm: str = "high_rate", groups: tuple[str, ...] = ("a", "b", "none"), **rates: Any
) -> RateMonitor:
    settings_ = {"window": {"size": 1000}, "min_samples": 100, **rates}
    return RateMonitor(
        monitor=RateMonitorPolicy(name="neg", outcome="negative", harm=harm),  # type: ignore[arg-type]
        rates=RatesPolicy.model_validate(settings_),
        groups=groups,
        store=InMemoryWindowStore(),
        clock=clock,
    )


def feed(monitor: RateMonitor, group: str, positives: int, n: int) -> None:
    items = [((group,), i < positives) for i in range(n)]
    monitor._store.add(  # direct fill: no scheduled check in between
        {monitor.key(group): [1 if hit else 0 for _, hit in items]}, now=monitor._clock(), spec=monitor._spec
    )


def test_wilson_matches_hand_computation() -> None:
    low, high = wilson(30, 100, 1.96)
    assert low == pytest.approx(0.21896, abs=1e-4)
    assert high == pytest.approx(0.39586, abs=1e-4)
    assert wilson(0, 0, 1.96) == (0.0, 1.0)
    assert wilson(0, 50, 1.96)[0] == 0.0 and wilson(50, 50, 1.96)[1] == 1.0


def test_bonferroni_z_over_checks_and_pairs(clock: Any) -> None:
    monitor = make(clock)
    feed(monitor, "a", 30, 200)
    feed(monitor, "b", 30, 200)
    result = monitor.check()
    # alpha 0.05 split over 20 checks per window and 2 ordered pairs (reference chosen from data)
    assert result.z == pytest.approx(z_one_sided(0.05 / 40))
    assert result.z == pytest.approx(3.0233, abs=1e-3)
    named = make(clock, reference="a", groups=("a", "b", "c"))
    for g in ("a", "b", "c"):
        feed(named, g, 30, 200)
    assert named.check().z == pytest.approx(z_one_sided(0.05 / (20 * 2)))  # 2 groups vs the named one


def test_adverse_outcome_ratio_against_lowest_rate_group(clock: Any) -> None:
    monitor = make(clock)
    feed(monitor, "a", 60, 200)  # 0.30
    feed(monitor, "b", 40, 200)  # 0.20
    result = monitor.check()
    assert result.reference == "b"
    a = result.groups["a"]
    assert a.rate == pytest.approx(0.30)
    assert a.impact_ratio == pytest.approx(0.20 / 0.30)
    assert a.parity_difference == pytest.approx(0.10)
    assert a.ratio_upper == pytest.approx(ratio_upper(40, 200, 60, 200, result.z))
    assert result.groups["b"].status == "reference" and result.groups["b"].impact_ratio == 1.0
    none = result.groups["none"]
    assert none.status == "insufficient_samples" and math.isnan(none.impact_ratio) and math.isnan(none.rate)


def test_favourable_outcome_ratio_against_highest_rate_group(clock: Any) -> None:
    monitor = make(clock, harm="low_rate")
    feed(monitor, "a", 60, 200)
    feed(monitor, "b", 40, 200)
    result = monitor.check()
    assert result.reference == "a"
    assert result.groups["b"].impact_ratio == pytest.approx(0.20 / 0.30)
    assert result.groups["b"].parity_difference == pytest.approx(0.10)


def test_named_reference(clock: Any) -> None:
    monitor = make(clock, harm="low_rate", reference="b")
    feed(monitor, "a", 60, 200)
    feed(monitor, "b", 40, 200)
    result = monitor.check()
    assert result.reference == "b"
    assert result.groups["a"].impact_ratio == pytest.approx(1.5)
    assert result.groups["a"].status == "ok"


def test_no_action_below_min_samples(clock: Any) -> None:
    monitor = make(clock)
    feed(monitor, "a", 99, 99)  # every outcome adverse, but only 99
    feed(monitor, "b", 0, 500)
    result = monitor.check()
    assert result.groups["a"].status == "insufficient_samples"
    assert monitor.active == frozenset() and result.raised == []
    feed(monitor, "a", 1, 1)  # the 100th sample
    result = monitor.check()
    assert result.raised == ["a"] and monitor.active == {"a"}
    assert monitor.alerts_raised == 1


def test_no_alert_without_evidence_even_below_the_bound(clock: Any) -> None:
    """Point ratio 0.75 < 0.8 on 100 samples each: not significant at the corrected level."""
    monitor = make(clock)
    feed(monitor, "a", 40, 100)
    feed(monitor, "b", 30, 100)
    result = monitor.check()
    assert result.groups["a"].impact_ratio == pytest.approx(0.75)
    assert result.groups["a"].ratio_upper > 0.8
    assert result.raised == [] and result.groups["a"].status == "ok"


def test_hysteresis_keeps_alert_until_ratio_clears_bound_plus_margin(clock: Any) -> None:
    monitor = make(clock, window={"size": 500}, hysteresis=0.05)
    feed(monitor, "a", 250, 500)  # 0.5
    feed(monitor, "b", 100, 500)  # 0.2 -> ratio 0.4
    assert monitor.check().raised == ["a"]
    feed(monitor, "a", 123, 500)  # window now 0.246 -> ratio 0.813: above 0.8, below 0.85
    result = monitor.check()
    assert result.groups["a"].impact_ratio == pytest.approx(0.2 / 0.246)
    assert result.cleared == [] and monitor.active == {"a"}
    feed(monitor, "a", 115, 500)  # 0.23 -> ratio 0.870 >= 0.85
    result = monitor.check()
    assert result.cleared == ["a"] and monitor.active == frozenset()
    assert monitor.alerts_raised == 1


def test_parity_difference_bound(clock: Any) -> None:
    monitor = make(clock, impact_ratio=None, parity_difference={"max": 0.03}, hysteresis=0.01)
    feed(monitor, "a", 300, 1000)
    feed(monitor, "b", 200, 1000)
    result = monitor.check()
    assert result.groups["a"].parity_difference == pytest.approx(0.1)
    assert result.groups["a"].difference_lower == pytest.approx(
        difference_lower(300, 1000, 200, 1000, result.z)
    )
    assert result.raised == ["a"]


def test_count_cadence_checks_every_size_over_checks_per_window(clock: Any) -> None:
    monitor = make(clock, window={"size": 100}, checks_per_window=4)  # a check every 25 outcomes
    ran = [monitor.record([(("a",), True)]) is not None for _ in range(100)]
    assert [i + 1 for i, r in enumerate(ran) if r] == [25, 50, 75, 100]
    # items with hit None (not observed) do not count towards the cadence
    assert all(monitor.record([(("a",), None)]) is None for _ in range(30))


def test_time_cadence_and_time_window(clock: Any) -> None:
    monitor = make(clock, window={"seconds": 60}, checks_per_window=6, min_samples=2)
    assert monitor.record([(("a",), True)]) is None  # first record arms the schedule
    clock.advance(9.9)
    assert monitor.record([(("a",), True)]) is None
    clock.advance(0.1)
    assert monitor.record([(("b",), False)]) is not None  # 10 s = 60 / 6
    clock.advance(61)
    counts = monitor.counts()
    assert counts["a"].n == 0 and counts["b"].n == 0  # everything aged out


def test_alert_clears_when_samples_drop_below_min(clock: Any) -> None:
    monitor = make(clock, window={"seconds": 100, "size": 1000})
    feed(monitor, "a", 250, 500)
    feed(monitor, "b", 50, 500)
    assert monitor.check().raised == ["a"]
    clock.advance(101)
    result = monitor.check()
    assert result.cleared == ["a"] and result.groups["a"].status == "insufficient_samples"


def test_excluded_groups_are_never_compared(clock: Any) -> None:
    monitor = make(clock)
    feed(monitor, "none", 500, 500)
    feed(monitor, "a", 10, 500)
    feed(monitor, "b", 10, 500)
    result = monitor.check()
    assert result.groups["none"].status == "insufficient_samples"
    assert "none" not in monitor.active


def test_mover_ratio_upper_bound_covers_at_the_boundary() -> None:
    """One-sided 95% upper bounds of p1/p2 at true ratio 0.8: P(upper < 0.8) stays near 5%."""
    rng = random.Random(7)
    z = z_one_sided(0.05)
    misses = 0
    trials = 2000
    for _ in range(trials):
        x1 = sum(rng.random() < 0.16 for _ in range(200))
        x2 = sum(rng.random() < 0.20 for _ in range(200))
        if x2 and ratio_upper(x1, 200, x2, 200, z) < 0.8:
            misses += 1
    assert misses / trials < 0.07


@settings(max_examples=200, deadline=None)
@given(
    x1=st.integers(0, 300),
    n1=st.integers(1, 300),
    x2=st.integers(0, 300),
    n2=st.integers(1, 300),
    z=st.floats(1.0, 4.0),
)
def test_interval_arithmetic_properties(x1: int, n1: int, x2: int, n2: int, z: float) -> None:
    x1, x2 = min(x1, n1), min(x2, n2)
    low, high = wilson(x1, n1, z)
    assert 0.0 <= low <= x1 / n1 + 1e-12 and x1 / n1 - 1e-12 <= high <= 1.0
    if x2 > 0:
        upper = ratio_upper(x1, n1, x2, n2, z)
        assert upper >= (x1 / n1) / (x2 / n2) - 1e-9  # an upper bound is above the estimate
        assert upper >= ratio_upper(x1, n1, x2, n2, z * 0.5) - 1e-9  # and grows with confidence
    lower = difference_lower(x1, n1, x2, n2, z)
    assert lower <= x1 / n1 - x2 / n2 + 1e-9
