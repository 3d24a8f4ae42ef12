"""`rates.method: sequential`: the e-detector against a direct computation, its false-alarm
guarantee in simulation, detection from the start and after a late change, policy errors,
a fleet-wide store taking the method, and the evidence in status and metrics (the Redis
detector against this one: test_rates_sequential_redis.py)."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from fairgate.guardrails import Guard, InMemoryWindowStore, Policy
from fairgate.guardrails.local_store import LocalMonitorStore
from fairgate.guardrails.policy import PolicyError
from fairgate.guardrails.rates import RateMonitor, decode_check, encode_check
from fairgate.guardrails.sequential import (
    BET_FRACTIONS,
    SequentialDetector,
    SequentialSpec,
    expected_false_alarm_bound,
)
from fairgate.guardrails.simulate import simulate_methods, simulate_rates
from fairgate.guardrails.store import Scope

from .test_guard_decisions import KeywordScorer


def sequential_policy(**rates: Any) -> Policy:
    data = Policy.default().model_dump()
    data["rates"].update({"method": "sequential", "window": {"size": 500}, "min_samples": 50, **rates})
    return Policy.from_mapping(data)


# -- the statistic -------------------------------------------------------------------------


def direct_detector(
    units: list[tuple[int, int, int, int]], *, bound: float, start_every: int, head: float
) -> float:
    """Shiryaev-Roberts by definition: the sum over starts of each e-process's own wealth."""
    total = 0.0
    for start in range(0, len(units), start_every):
        initial = head if start == 0 else 1.0
        mixture = 0.0
        for fraction in BET_FRACTIONS:
            wealth = initial
            for na, xa, nb, xb in units[start:]:
                bet = min(fraction * 2 / (1 / na + 1 / nb), 0.95)  # scaled by the unit's size
                wealth *= 1.0 + bet * (bound * xa / na - xb / nb)  # group a accused (high_rate)
            mixture += wealth / len(BET_FRACTIONS)
        total += mixture
    return total


def test_detector_equals_the_sum_of_its_e_processes() -> None:
    spec = SequentialSpec(
        harm="high_rate", ratio_min=0.8, difference_max=None, arl=1e9, start_every=3, reference="b"
    )
    detector = SequentialDetector(groups=["a", "b"], spec=spec)
    rng = random.Random(3)
    units: list[tuple[int, int, int, int]] = []
    for _ in range(17):
        # Several outcomes per group per batch: a unit holds their means.
        na, nb = rng.randint(1, 4), rng.randint(1, 3)
        xa, xb = rng.randint(0, na), rng.randint(0, nb)
        assert detector.update({"a": (na, xa), "b": (nb, xb)}) == []
        units.append((na, xa, nb, xb))
    value, against = detector.evidence()["a"]
    expected = direct_detector(units, bound=0.8, start_every=3, head=detector.head_start)
    assert value * detector.threshold == pytest.approx(expected, rel=1e-12)
    assert against == "b"
    # A batch with only one group's outcomes closes no unit: nothing moves.
    detector.update({"a": (5, 5)})
    assert detector.evidence()["a"][0] == pytest.approx(value)


def test_threshold_and_head_start_split_the_budget_over_pairs() -> None:
    spec = SequentialSpec(harm="high_rate", ratio_min=0.8, difference_max=0.1, arl=40_000, start_every=100)
    two = SequentialDetector(groups=["a", "b"], spec=spec)
    five = SequentialDetector(groups=list("abcde"), spec=spec)
    # 2 tests; c = k - 1 comparisons per outcome; D = tests x ordered pairs detectors.
    assert two.threshold == pytest.approx(2 * 1 * 40_000 / 100)
    assert five.threshold == pytest.approx(2 * 4 * 40_000 / 100)
    assert two.head_start == pytest.approx(0.05 * two.threshold / (2 * 2))
    assert five.head_start == pytest.approx(0.05 * five.threshold / (2 * 20))
    assert expected_false_alarm_bound(n=100_000, spec=spec) == pytest.approx(0.05 + 2.5)


def test_alarm_names_group_and_resets_its_detector() -> None:
    spec = SequentialSpec(harm="low_rate", ratio_min=0.8, difference_max=None, arl=1000, start_every=10)
    detector = SequentialDetector(groups=["a", "b"], spec=spec)
    alarms = []
    for _ in range(400):
        alarms += detector.update({"a": (1, 1), "b": (1, 0)})  # favourable outcome: b never gets it
        if alarms:
            break
    assert alarms and alarms[0].group == "b" and alarms[0].other == "a" and alarms[0].evidence >= 1
    assert alarms[0].test == "impact_ratio"
    assert detector.evidence()["b"][0] < 1  # reset at the alarm
    detector.reset(["a"])
    assert detector.evidence() == {"a": (0.0, None), "b": (0.0, None)}


# -- the guarantee, in simulation ----------------------------------------------------------


def count_alarms(spec: SequentialSpec, *, runs: int, n: int, loosen: float = 1.0) -> int:
    """Alarms over ``runs`` seeded streams of ``n`` single-outcome batches at ratio exactly 0.8."""
    alarms = 0
    for seed in range(runs):
        rng = np.random.default_rng(seed)
        detector = SequentialDetector(groups=["a", "b"], spec=spec)
        detector.threshold /= loosen  # loosen > 1: a mis-calibrated detector, for the test's power
        detector.head_start /= loosen
        which = rng.integers(0, 2, size=n).tolist()
        hits = (rng.random(n) < np.where(np.array(which) == 0, 0.5, 0.4)).tolist()
        for group, hit in zip(which, hits, strict=True):
            alarms += len(detector.update({"ab"[group]: (1, int(hit))}))
    return alarms


def test_false_alarms_at_the_bound_stay_within_the_guarantee() -> None:
    """At a true ratio exactly at the bound (0.4 / 0.5, the worst case), the alarms over many
    seeds stay below runs x ((1 - confidence) + n / arl). The bound is not vacuous here: a
    detector whose threshold is 10 times too low breaks it (and one 3 times too low about
    meets it), so a budget split forgotten or a bet too bold fails this test."""
    spec = SequentialSpec(harm="high_rate", ratio_min=0.8, difference_max=None, arl=300, start_every=5)
    runs, n = 20, 2000
    bound = runs * expected_false_alarm_bound(n=n, spec=spec)
    observed = count_alarms(spec, runs=runs, n=n)
    assert 0 < observed <= bound, (observed, bound)
    assert count_alarms(spec, runs=runs, n=n, loosen=10.0) > bound


def test_no_false_alarm_at_equal_rates() -> None:
    results = [
        simulate_rates(rates=[0.2, 0.2], n=10_000, seed=seed, policy=sequential_policy(), method="sequential", batch=8)
        for seed in range(4)
    ]
    assert sum(r.false_alarms for r in results) == 0


def test_detects_a_clear_disparity_within_a_bound() -> None:
    result = simulate_rates(rates=[0.5, 0.2], n=3000, seed=1, policy=sequential_policy(), method="sequential")
    assert result.first_alert is not None and result.first_alert <= 1500
    female = next(g for g in result.groups if g.group == "female")
    assert female.alerts == 1 and result.false_alarms == 0


def test_detects_a_late_change() -> None:
    found = simulate_methods(
        rates=[0.2, 0.2],
        then=[0.5, 0.2],
        change_at=6000,
        n=9000,
        seed=2,
        policy=sequential_policy(),
        methods=("sequential",),
        batch=4,
    )["sequential"]
    assert found.detection_delay is not None and found.detection_delay <= 2000
    assert found.false_alarms == 0 and found.first_alert is not None and found.first_alert > 6000


# -- policy ---------------------------------------------------------------------------------


def test_policy_errors_name_the_fix() -> None:
    with pytest.raises(PolicyError, match=r"rates.method = 'bayes': should be 'window' or 'sequential'"):
        Policy.from_mapping({"rates": {"method": "bayes"}})
    with pytest.raises(PolicyError, match="arl 100 is below start_every 500; raise arl or lower start_every"):
        Policy.from_mapping({"rates": {"sequential": {"arl": 100, "start_every": 500}}})
    with pytest.raises(PolicyError, match=r"rates.sequential.arl = 5: should be greater than or equal to 100"):
        Policy.from_mapping({"rates": {"sequential": {"arl": 5}}})
    with pytest.raises(PolicyError, match=r"rates.sequential.window: unknown key"):
        Policy.from_mapping({"rates": {"sequential": {"window": 5}}})
    assert Policy.default().rates.method == "window"


class FleetStore(LocalMonitorStore):
    """A store that says it is shared by the fleet (as the Redis store does)."""

    @property
    def scope(self) -> Scope:
        return "fleet"


def test_sequential_runs_on_a_fleet_store() -> None:
    """The refusal is gone: the store keeps the detectors (one per pair for the fleet with
    Redis), so a fleet-wide store takes a sequential policy at start and at reload."""
    guard = Guard(policy=sequential_policy(), scorer=KeywordScorer(), registry=CollectorRegistry(), store=FleetStore())
    assert guard.monitors[0].sequential is not None and guard.window_scope == "fleet"
    guard = Guard(policy=Policy.default(), scorer=KeywordScorer(), registry=CollectorRegistry(), store=FleetStore())
    guard.apply_policy(sequential_policy().model_copy(update={"version": "2"}))
    assert guard.policy.rates.method == "sequential"


def test_serve_check_takes_sequential_with_redis(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from fairgate.service.serve_cli import check_serving

    policy = tmp_path / "p.yaml"
    policy.write_text("rates: {method: sequential}\n")
    monkeypatch.setenv("FAIRGATE_POLICY", str(policy))
    monkeypatch.setenv("FAIRGATE_REDIS_URL", "redis://localhost:6379/0")
    settings = check_serving({}, models=False)
    assert settings.service.redis_url is not None


# -- evidence in status and metrics -------------------------------------------------------


def test_status_and_gauges_show_the_evidence(clock: Any) -> None:
    registry = CollectorRegistry()
    guard = Guard(
        policy=sequential_policy(),
        scorer=KeywordScorer(),
        registry=registry,
        clock=clock,
        store=InMemoryWindowStore(),
    )
    rng = random.Random(0)
    for _ in range(150):
        screens = guard.screen(["hello"] * 4, ["female", "female", "male", "male"])
        labels = ["negative" if rng.random() < 0.6 else "positive" for _ in range(2)]
        labels += ["negative" if rng.random() < 0.1 else "positive" for _ in range(2)]
        decisions = guard.review(screens, labels)
        if "female" in guard.monitors[0].active:
            break
    assert "female" in guard.monitors[0].active
    assert decisions[0].action == "flag" and decisions[2].action == "allow"
    assert "sequential evidence" in decisions[0].reasons[0].message
    status = guard.status()
    negative = next(m for m in status.monitors if m.name == "negative")
    assert negative.method == "sequential"
    female = next(g for g in negative.groups if g.group == "female")
    assert female.alert and female.evidence is not None and female.evidence >= 1
    assert female.evidence_against == "male"
    labels_ = {"monitor": "negative", "group": "female"}
    assert (registry.get_sample_value("fairgate_rate_evidence", labels_) or 0) >= 1
    assert registry.get_sample_value("fairgate_impact_ratio_bound", labels_) is not None
    assert registry.get_sample_value("fairgate_alert_active", labels_) == 1


def test_window_method_exports_its_bound_and_no_evidence(clock: Any) -> None:
    registry = CollectorRegistry()
    guard = Guard(policy=Policy.default(), scorer=KeywordScorer(), registry=registry, clock=clock)
    screens = guard.screen(["hello"] * 2, ["female", "male"])
    guard.review(screens, ["negative", "positive"])
    guard.check()
    labels = {"monitor": "negative", "group": "female"}
    evidence = registry.get_sample_value("fairgate_rate_evidence", labels)
    assert evidence is not None and np.isnan(evidence)
    assert guard.status().monitors[0].method == "window"


def test_check_round_trip_keeps_evidence() -> None:
    policy = sequential_policy()
    monitor = RateMonitor(
        monitor=policy.rates.monitors[0],
        rates=policy.rates,
        groups=("female", "male"),
        store=InMemoryWindowStore(),
        clock=lambda: 0.0,
    )
    monitor.record([(("female",), True), (("male",), False)])
    result = monitor.check()
    again = decode_check(encode_check(result))
    assert again.groups["female"].evidence == pytest.approx(result.groups["female"].evidence)
    assert again.groups["female"].evidence_against == "male"


def test_a_sequential_alert_stays_on_while_the_window_is_too_small_to_show_recovery(clock: Any) -> None:
    """The detector can alarm before a group has ``min_samples`` in its window (its evidence
    accumulates across units). A later check with too few samples has seen no recovery, so it
    must not clear the alert: once per disparity, not raised, cleared and raised again."""
    guard = Guard(
        policy=sequential_policy(min_samples=400),
        scorer=KeywordScorer(),
        registry=CollectorRegistry(),
        clock=clock,
        store=InMemoryWindowStore(),
    )
    rng = random.Random(5)
    raised_at = None
    for step in range(150):
        screens = guard.screen(["hello"] * 2, ["female", "male"])
        labels = ["negative" if rng.random() < 0.9 else "positive", "negative" if rng.random() < 0.1 else "positive"]
        guard.review(screens, labels)
        monitor = guard.monitors[0]
        if raised_at is None and "female" in monitor.active:
            raised_at = step
        elif raised_at is not None:
            assert "female" in monitor.active, f"cleared at batch {step} without any sign of recovery"
    assert raised_at is not None and raised_at < 100  # the alarm came before 400 samples (batch 200)
    assert guard.monitors[0].alerts_raised == 1
