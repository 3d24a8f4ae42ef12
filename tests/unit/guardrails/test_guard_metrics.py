"""Metric names, types and labels follow CONTRACTS section 4; group labels stay bounded."""

from __future__ import annotations

import random
import string
from typing import Any

from prometheus_client import CollectorRegistry

from fairgate.guardrails import Guard, InMemoryWindowStore, Policy

from .test_guard_decisions import KeywordScorer

CONTRACT = {
    "fairgate_decisions": ("counter", {"action", "reason"}),
    "fairgate_toxicity_score": ("histogram", {"stage", "category"}),
    "fairgate_outcomes": ("counter", {"monitor", "group", "outcome"}),
    "fairgate_group_rate": ("gauge", {"monitor", "group"}),
    "fairgate_impact_ratio": ("gauge", {"monitor", "group"}),
    "fairgate_alert_active": ("gauge", {"monitor", "group"}),
    "fairgate_monitor_errors": ("counter", {"monitor"}),
    "fairgate_monitor_duration_seconds": ("histogram", {"monitor"}),
    "fairgate_inference_duration_seconds": ("histogram", {"model"}),
    "fairgate_batch_size": ("histogram", {"stage"}),
    "fairgate_model_info": ("gauge", {"role", "tag", "variant"}),
    "fairgate_policy_info": ("gauge", {"version"}),
}


def make(clock: Any, source: str = "both") -> tuple[Guard, CollectorRegistry]:
    policy = Policy.default().model_copy(deep=True)
    data = policy.model_dump()
    data["groups"]["source"] = source
    data["rates"]["min_samples"] = 20
    registry = CollectorRegistry()
    guard = Guard(
        policy=Policy.from_mapping(data),
        scorer=KeywordScorer(),
        registry=registry,
        clock=clock,
        store=InMemoryWindowStore(),
    )
    return guard, registry


def test_metric_names_types_and_labels(clock: Any) -> None:
    guard, registry = make(clock)
    guard.metrics.inference_duration.labels(model="classifier").observe(0.01)
    guard.metrics.set_model_info(role="classifier", tag="fairgate-classifier:abc", variant="int8")
    screens = guard.screen(["hello women", "awful"], ["female", None])
    guard.review(screens, ["negative", None])
    guard.check()
    families = {family.name: family for family in registry.collect()}
    for name, (kind, labels) in CONTRACT.items():
        assert name in families, name
        family = families[name]
        assert family.type == kind, (name, family.type)
        sample_labels = {k for s in family.samples for k in s.labels if k != "le"}
        assert sample_labels == labels, (name, sample_labels)
    assert registry.get_sample_value("fairgate_policy_info", {"version": "2026-11-30.5"}) == 1
    assert registry.get_sample_value("fairgate_batch_size_count", {"stage": "input"}) == 1
    assert registry.get_sample_value("fairgate_batch_size_count", {"stage": "review"}) == 1
    assert registry.get_sample_value("fairgate_monitor_duration_seconds_count", {"monitor": "toxicity"}) == 1
    # every name is prefixed, counters end in _total, durations are in seconds
    for family in registry.collect():
        assert family.name.startswith("fairgate_")
        if family.type == "counter":
            assert all(s.name.endswith(("_total", "_created")) for s in family.samples)


def test_gauges_declare_their_multiprocess_mode(clock: Any) -> None:
    guard, _ = make(clock)
    m = guard.metrics
    modes = {
        g._name: g._multiprocess_mode
        for g in (m.group_rate, m.impact_ratio, m.alert_active, m.model_info, m.policy_info)
    }
    assert modes == {
        "fairgate_group_rate": "mostrecent",
        "fairgate_impact_ratio": "mostrecent",
        "fairgate_alert_active": "max",
        "fairgate_model_info": "max",
        "fairgate_policy_info": "max",
    }


def test_group_labels_bounded_under_10000_random_group_strings(clock: Any) -> None:
    guard, registry = make(clock, source="both")
    rng = random.Random(3)
    alphabet = string.ascii_letters + string.digits + " _-éü中/"
    for _ in range(20):  # 20 batches of 500
        groups = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 20))) for _ in range(500)]
        texts = [rng.choice(["hello", "the women", "muslims and jews", "awful"]) + g for g in groups]
        screens = guard.screen(texts, groups)
        guard.review(screens, [None if s.blocked else rng.choice(["negative", "positive"]) for s in screens])
    guard.check()
    allowed = set(guard.policy.label_values)
    seen: set[str] = set()
    series = 0
    for family in registry.collect():
        for sample in family.samples:
            series += 1
            if "group" in sample.labels:
                seen.add(sample.labels["group"])
    assert seen <= allowed
    assert "other" in seen and "female" in seen
    # bounded by configuration: (monitors x groups) for each group metric, not by traffic
    groups_per_metric = len(guard.monitors) * len(allowed)
    assert series < 10 * groups_per_metric + 2000
