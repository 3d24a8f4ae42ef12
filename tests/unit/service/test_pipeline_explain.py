"""Explanations in the guarded batch path: after the decision, only for items that ask,
with the guard's model outside the scorer deadline, and kept out of the audit's raw text."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from fairgate.guardrails import Guard, OnnxToxicityScorer, Policy
from fairgate.guardrails.onnx_model import OnnxTextModel
from fairgate.service._pipeline import GuardedClassifier
from fairgate.service.audit import AuditTrail
from fairgate.service.schemas import ClassifyResult
from tests.helpers.counting_models import CountingClassifier, CountingScorer
from tests.unit.guardrails.conftest import TOXICITY_LABELS, build_model_dir


@dataclass
class Item:
    text: str
    group: str | None = None
    explain: bool = False


@dataclass
class Models:
    pipeline: GuardedClassifier
    classifier: CountingClassifier
    screen_scorer: CountingScorer
    explain_scorer: CountingScorer


@pytest.fixture
def models(tmp_path: Path) -> Models:
    # Guard: 'idiot' an insult (toxic), 'kill' a threat (toxic and blocks). Classifier: 'nice'
    # positive, 'idiot' negative. Bag-of-words ONNX graphs (tests/unit/guardrails/conftest.py).
    guard_dir = build_model_dir(
        tmp_path / "guard",
        labels=TOXICITY_LABELS,
        task="multi_label_classification",
        weights={"[CLS]": [-4.0] * 6, "idiot": [8.0, 0.0, 0.0, 0.0, 10.0, 0.0], "kill": [8.0, 6.0, 0.0, 10.0, 0.0, 0.0]},
    )
    classifier_dir = build_model_dir(
        tmp_path / "classifier",
        labels=["negative", "positive"],
        task="single_label_classification",
        weights={"nice": [0.0, 4.0], "idiot": [5.0, 0.0], "day": [0.0, 1.0]},
    )
    policy = Policy.from_mapping(
        {
            "version": "explain-service",
            "groups": {"source": "request", "allowed": ["a", "b"]},
            "toxicity": {
                "categories": {"toxicity": {"flag": 0.5}, "insult": {"flag": 0.5}, "threat": {"flag": 0.3, "block": 0.8}}
            },
            "rates": {"enabled": False},
        }
    )
    screen_scorer = CountingScorer(OnnxToxicityScorer.from_directory(guard_dir, variant="fp32"))
    explain_scorer = CountingScorer(OnnxToxicityScorer.from_directory(guard_dir, variant="fp32"))
    classifier = CountingClassifier(OnnxTextModel.from_directory(classifier_dir, variant="fp32"))
    guard = Guard(policy=policy, scorer=screen_scorer, registry=CollectorRegistry())
    pipeline = GuardedClassifier(classifier=classifier, guard=guard, explain_scorer=explain_scorer)  # type: ignore[arg-type]
    return Models(pipeline, classifier, screen_scorer, explain_scorer)


def test_explain_off_costs_nothing(models: Models) -> None:
    results = models.pipeline.classify([Item("you idiot"), Item("nice day")])
    assert [r.explanation for r in results] == [None, None]
    assert models.screen_scorer.calls == [2]
    assert models.classifier.calls == [2]
    assert models.explain_scorer.calls == []


def test_flagged_item_names_the_abusive_word_with_offsets_and_the_classifier_label(models: Models) -> None:
    text = "hello you idiot"
    [result] = models.pipeline.classify([Item(text, explain=True)])
    assert result.action == "flag"
    explanation = result.explanation
    assert explanation is not None and explanation.error is None
    assert explanation.words_total == 3 and not explanation.truncated
    guard_labels = [label for label in explanation.labels if label.model == "guard"]
    assert {label.label for label in guard_labels} == {"toxicity", "insult"}
    for label in guard_labels:
        assert label.action == "flag"
        top = label.words[0]
        assert (top.word, text[top.start : top.end]) == ("idiot", "idiot")
        assert label.masked_score < 0.05 < label.score
    [classifier_label] = [label for label in explanation.labels if label.model == "classifier"]
    assert classifier_label.label == result.label == "negative"
    assert classifier_label.action is None
    assert classifier_label.words[0].word == "idiot"
    assert classifier_label.score == pytest.approx(result.scores["negative"], abs=1e-5)


def test_contribution_is_the_score_drop_when_the_word_is_removed(models: Models) -> None:
    [result] = models.pipeline.classify([Item("hello you idiot", explain=True)])
    assert result.explanation is not None
    insult = next(label for label in result.explanation.labels if label.label == "insult")
    direct = models.explain_scorer.inner.score(["hello you idiot", "hello you"])
    index = list(models.explain_scorer.categories).index("insult")
    assert insult.words[0].contribution == pytest.approx(float(direct[0, index] - direct[1, index]), abs=1e-5)


def test_only_asking_items_are_explained_with_the_explain_scorer_not_the_screens(models: Models) -> None:
    items = [Item("you idiot"), Item("nice day", explain=True), Item("idiot idiot", explain=True)]
    results = models.pipeline.classify(items)
    assert results[0].explanation is None
    # The screen's scorer ran once (the batch); the guard's occlusion used the explain scorer.
    assert models.screen_scorer.calls == [3]
    assert len(models.explain_scorer.calls) >= 1
    benign = results[1].explanation
    assert benign is not None and results[1].action == "allow"
    assert [label.model for label in benign.labels] == ["classifier"]  # nothing flagged: no guard rows
    assert benign.labels[0].label == "positive" and benign.labels[0].words[0].word == "nice"
    repeated = results[2].explanation
    assert repeated is not None
    offsets = {(w.start, w.end) for label in repeated.labels for w in label.words}
    assert offsets <= {(0, 5), (6, 11)}


def test_blocked_item_explains_the_guard_only_and_keeps_its_decision(models: Models) -> None:
    plain = models.pipeline.classify([Item("kill you")])[0]
    [result] = models.pipeline.classify([Item("kill you", explain=True)])
    assert (result.action, result.label, result.reasons) == (plain.action, None, plain.reasons)
    assert result.action == "block"
    assert result.explanation is not None
    assert {label.model for label in result.explanation.labels} == {"guard"}
    threat = next(label for label in result.explanation.labels if label.label == "threat")
    assert threat.action == "block" and threat.words[0].word == "kill"


def test_an_explanation_failure_keeps_the_decision_and_says_so(models: Models) -> None:
    def broken(texts: Sequence[str]) -> np.ndarray:
        raise RuntimeError("session gone")

    models.explain_scorer.inner.score = broken  # type: ignore[method-assign]
    [result] = models.pipeline.classify([Item("you idiot", explain=True)])
    assert result.action == "flag" and result.label == "negative"
    assert result.explanation is not None and result.explanation.labels == []
    assert result.explanation.error == "the explanation could not be computed: RuntimeError"


class MemoryStore:
    def __init__(self) -> None:
        self.records: list[object] = []

    def append(self, records: Sequence[object]) -> None:
        self.records.extend(records)


@pytest.mark.parametrize("store_text", [False, True])
def test_audit_keeps_offsets_and_contributions_but_words_only_with_store_text(
    models: Models, store_text: bool
) -> None:
    items = [Item("hello you idiot", explain=True)]
    results: list[ClassifyResult] = models.pipeline.classify(items)
    trail = AuditTrail(store=MemoryStore(), policy_version="v", models={}, store_text=store_text)  # type: ignore[arg-type]
    [record] = trail.records(items, results)
    assert record.explanation is not None
    words = [w for label in record.explanation["labels"] for w in label["words"]]
    assert words and all({"start", "end", "contribution"} <= set(w) for w in words)
    assert all(("word" in w) is store_text for w in words)
    assert ("idiot" in record.model_dump_json()) is store_text
