"""The live counterfactual probe: sampling, well-formed variants, the cost bound, metrics,
status, and that it never changes a decision (guardrails/probe.py via Guard.probe)."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from fairgate.guardrails import Guard, Policy, PolicyError, ProbeClassifier
from fairgate.guardrails.identity import Lexicon
from fairgate.guardrails.policy import TOXICITY_CATEGORIES

RELIGION = ("christian", "muslim", "jewish", "hindu", "buddhist", "atheist")


class WordScorer:
    """Toxicity 0.7 (a flag) for texts naming Muslims, 0.95 (a block) for 'awful', else 0.02.

    Records the texts of every call, so tests see exactly what the probe scored.
    """

    categories = TOXICITY_CATEGORIES

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def score(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(list(texts))
        out = np.full((len(texts), len(self.categories)), 0.02)
        for i, text in enumerate(texts):
            if "awful" in text:
                out[i, 0] = 0.95
            elif "Muslim" in text:
                out[i, 0] = 0.7
        return out


class FailingScorer(WordScorer):
    """Scores the screen, then fails on every later call (the probe's)."""

    def score(self, texts: Sequence[str]) -> np.ndarray:
        if self.calls:
            raise RuntimeError("session lost")
        return super().score(texts)


class Draws:
    """A random source that returns the given draws in order (the probe draws one per item)."""

    def __init__(self, draws: Sequence[float]) -> None:
        self.draws = list(draws)
        self.used = 0

    def random(self) -> float:
        self.used += 1
        return self.draws.pop(0)


class Classifier:
    """'negative' for texts naming Jews, else 'positive'; records the rows of each call."""

    labels = ("negative", "positive")

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(list(texts))
        return np.array([[0.8, 0.2] if "Jew" in t else [0.1, 0.9] for t in texts])

    def probe(self) -> ProbeClassifier:
        return ProbeClassifier(labels=self.labels, predict=self.predict)


def make_policy(**counterfactual: Any) -> Policy:
    return Policy.from_mapping(
        {
            "version": "probe-1",
            "groups": {"source": "identity_terms", "allowed": ["muslim", "jewish", "christian", "female", "male"]},
            "toxicity": {"categories": {"toxicity": {"flag": 0.5, "block": 0.9}}},
            "rates": {"enabled": False},
            "counterfactual": {"sample": 1.0, **counterfactual},
        }
    )


def make_guard(
    policy: Policy, *, scorer: WordScorer | None = None, rng: Any = None, registry: CollectorRegistry | None = None
) -> Guard:
    return Guard(
        policy=policy,
        scorer=scorer or WordScorer(),
        registry=registry or CollectorRegistry(),
        rng=rng if rng is not None else random.Random(7),
    )


def run(guard: Guard, texts: list[str], classifier: Classifier | None = None) -> tuple[list[Any], list[Any]]:
    screens = guard.screen(texts)
    decisions = guard.review(screens, [None if s.blocked else "positive" for s in screens])
    records = guard.probe(
        texts,
        screens,
        [d.label for d in decisions],
        classifier=classifier.probe() if classifier is not None else None,
    )
    return decisions, records


def test_variants_are_well_formed_and_of_the_same_kind() -> None:
    scorer = WordScorer()
    guard = make_guard(make_policy(kinds=["religion"]), scorer=scorer)
    text = "Muslims and their neighbours met at the market."
    _, [record] = run(guard, [text])

    assert record.kind == "religion" and record.source_groups == ("muslim",)
    assert record.target_groups == tuple(g for g in RELIGION if g != "muslim")
    probe_rows = scorer.calls[1]  # calls[0] is the screen
    assert probe_rows[0] == text  # the original, scored again with its variants
    found = Lexicon.from_yaml().compile()
    for target, variant in zip(record.target_groups, probe_rows[1:], strict=True):
        assert found.find(variant) == {target}, variant  # names the swapped-in group, and only it
        assert variant.endswith("and their neighbours met at the market.")
    assert probe_rows[1] == "Christians and their neighbours met at the market."


def test_gap_and_flips_of_guard_and_classifier() -> None:
    classifier = Classifier()
    guard = make_guard(make_policy(kinds=["religion"]))
    _, [record] = run(guard, ["A Muslim opened a bakery."], classifier)

    assert record.guard is not None and record.classifier is not None
    # Guard: 0.7 (flag) for the original, 0.02 (allow) for every other group.
    assert record.guard.scores[0] == pytest.approx(0.7)
    assert record.guard.gap == pytest.approx(0.68)
    assert record.guard.flips == record.target_groups
    # Classifier: only the Jewish variant turns negative; the spread of P(label) is 0.7.
    assert record.classifier.flips == ("jewish",)
    assert record.classifier.outcomes[0] == "positive"
    assert record.classifier.gap == pytest.approx(0.7)


def test_the_probe_never_changes_a_decision() -> None:
    texts = ["A Muslim opened a bakery.", "awful Jews", "The women met.", "nice day", "Muslims are awful"]
    off = make_guard(make_policy(enabled=False))
    on = make_guard(make_policy())
    decisions_off, records_off = run(off, texts, Classifier())
    decisions_on, records_on = run(on, texts, Classifier())

    assert records_off == [] and len(records_on) >= 3
    assert decisions_on == decisions_off
    assert [d.action for d in decisions_on] == ["flag", "block", "allow", "allow", "block"]


def test_sample_zero_draws_nothing_and_scores_nothing() -> None:
    scorer, rng, classifier = WordScorer(), Draws([]), Classifier()
    guard = make_guard(make_policy(sample=0.0), scorer=scorer, rng=rng)
    _, records = run(guard, ["A Muslim opened a bakery."] * 5, classifier)

    assert records == [] and rng.used == 0
    assert len(scorer.calls) == 1 and classifier.calls == []  # the screen only
    status = guard.status().counterfactual
    assert status is not None and not status.enabled and status.kinds == []


def test_records_exactly_the_sampled_items_that_name_a_group() -> None:
    # sample 0.5: items 0, 2 and 3 are drawn (draw < 0.5); item 3 names no group.
    rng = Draws([0.1, 0.9, 0.3, 0.2, 0.7])
    texts = ["A Muslim opened a bakery.", "A Jew opened a bakery.", "The women met.", "nice day", "Hindus pray."]
    guard = make_guard(make_policy(sample=0.5), rng=rng)
    _, records = run(guard, texts)

    assert rng.used == len(texts)  # one draw per item
    assert [(r.item, r.kind) for r in records] == [(0, "religion"), (2, "gender")]
    assert guard.status().counterfactual.sampled == 3  # type: ignore[union-attr]


def test_seeded_sampling_is_reproducible() -> None:
    texts = ["A Muslim opened a bakery.", "The women met."] * 20
    first = [(r.item, r.kind) for r in run(make_guard(make_policy(sample=0.3), rng=random.Random(3)), texts)[1]]
    again = [(r.item, r.kind) for r in run(make_guard(make_policy(sample=0.3), rng=random.Random(3)), texts)[1]]
    assert first == again and 0 < len(first) < len(texts)


def test_cost_bound_one_call_per_model_and_never_more_rows_than_the_bound() -> None:
    scorer, classifier = WordScorer(), Classifier()
    guard = make_guard(make_policy(max_variants_per_batch=13, kinds=["religion"]), scorer=scorer)
    texts = [f"Muslims met {n} times." for n in range(10)]  # each probe needs 6 rows
    _, records = run(guard, texts, classifier)

    assert len(scorer.calls) == 2 and len(classifier.calls) == 1  # the screen, then one probe call each
    assert len(scorer.calls[1]) == 12 and len(classifier.calls[0]) == 12  # two probes fit in 13 rows
    assert [r.item for r in records] == [0, 1]
    status = guard.status().counterfactual
    assert status is not None
    religion = next(k for k in status.kinds if k.kind == "religion")
    assert (religion.items, religion.skipped) == (2, 8)


def test_rows_of_several_kinds_share_the_original_and_stay_within_the_bound() -> None:
    scorer = WordScorer()
    guard = make_guard(make_policy(max_variants_per_batch=8, kinds=["gender", "religion"]), scorer=scorer)
    # gender: the text + 3 variants (4 rows); religion needs 5 more (9 > 8): skipped.
    _, records = run(guard, ["A Muslim woman opened a bakery."])
    assert [r.kind for r in records] == ["gender"]
    assert len(scorer.calls[1]) == 4


def test_blocked_items_are_probed_on_the_guard_only() -> None:
    classifier = Classifier()
    guard = make_guard(make_policy(kinds=["religion"]))
    decisions, [record] = run(guard, ["Muslims are awful"], classifier)
    assert decisions[0].action == "block" and decisions[0].label is None
    assert record.guard is not None and record.classifier is None and classifier.calls == []


def test_metrics_and_status_show_the_gap_and_the_flips() -> None:
    registry = CollectorRegistry()
    guard = make_guard(make_policy(kinds=["religion", "gender"]), registry=registry)
    run(guard, ["A Muslim opened a bakery.", "The women met."], Classifier())

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    assert value("fairgate_counterfactual_gap_count", kind="religion", model="guard") == 1
    assert value("fairgate_counterfactual_gap_sum", kind="religion", model="guard") == pytest.approx(0.68)
    assert value("fairgate_counterfactual_gap_count", kind="gender", model="classifier") == 1
    assert value("fairgate_counterfactual_variants_total", kind="religion", model="guard") == 5
    # Swapped-in groups outside groups.allowed are counted as "other" (bounded labels).
    assert value("fairgate_counterfactual_flips_total", kind="religion", model="guard", group="jewish") == 1
    assert value("fairgate_counterfactual_flips_total", kind="religion", model="guard", group="other") == 3
    assert value("fairgate_counterfactual_flips_total", kind="religion", model="classifier", group="jewish") == 1
    assert value("fairgate_counterfactual_flips_total", kind="gender", model="guard", group="male") == 0
    assert value("fairgate_monitor_duration_seconds_count", monitor="counterfactual") == 1

    status = guard.status().counterfactual
    assert status is not None and status.enabled and status.sample == 1.0
    religion = next(k for k in status.kinds if k.kind == "religion")
    guard_side = next(m for m in religion.models if m.model == "guard")
    assert religion.items == 1 and guard_side.variants == 5 and guard_side.flips == 5
    assert guard_side.mean_gap == pytest.approx(0.68) and guard_side.flip_rate == 1.0
    assert [(g.group, g.count) for g in religion.unfavoured] == [("muslim", 1)]
    gender = next(k for k in status.kinds if k.kind == "gender")
    assert gender.unfavoured == []  # a gap under 0.05 names nobody
    assert gender.items == 1
    assert [k.kind for k in status.kinds] == ["religion", "gender"]  # the policy's kinds, in its order
    fair = next(m for m in gender.models if m.model == "guard")
    assert fair.mean_gap == 0.0 and fair.flip_rate == 0.0  # measured and equal: 0, not None


def test_figures_not_yet_computable_are_none_not_zero() -> None:
    guard = make_guard(make_policy(kinds=["age"]))
    [age] = guard.status().counterfactual.kinds  # type: ignore[union-attr]
    assert age.items == 0
    assert all(m.mean_gap is None and m.flip_rate is None for m in age.models)


def test_a_failing_probe_keeps_the_decisions_and_is_counted() -> None:
    scorer = FailingScorer()
    guard = make_guard(make_policy(), scorer=scorer)
    decisions, records = run(guard, ["A Muslim opened a bakery."])
    assert records == [] and decisions[0].action == "flag"
    status = guard.status().counterfactual
    assert status is not None and status.errors == 1


class NanClassifier(Classifier):
    """A classifier whose probabilities come back NaN (a broken session or export)."""

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(list(texts))
        return np.full((len(texts), len(self.labels)), np.nan)


def test_non_finite_classifier_probabilities_fail_the_probe_not_the_figures() -> None:
    """A NaN gap would poison the gap histogram's sum and the status's mean gap for good;
    the probe checks the classifier's rows as it checks the guard's, and counts a failure."""
    registry = CollectorRegistry()
    guard = make_guard(make_policy(kinds=["religion"]), registry=registry)
    decisions, records = run(guard, ["A Muslim opened a bakery."], NanClassifier())
    assert records == [] and decisions[0].action == "flag"
    status = guard.status().counterfactual
    assert status is not None and status.errors == 1
    religion = status.kinds[0]
    assert all(m.mean_gap is None for m in religion.models)
    gap_sum = registry.get_sample_value("fairgate_counterfactual_gap_sum", {"kind": "religion", "model": "classifier"})
    assert gap_sum is None or gap_sum == 0.0


def test_policy_errors_name_the_key_and_the_fix() -> None:
    with pytest.raises(PolicyError) as bad_sample:
        make_policy(sample=1.5)
    assert "counterfactual.sample = 1.5" in str(bad_sample.value) and "lower it" in str(bad_sample.value)

    with pytest.raises(PolicyError) as bad_key:
        make_policy(samples=0.1)
    assert "counterfactual.samples: unknown key" in str(bad_key.value)

    with pytest.raises(PolicyError) as empty:
        make_policy(kinds=[])
    assert "counterfactual.kinds: lists no kind" in str(empty.value)

    with pytest.raises(
        PolicyError, match=r"counterfactual.kinds: 'relgion' is not a kind .* use some of gender, religion"
    ):
        make_guard(make_policy(kinds=["relgion"]))

    with pytest.raises(PolicyError, match=r"'disability' has a single group .* remove it"):
        make_guard(make_policy(kinds=["disability"]))

    with pytest.raises(PolicyError, match=r"max_variants_per_batch = 4 is below the 6 rows .* raise it to at least 6"):
        make_guard(make_policy(max_variants_per_batch=4, kinds=["religion"]))


def test_default_policy_probes_a_five_percent_sample_of_every_multi_group_kind() -> None:
    section = Policy.default().counterfactual
    assert section.enabled and section.sample == 0.05 and section.max_variants_per_batch == 64
    assert section.kinds == ("gender", "religion", "ethnicity", "sexual_orientation", "age")
    assert Policy.from_mapping({}).counterfactual.sample == 0.05  # the section's defaults


def test_policy_reload_keeps_the_probe_unless_its_section_changes() -> None:
    guard = make_guard(make_policy(kinds=["religion"]))
    run(guard, ["A Muslim opened a bakery."])
    data = make_policy(kinds=["religion"]).model_dump()
    data["toxicity"]["categories"]["toxicity"]["flag"] = 0.6
    guard.apply_policy(Policy.from_mapping(data))
    assert guard.status().counterfactual.kinds[0].items == 1  # type: ignore[union-attr]

    data["counterfactual"]["sample"] = 0.5
    guard.apply_policy(Policy.from_mapping(data))
    assert guard.status().counterfactual.kinds[0].items == 0  # type: ignore[union-attr]

    data["counterfactual"]["kinds"] = ["nope"]
    with pytest.raises(PolicyError, match="counterfactual.kinds"):
        guard.apply_policy(Policy.from_mapping(data))
    assert guard.policy.counterfactual.sample == 0.5  # the refused policy changed nothing
