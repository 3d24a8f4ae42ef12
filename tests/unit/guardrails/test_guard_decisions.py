"""Guard.screen / Guard.review: actions, reasons, scopes, on_error, the off switch."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from fairgate.guardrails import (
    Decision,
    Guard,
    GuardStatus,
    InMemoryWindowStore,
    OnnxToxicityScorer,
    Policy,
    PolicyError,
    Screen,
)
from fairgate.guardrails.policy import TOXICITY_CATEGORIES


class KeywordScorer:
    """Scores by keyword: 'mild' -> toxicity 0.6, 'awful' -> toxicity 0.95, else 0.01."""

    categories = TOXICITY_CATEGORIES

    def __init__(self) -> None:
        self.calls = 0

    def score(self, texts: Sequence[str]) -> np.ndarray:
        self.calls += 1
        out = np.full((len(texts), len(self.categories)), 0.01)
        for i, text in enumerate(texts):
            if "awful" in text:
                out[i, 0] = 0.95
            elif "mild" in text:
                out[i, 0] = 0.6
        return out


class BrokenScorer:
    categories = TOXICITY_CATEGORIES

    def score(self, texts: Sequence[str]) -> np.ndarray:
        raise RuntimeError("model crashed")


class BrokenStore(InMemoryWindowStore):
    def add(self, *args: Any, **kwargs: Any) -> None:
        raise ConnectionError("store down")


def policy(**overrides: Any) -> Policy:
    data: dict[str, Any] = {
        "version": "t1",
        "groups": {"source": "request", "allowed": ["a", "b"]},
        "toxicity": {"categories": {"toxicity": {"flag": 0.5, "block": 0.8}}},
        "rates": {
            "monitors": [{"name": "negative", "outcome": "negative"}],
            "window": {"size": 200},
            "min_samples": 50,
            "checks_per_window": 4,
        },
    }
    for key, value in overrides.items():
        section, _, field = key.partition("__")
        if field:
            data.setdefault(section, {})[field] = value
        else:
            data[section] = value
    return Policy.from_mapping(data)


def make_guard(
    clock: Any, scorer: Any = None, store: Any = None, **overrides: Any
) -> tuple[Guard, CollectorRegistry]:
    registry = CollectorRegistry()
    guard = Guard(
        policy=policy(**overrides),
        scorer=scorer if scorer is not None else KeywordScorer(),
        registry=registry,
        clock=clock,
        store=store if store is not None else InMemoryWindowStore(),
    )
    return guard, registry


def run(guard: Guard, texts: list[str], groups: list[Any], labels: list[str]) -> list[Decision]:
    screens = guard.screen(texts, groups)
    return guard.review(screens, [None if s.blocked else lab for s, lab in zip(screens, labels, strict=True)])


def test_toxicity_thresholds_allow_flag_block(clock: Any) -> None:
    guard, registry = make_guard(clock)
    screens = guard.screen(["hello", "mild words", "awful words"], ["a", "a", "b"])
    assert [s.action for s in screens] == ["allow", "flag", "block"]
    assert screens[2].blocked and not screens[1].blocked
    reason = screens[2].reasons[0]
    assert (reason.monitor, reason.stage, reason.category, reason.code) == (
        "toxicity",
        "input",
        "toxicity",
        "toxicity_toxicity",
    )
    assert reason.value == pytest.approx(0.95) and reason.threshold == 0.8
    assert reason.message == "toxicity score 0.950 >= block threshold 0.8"
    decisions = guard.review(screens, ["positive", "positive", None])
    assert [d.action for d in decisions] == ["allow", "flag", "block"]
    assert decisions[2].toxicity["toxicity"] == pytest.approx(0.95)
    assert decisions[0].groups == ("a",) and decisions[2].label is None
    assert (
        registry.get_sample_value(
            "fairgate_decisions_total", {"action": "block", "reason": "toxicity_toxicity"}
        )
        == 1
    )
    assert registry.get_sample_value("fairgate_decisions_total", {"action": "allow", "reason": "none"}) == 1
    assert (
        registry.get_sample_value("fairgate_toxicity_score_count", {"stage": "input", "category": "toxicity"})
        == 3
    )


def test_onnx_guard_with_default_policy_blocks_toxic_allows_benign(clock: Any, guard_model_dir: Path) -> None:
    scorer = OnnxToxicityScorer.from_directory(guard_model_dir, variant="int8")
    guard = Guard(policy=Policy.default(), scorer=scorer, registry=CollectorRegistry(), clock=clock)
    screens = guard.screen(["I will kill you", "have a nice day", "you idiot"], [None, None, None])
    # A threat blocks; an insult is flagged (the default policy blocks only the specific harms).
    assert [s.action for s in screens] == ["block", "allow", "flag"]
    assert {r.code for r in screens[0].reasons if r.action == "block"} <= {"toxicity_threat", "toxicity_severe_toxicity"}
    assert {r.code for r in screens[2].reasons} >= {"toxicity_toxicity", "toxicity_insult"}
    assert screens[1].toxicity["toxicity"] < 0.05


def test_output_stage(clock: Any) -> None:
    guard, registry = make_guard(clock)
    screens = guard.screen(["awful reply"], None, stage="output")
    assert screens[0].stage == "output" and screens[0].reasons[0].stage == "output"
    assert (
        registry.get_sample_value(
            "fairgate_toxicity_score_count", {"stage": "output", "category": "toxicity"}
        )
        == 1
    )
    with pytest.raises(ValueError, match="stage 'middle' is not input or output"):
        guard.screen(["x"], None, stage="middle")


@pytest.mark.parametrize("on_error", ["flag", "block", "allow"])
def test_toxicity_on_error(clock: Any, on_error: str) -> None:
    guard, registry = make_guard(clock, scorer=BrokenScorer(), toxicity__on_error=on_error)
    screens = guard.screen(["hello", "world"], ["a", "b"])
    assert [s.action for s in screens] == [on_error, on_error]
    if on_error != "allow":
        assert screens[0].reasons[0].code == "monitor_error"
        assert screens[0].reasons[0].message == f"toxicity scorer failed; policy toxicity.on_error={on_error}"
    assert registry.get_sample_value("fairgate_monitor_errors_total", {"monitor": "toxicity"}) == 1
    decisions = guard.review(screens, [None if s.blocked else "positive" for s in screens])
    expected_reason = "none" if on_error == "allow" else "monitor_error"
    assert (
        registry.get_sample_value("fairgate_decisions_total", {"action": on_error, "reason": expected_reason})
        == 2
    )
    assert decisions[0].action == on_error


def test_scorer_with_wrong_shape_counts_as_error(clock: Any) -> None:
    class Short(KeywordScorer):
        def score(self, texts: Sequence[str]) -> np.ndarray:
            return np.zeros((len(texts), 2))

    guard, registry = make_guard(clock, scorer=Short())
    assert guard.screen(["x"], ["a"])[0].action == "flag"
    assert registry.get_sample_value("fairgate_monitor_errors_total", {"monitor": "toxicity"}) == 1


@pytest.mark.parametrize("on_error", ["flag", "block", "allow"])
def test_rate_monitor_on_error(clock: Any, on_error: str) -> None:
    guard, registry = make_guard(clock, store=BrokenStore(), rates__on_error=on_error)
    decisions = run(guard, ["hello"], ["a"], ["negative"])
    assert decisions[0].action == on_error
    assert registry.get_sample_value("fairgate_monitor_errors_total", {"monitor": "negative"}) == 1
    if on_error != "allow":
        assert decisions[0].reasons[0].code == "monitor_error"


def drive_to_alert(guard: Guard) -> None:
    """Group a: 60% negative, group b: 10% negative, 100 items each, interleaved."""
    texts, groups, labels = [], [], []
    for i in range(100):
        texts += ["hello", "hello"]
        groups += ["a", "b"]
        labels += ["negative" if i % 10 < 6 else "positive", "negative" if i % 10 < 1 else "positive"]
    run(guard, texts, groups, labels)
    assert guard.monitors[0].active == {"a"}, guard.status()


@pytest.mark.parametrize(
    ("action", "scope", "expected"),
    [
        ("flag", "affected_group", ["flag", "allow", "allow"]),
        ("block", "affected_group", ["block", "allow", "allow"]),
        ("flag", "all", ["flag", "flag", "flag"]),
        ("block", "all", ["block", "block", "block"]),
    ],
)
def test_rate_alert_action_and_scope(clock: Any, action: str, scope: str, expected: list[str]) -> None:
    guard, registry = make_guard(clock, rates__action=action, rates__scope=scope)
    drive_to_alert(guard)
    decisions = run(guard, ["hello", "hello", "hello"], ["a", "b", None], ["positive"] * 3)
    assert [d.action for d in decisions] == expected
    reason = decisions[0].reasons[0]
    assert (reason.monitor, reason.stage, reason.group, reason.code) == (
        "negative",
        "review",
        "a",
        "rate_negative",
    )
    assert reason.threshold == 0.8 and reason.value == pytest.approx(0.1 / 0.6)
    assert registry.get_sample_value("fairgate_alert_active", {"monitor": "negative", "group": "a"}) == 1
    assert registry.get_sample_value("fairgate_alert_active", {"monitor": "negative", "group": "b"}) == 0
    assert registry.get_sample_value(
        "fairgate_impact_ratio", {"monitor": "negative", "group": "a"}
    ) == pytest.approx(1 / 6)
    assert registry.get_sample_value(
        "fairgate_group_rate", {"monitor": "negative", "group": "a"}
    ) == pytest.approx(0.6)


def test_guard_monitors_its_own_blocks_per_group(clock: Any) -> None:
    guard, registry = make_guard(
        clock,
        rates__monitors=[{"name": "guard_block", "source": "guard", "outcome": "block"}],
    )
    texts = ["awful" if i % 2 == 0 else "fine" for i in range(100)] + ["fine"] * 100
    groups = ["a"] * 100 + ["b"] * 100
    run(guard, texts, groups, ["positive"] * 200)
    assert (
        registry.get_sample_value(
            "fairgate_outcomes_total", {"monitor": "guard_block", "group": "a", "outcome": "block"}
        )
        == 50
    )
    assert (
        registry.get_sample_value(
            "fairgate_outcomes_total", {"monitor": "guard_block", "group": "b", "outcome": "allow"}
        )
        == 100
    )
    status = guard.status()
    monitor = status.monitors[0]
    assert monitor.active == ["a"]
    by_group = {g.group: g for g in monitor.groups}
    assert by_group["a"].rate == pytest.approx(0.5) and by_group["b"].rate == 0.0


def test_items_in_several_groups_count_in_each(clock: Any) -> None:
    guard, registry = make_guard(clock)
    run(guard, ["hello"], [["a", "b"]], ["negative"])
    for group in ("a", "b"):
        assert (
            registry.get_sample_value(
                "fairgate_outcomes_total", {"monitor": "negative", "group": group, "outcome": "negative"}
            )
            == 1
        )


def test_policy_off_switch_skips_every_monitor(clock: Any) -> None:
    scorer = KeywordScorer()
    guard, registry = make_guard(clock, scorer=scorer, enabled=False)
    decisions = run(guard, ["awful"] * 5, ["a"] * 5, ["negative"] * 5)
    assert [d.action for d in decisions] == ["allow"] * 5
    assert scorer.calls == 0
    assert guard.monitors[0].counts()["a"].n == 0
    assert registry.get_sample_value("fairgate_decisions_total", {"action": "allow", "reason": "none"}) == 5
    assert guard.status().enabled is False


def test_toxicity_enabled_without_scorer_is_a_policy_error(clock: Any) -> None:
    with pytest.raises(PolicyError, match="toxicity.enabled is true but no scorer was given"):
        Guard(policy=policy(), scorer=None, registry=CollectorRegistry(), clock=clock)
    guard = Guard(
        policy=policy(toxicity={"enabled": False}), scorer=None, registry=CollectorRegistry(), clock=clock
    )
    assert guard.screen(["awful"], ["a"])[0].action == "allow"


def test_scorer_missing_a_policy_category(clock: Any) -> None:
    class Two(KeywordScorer):
        categories = ("toxicity", "insult")

    with pytest.raises(
        PolicyError, match=r"toxicity.categories: the scorer has no 'threat' \(it scores toxicity, insult\)"
    ):
        Guard(
            policy=policy(toxicity={"categories": {"threat": {"flag": 0.5}}}),
            scorer=Two(),
            registry=CollectorRegistry(),
            clock=clock,
        )


def test_status_reports_insufficient_samples_as_none(clock: Any) -> None:
    guard, _ = make_guard(clock)
    run(guard, ["hello"] * 3, ["a", "b", "a"], ["negative", "positive", "positive"])
    guard.check()
    status = guard.status()
    assert isinstance(status, GuardStatus)
    assert status.policy_version == "t1"
    a = next(g for g in status.monitors[0].groups if g.group == "a")
    assert (a.n, a.positives, a.status, a.impact_ratio) == (2, 1, "insufficient_samples", None)
    assert a.rate == pytest.approx(0.5)
    none = next(g for g in status.monitors[0].groups if g.group == "none")
    assert none.rate is None  # empty window: not a silent zero
    assert status.model_dump_json()  # serialisable (no NaN)


def test_length_mismatches(clock: Any) -> None:
    guard, _ = make_guard(clock)
    with pytest.raises(ValueError, match="got 2 texts but 1 groups"):
        guard.screen(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="got 1 screens but 2 labels"):
        guard.review([Screen()], ["x", "y"])


def test_encoding_is_reused_when_fingerprints_match(clock: Any, guard_model_dir: Path) -> None:
    scorer = OnnxToxicityScorer.from_directory(guard_model_dir, variant="fp32")
    guard = Guard(policy=Policy.default(), scorer=scorer, registry=CollectorRegistry(), clock=clock)
    encoding = scorer.model.encode(["kill"])
    calls = []
    original = scorer.model.encode
    scorer.model.encode = lambda texts: calls.append(texts) or original(texts)  # type: ignore[method-assign]
    screens = guard.screen(["kill"], None, encoding=encoding)
    assert screens[0].action == "block" and calls == []
