"""Swapping a guard's policy: windows of unchanged monitors kept, changed ones empty, bad ones refused."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from fairgate.guardrails.guard import Guard
from fairgate.guardrails.policy import Policy, PolicyError
from fairgate.guardrails.reload import monitor_definition
from fairgate.guardrails.store import InMemoryWindowStore, WindowCounts, WindowSpec

TEXTS = ["one", "two", "three", "four"]
GROUPS = ["a", "a", "b", "b"]
LABELS = ["negative", "positive", "negative", "positive"]


def _policy(version: str, **rates: Any) -> Policy:
    return Policy.from_mapping(
        {
            "version": version,
            "groups": {"source": "request", "allowed": ["a", "b"]},
            "toxicity": {"enabled": False},
            "rates": {
                "monitors": [
                    {"name": "negative", "source": "label", "outcome": "negative"},
                    {"name": "positive", "source": "label", "outcome": "positive", "harm": "low_rate"},
                ],
                "window": {"size": 1000},
                "min_samples": 10,
                **rates,
            },
        }
    )


def _counts(guard: Guard) -> dict[str, dict[str, int]]:
    return {m.name: {g.group: g.n for g in m.groups if g.group in ("a", "b")} for m in guard.status().monitors}


def _guard(registry: CollectorRegistry | None = None) -> Guard:
    guard = Guard(policy=_policy("v1"), scorer=None, registry=registry or CollectorRegistry())
    for _ in range(3):
        guard.review(guard.screen(TEXTS, GROUPS), LABELS)
    return guard


def test_a_decision_only_change_keeps_every_window() -> None:
    guard = _guard()
    kept = {m.name: m for m in guard.monitors}
    change = guard.apply_policy(_policy("v2", action="block"))
    assert change.kept == ("negative", "positive") and change.reset == () and change.removed == ()
    assert _counts(guard) == {"negative": {"a": 6, "b": 6}, "positive": {"a": 6, "b": 6}}
    assert all(kept[m.name] is m for m in guard.monitors)
    assert guard.policy.version == "v2" and guard.policy.rates.action == "block"


def test_a_changed_monitor_starts_empty_and_the_others_keep_theirs() -> None:
    guard = _guard()
    new = _policy(
        "v2",
        monitors=[
            {"name": "negative", "source": "label", "outcome": "negative"},
            {"name": "positive", "source": "label", "outcome": "positive", "harm": "high_rate"},  # changed
            {"name": "guard_block", "source": "guard", "outcome": "block"},  # new
        ],
    )
    change = guard.apply_policy(new)
    assert change.kept == ("negative",)
    assert change.reset == ("positive", "guard_block")
    assert _counts(guard) == {
        "negative": {"a": 6, "b": 6},
        "positive": {"a": 0, "b": 0},
        "guard_block": {"a": 0, "b": 0},
    }
    guard.review(guard.screen(TEXTS, GROUPS), LABELS)  # the swapped guard keeps counting
    assert _counts(guard)["positive"] == {"a": 2, "b": 2}
    assert _counts(guard)["negative"] == {"a": 8, "b": 8}


def test_a_window_change_resets_every_monitor_and_a_removed_monitor_is_forgotten() -> None:
    store = InMemoryWindowStore()
    guard = Guard(policy=_policy("v1"), scorer=None, registry=CollectorRegistry(), store=store)
    guard.review(guard.screen(TEXTS, GROUPS), LABELS)
    change = guard.apply_policy(
        _policy("v2", window={"size": 500}, monitors=[{"name": "negative", "source": "label", "outcome": "negative"}])
    )
    assert change.kept == () and change.reset == ("negative",) and change.removed == ("positive",)
    assert _counts(guard) == {"negative": {"a": 0, "b": 0}}
    # The old windows are gone from the store, not just unused.
    old = WindowSpec(size=1000)
    gone = store.counts(["negative/a", "positive/a"], now=0.0, spec=old)
    assert gone == {"negative/a": WindowCounts(0, 0), "positive/a": WindowCounts(0, 0)}


def test_policy_info_moves_to_the_new_version() -> None:
    registry = CollectorRegistry()
    guard = _guard(registry)
    guard.apply_policy(_policy("v2"))
    assert registry.get_sample_value("fairgate_policy_info", {"version": "v2"}) == 1
    assert registry.get_sample_value("fairgate_policy_info", {"version": "v1"}) == 0


def test_a_policy_the_scorer_cannot_serve_is_refused_and_the_old_one_stays() -> None:
    guard = _guard()
    with_toxicity = Policy.from_mapping({"version": "v2", "groups": {"allowed": ["a", "b"]}})
    with pytest.raises(PolicyError, match="no scorer was given"):
        guard.apply_policy(with_toxicity)
    assert guard.policy.version == "v1"
    assert _counts(guard)["negative"] == {"a": 6, "b": 6}


def test_a_new_store_starts_every_monitor_anew() -> None:
    guard = _guard()
    change = guard.apply_policy(_policy("v2"), store=InMemoryWindowStore())
    assert change.kept == () and set(change.reset) == {"negative", "positive"}
    assert _counts(guard)["negative"] == {"a": 0, "b": 0}


def test_reset_empties_the_named_windows_only() -> None:
    guard = _guard()
    assert guard.reset_windows(monitor="negative", group="a") == [("negative", "a")]
    assert _counts(guard) == {"negative": {"a": 0, "b": 6}, "positive": {"a": 6, "b": 6}}
    emptied = guard.reset_windows(group="b")
    assert ("negative", "b") in emptied and ("positive", "b") in emptied
    assert _counts(guard) == {"negative": {"a": 0, "b": 0}, "positive": {"a": 6, "b": 0}}
    guard.reset_windows(monitor="positive")
    assert _counts(guard)["positive"] == {"a": 0, "b": 0}


def test_reset_names_the_known_monitors_and_groups() -> None:
    guard = _guard()
    with pytest.raises(KeyError, match="the policy has negative, positive"):
        guard.reset_windows(monitor="nope")
    with pytest.raises(KeyError, match="no group 'zz'"):
        guard.reset_windows(group="zz")


def test_monitor_definition_ignores_decision_only_settings() -> None:
    assert monitor_definition(_policy("a"), "negative") == monitor_definition(
        _policy("b", action="block", scope="all", on_error="flag"), "negative"
    )
    assert monitor_definition(_policy("a"), "negative") != monitor_definition(_policy("b", confidence=0.99), "negative")
    assert monitor_definition(_policy("a"), "missing") is None
