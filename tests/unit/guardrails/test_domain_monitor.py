"""The domain-shift monitor (guardrails/domain_monitor.py) and its place in the guard."""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from fairgate.guardrails import Guard, Policy, PolicyError, Screen
from fairgate.guardrails.domain import DomainReference, fit_domain_reference
from fairgate.guardrails.domain_monitor import DomainMonitor
from fairgate.guardrails.metrics import GuardMetrics
from fairgate.guardrails.policy import DomainPolicy
from fairgate.guardrails.store import InMemoryWindowStore
from tests.unit.guardrails.conftest import FakeClock

D, K = 16, 2


def _sample(rng: np.random.Generator, n: int, centres: np.ndarray, shift: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    targets = rng.integers(0, K, size=n)
    return centres[targets] + rng.normal(size=(n, D)) + shift, targets


@pytest.fixture
def world() -> tuple[DomainReference, np.ndarray]:
    """A reference fitted on 2,000 in-domain points, calibrated on 1,000 held-out ones."""
    rng = np.random.default_rng(7)
    centres = rng.normal(scale=2.0, size=(K, D))
    train, targets = _sample(rng, 2000, centres)
    reference, _ = fit_domain_reference(train, targets, classes=["negative", "positive"])
    held_out, _ = _sample(rng, 1000, centres)
    return reference.with_validation(reference.score(held_out), variant="fp32"), centres


def _monitor(reference: DomainReference, registry: CollectorRegistry, **policy: Any) -> DomainMonitor:
    section = DomainPolicy.model_validate({"window": {"size": 500}, "min_samples": 200, **policy})
    metrics = GuardMetrics(registry=registry, groups=["none", "other"])
    return DomainMonitor(reference=reference, policy=section, metrics=metrics, clock=FakeClock())


def _stream(monitor: DomainMonitor, rng: np.random.Generator, centres: np.ndarray, *, items: int, shift: float) -> int | None:
    """Feed ``items`` in batches of 25; the items seen when the alert was first active (None: never)."""
    for seen in range(25, items + 1, 25):
        x, _ = _sample(rng, 25, centres, shift)
        monitor.review(x)
        if monitor.active:
            return seen
    return None


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_in_distribution_traffic_raises_no_alert(world: tuple[DomainReference, np.ndarray], seed: int) -> None:
    reference, centres = world
    registry = CollectorRegistry()
    monitor = _monitor(reference, registry)
    assert _stream(monitor, np.random.default_rng(100 + seed), centres, items=20_000, shift=0.0) is None
    assert monitor.checks == 20_000 // 50  # every size / checks_per_window = 50 items
    assert registry.get_sample_value("fairgate_domain_alert_active") == 0
    share = registry.get_sample_value("fairgate_domain_out_of_domain_share")
    assert share is not None and share < monitor.expected


def test_shifted_traffic_raises_the_alert_and_in_domain_traffic_clears_it(
    world: tuple[DomainReference, np.ndarray], caplog: pytest.LogCaptureFixture
) -> None:
    reference, centres = world
    registry = CollectorRegistry()
    monitor = _monitor(reference, registry)
    rng = np.random.default_rng(11)
    assert _stream(monitor, rng, centres, items=1000, shift=0.0) is None
    with caplog.at_level(logging.WARNING, logger="fairgate.guardrails.domain_monitor"):
        until = _stream(monitor, rng, centres, items=2000, shift=1.0)
    # The window still holds 500 in-domain items: the first shifted ones are enough.
    assert until is not None and until <= 100, until
    assert "domain monitor: alert raised" in caplog.text
    assert registry.get_sample_value("fairgate_domain_alert_active") == 1
    assert monitor.last is not None and monitor.last.share_lower > monitor.expected
    # Back in domain: cleared once the window's share is down to the expected bound.
    for _ in range(40):
        x, _ = _sample(rng, 25, centres)
        monitor.review(x)
    assert not monitor.active
    assert registry.get_sample_value("fairgate_domain_alert_active") == 0
    assert monitor.alerts_raised == 1


def test_expected_share_is_the_validation_shares_upper_limit(world: tuple[DomainReference, np.ndarray]) -> None:
    reference, _ = world
    monitor = _monitor(reference, CollectorRegistry())
    threshold = reference.threshold(0.99)
    assert threshold.exceed / threshold.n <= 0.01 < monitor.expected < 0.02
    assert monitor.threshold == threshold
    # the exact upper limit: P(Binom(n, p0) <= exceed) = 1 - confidence
    cdf = sum(
        math.comb(threshold.n, k) * monitor.expected**k * (1 - monitor.expected) ** (threshold.n - k)
        for k in range(threshold.exceed + 1)
    )
    assert cdf == pytest.approx(0.05, rel=1e-6)


def test_scores_are_relative_to_the_threshold_and_skip_unclassified_rows(
    world: tuple[DomainReference, np.ndarray],
) -> None:
    reference, centres = world
    registry = CollectorRegistry()
    monitor = _monitor(reference, registry)
    x, _ = _sample(np.random.default_rng(3), 4, centres)
    x[1] = np.nan
    review = monitor.review(x)
    assert np.isnan(review.scores[1])
    rows = [0, 2, 3]
    np.testing.assert_allclose(review.scores[rows], reference.score(x[rows]) / monitor.threshold.value)
    assert registry.get_sample_value("fairgate_domain_score_count") == 3
    assert monitor.counts().n == 3


def _guard(reference: DomainReference | None, *, action: str = "flag", **extra: Any) -> Guard:
    policy = Policy.from_mapping(
        {
            "version": "d1",
            "toxicity": {"enabled": False},
            "rates": {"enabled": False},
            "counterfactual": {"enabled": False},
            "domain": {"window": {"size": 100}, "min_samples": 50, "action": action},
        }
    )
    return Guard(policy=policy, scorer=None, registry=CollectorRegistry(), clock=FakeClock(), domain=reference, **extra)


def test_guard_flags_out_of_domain_items_while_the_alert_is_active(world: tuple[DomainReference, np.ndarray]) -> None:
    reference, centres = world
    guard = _guard(reference)
    rng = np.random.default_rng(5)
    decisions = []
    for _ in range(10):
        x, _ = _sample(rng, 20, centres, shift=1.5)
        decisions = guard.review([Screen() for _ in x], ["positive"] * len(x), embeddings=x)
    assert guard.domain is not None and guard.domain.active
    flagged = [d for d in decisions if d.action == "flag"]
    assert flagged and all(d.reason_code == "domain_shift" and (d.domain_score or 0) > 1 for d in flagged)
    assert all(d.domain_score is not None for d in decisions)
    status = guard.status().domain
    assert status is not None and status.enabled and status.alert and status.status == "alert"
    assert status.share is not None and status.expected is not None and status.share > status.expected


def test_action_none_measures_without_flagging(world: tuple[DomainReference, np.ndarray]) -> None:
    reference, centres = world
    guard = _guard(reference, action="none")
    x, _ = _sample(np.random.default_rng(6), 200, centres, shift=1.5)
    decisions = guard.review([Screen() for _ in x], ["positive"] * len(x), embeddings=x)
    assert guard.domain is not None and guard.domain.active
    assert {d.action for d in decisions} == {"allow"}


def test_guard_without_reference_statistics_reports_the_monitor_off_and_why() -> None:
    guard = _guard(None, domain_unavailable="the classifier has no embedding output (rebuild it)")
    decisions = guard.review([Screen()], ["positive"], embeddings=np.zeros((1, D)))
    assert decisions[0].domain_score is None
    status = guard.status().domain
    assert status is not None and not status.enabled and status.status == "off"
    assert status.reason == "the classifier has no embedding output (rebuild it)"


def test_policy_reload_can_turn_the_monitor_off(world: tuple[DomainReference, np.ndarray]) -> None:
    reference, _ = world
    guard = _guard(reference)
    assert guard.domain is not None
    guard.apply_policy(guard.policy.model_copy(update={"domain": DomainPolicy(enabled=False)}))
    assert guard.domain is None
    status = guard.status().domain
    assert status is not None and status.reason == "policy domain.enabled is false"


def test_domain_policy_is_strict_and_names_the_fix() -> None:
    with pytest.raises(PolicyError, match=r"domain.action = 'block'.*use one of the values listed"):
        Policy.from_mapping({"domain": {"action": "block"}})
    with pytest.raises(PolicyError, match=r"domain.quantiles: unknown key"):
        Policy.from_mapping({"domain": {"quantiles": 0.9}})
    default = Policy.default().domain
    assert (default.enabled, default.quantile, default.action) == (True, 0.99, "none")
    with pytest.raises(PolicyError, match=r"min_samples 500 exceeds domain.window.size 100.*never test"):
        Policy.from_mapping({"domain": {"window": {"size": 100}, "min_samples": 500}})
    for reserved in ("domain", "toxicity", "counterfactual"):
        monitor = {"name": reserved, "outcome": "negative"}
        with pytest.raises(PolicyError, match=rf"monitor name '{reserved}' is reserved"):
            Policy.from_mapping({"rates": {"monitors": [monitor]}})


def test_degenerate_statistics_turn_the_monitor_off_with_the_fix(world: tuple[DomainReference, np.ndarray]) -> None:
    reference, _ = world
    broken = reference.with_validation(np.zeros(100), variant="int8")
    guard = _guard(broken)
    assert guard.domain is None
    status = guard.status().domain
    assert status is not None and not status.enabled
    assert status.reason is not None and "rebuild its domain statistics" in status.reason


def test_a_store_written_to_an_older_monitor_protocol_is_refused_not_downgraded() -> None:
    """Wrapping it as a plain window store would silently bypass its own boards and scope."""
    from fairgate.guardrails.local_store import as_monitor_store

    class OldProtocolStore(InMemoryWindowStore):
        scope = "fleet"

        def record(self, batches: Any, *, now: float) -> Any: ...

        def snapshot(self, queries: Any, *, now: float) -> Any: ...

        def publish(self, updates: Any) -> Any: ...

    with pytest.raises(TypeError, match=r"lacks \['reset_evidence'\]"):
        as_monitor_store(OldProtocolStore())
    assert as_monitor_store(InMemoryWindowStore()).scope == "worker"
