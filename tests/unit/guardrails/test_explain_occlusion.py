"""Occlusion explanations on tiny ONNX models: contributions equal a direct computation,
offsets point into the original text, the top-k order is by contribution, and the cost is
the stated number of model calls and rows (none when there is nothing to explain)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest

from fairgate.guardrails.explain import (
    ExplanationError,
    explain_labels,
    explain_prediction,
    occlude,
)
from fairgate.guardrails.normalize import TextNormalization
from fairgate.guardrails.onnx_model import OnnxTextModel
from fairgate.guardrails.word_spans import mask_words, split_words
from tests.unit.guardrails.conftest import TOXICITY_LABELS

INSULT = TOXICITY_LABELS.index("insult")
THREAT = TOXICITY_LABELS.index("threat")
# Logit weights per category (bag of words): distinct sizes so the order is unambiguous, and
# 'world' lowers the insult logit (a word whose removal raises the score).
WEIGHTS = {
    "[CLS]": [-4.0] * 6,
    "idiot": [6.0, 0.0, 0.0, 0.0, 10.0, 0.0],
    "kill": [6.0, 4.0, 0.0, 9.0, 0.0, 0.0],
    "you": [0.5, 0.0, 0.0, 1.5, 1.0, 0.0],
    "hello": [0.0, 0.0, 0.0, 0.0, 0.5, 0.0],
    "world": [0.0, 0.0, 0.0, 0.0, -0.5, 0.0],
}


class Counting:
    """A model wrapper that counts calls and rows (the cost claims are about these)."""

    def __init__(self, model: OnnxTextModel) -> None:
        self.model = model
        self.labels = model.labels
        self.task = model.task
        self.batches: list[int] = []

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        self.batches.append(len(texts))
        return self.model.predict_proba(texts)


@pytest.fixture
def guard(model_dir_factory: Callable[..., Path]) -> OnnxTextModel:
    path = model_dir_factory(
        labels=TOXICITY_LABELS, task="multi_label_classification", weights=WEIGHTS, max_length=64
    )
    return OnnxTextModel.from_directory(path, variant="fp32")


def direct(model: OnnxTextModel, text: str, j: int) -> float:
    return float(model.predict_proba([text])[0, j])


def test_contributions_equal_a_direct_computation(guard: OnnxTextModel) -> None:
    text = "hello, you idiot world! kill"
    (result,) = explain_labels(guard, [text], ["insult", "threat"], top_k=10)
    words = split_words(text)
    for name, j in (("insult", INSULT), ("threat", THREAT)):
        label = result.label(name)
        assert label.score == pytest.approx(direct(guard, text, j), abs=1e-6)
        drops = {(w.start, w.end): direct(guard, text, j) - direct(guard, mask_words(text, [w]), j) for w in words}
        # Every word whose removal lowers the score is reported, with exactly that drop; no other word is.
        assert {(w.start, w.end) for w in label.words} == {span for span, drop in drops.items() if drop > 0}
        for word in label.words:
            assert word.contribution == pytest.approx(drops[(word.start, word.end)], abs=1e-6)
        together = mask_words(text, [w for w in words if (w.start, w.end) in {(x.start, x.end) for x in label.words}])
        assert label.masked_score == pytest.approx(direct(guard, together, j), abs=1e-6)
    assert "world" not in [w.word for w in result.label("insult").words]  # removing it raises the insult score


def test_top_k_is_ordered_by_contribution(guard: OnnxTextModel) -> None:
    (result,) = explain_labels(guard, ["hello you idiot world"], ["insult"], top_k=2)
    label = result.label("insult")
    assert [w.word for w in label.words] == ["idiot", "you"]  # hello is third: cut by top_k
    assert label.words[0].contribution > label.words[1].contribution > 0
    # Equal contributions (the same word twice) keep the text's order.
    (twice,) = explain_labels(guard, ["idiot nice idiot"], ["insult"], top_k=3)
    assert [(w.word, w.start) for w in twice.label("insult").words] == [("idiot", 0), ("idiot", 11)]


def test_saturated_score_shows_in_the_joint_masked_score(guard: OnnxTextModel) -> None:
    """Two insults: removing either barely moves the score, removing both does."""
    (result,) = explain_labels(guard, ["idiot nice idiot"], ["insult"], top_k=3)
    label = result.label("insult")
    assert all(w.contribution < 0.01 for w in label.words)
    assert label.score > 0.99 and label.masked_score < 0.05


def test_offsets_point_into_the_original_text_when_the_model_normalises(
    model_dir_factory: Callable[..., Path],
) -> None:
    path = model_dir_factory(
        labels=TOXICITY_LABELS, task="multi_label_classification", weights=WEIGHTS, max_length=64
    )
    manifest = json.loads((path / "fairgate.json").read_text())
    manifest["normalization"] = TextNormalization.social().to_manifest()
    (path / "fairgate.json").write_text(json.dumps(manifest))
    model = OnnxTextModel.from_directory(path, variant="fp32")
    # The model reads "@user you idiot !! kill" (mention, squeezed runs, hashtag -> word,
    # zero-width space removed, whitespace collapsed); the offsets are the sent text's.
    text = "RT @Dan: 😂   You ID\u200bIOT!!!!!  #kill"
    (result,) = explain_labels(model, [text], ["insult", "threat"], top_k=1)
    (insult,) = result.label("insult").words
    (threat,) = result.label("threat").words
    assert (insult.word, text[insult.start : insult.end]) == ("ID\u200bIOT", "ID\u200bIOT")
    assert (threat.word, text[threat.start : threat.end]) == ("#kill", "#kill")
    assert insult.contribution == pytest.approx(
        direct(model, text, INSULT) - direct(model, text[: insult.start] + text[insult.end :], INSULT), abs=1e-6
    )


def test_one_call_for_the_words_and_one_for_the_joint_rows(guard: OnnxTextModel) -> None:
    model = Counting(guard)
    texts = ["you idiot", "kill you now", "nice day"]
    explain_labels(model, texts, ["insult", "threat"], top_k=2)
    # Call 1: each text plus one row per word (3 + 4 + 3). Call 2: one row per distinct top
    # set of two or more words ('you idiot' has the same pair for both labels: one row).
    assert model.batches[0] == 3 + 4 + 3
    assert len(model.batches) == 2
    assert model.batches[1] <= 2 * len(texts)
    model.batches.clear()
    explain_labels(model, texts, ["insult"], top_k=1)  # one top word: its row is already scored
    assert model.batches == [10]


def test_explaining_nothing_costs_no_model_call(guard: OnnxTextModel) -> None:
    model = Counting(guard)
    assert explain_labels(model, [], ["insult"]) == []
    nothing = explain_labels(model, ["you idiot", "kill"], [])
    assert [(e.words_total, e.words_occluded, e.labels) for e in nothing] == [(2, 0, ()), (1, 0, ())]
    assert occlude(model.predict_proba, model.labels, ["you idiot", "kill"], [[], []]) == nothing
    assert model.batches == []
    # Only the texts with something to explain get rows.
    mixed = occlude(model.predict_proba, model.labels, ["you idiot", "kill you"], [["insult"], []], top_k=1)
    assert model.batches == [3]
    assert [len(e.labels) for e in mixed] == [1, 0]


def test_max_words_explains_the_first_words_and_says_so(guard: OnnxTextModel) -> None:
    model = Counting(guard)
    text = "hello world nice day you idiot"
    (result,) = explain_labels(model, [text], ["insult"], top_k=3, max_words=3)
    assert model.batches[0] == 1 + 3
    assert (result.words_total, result.words_occluded, result.truncated) == (6, 3, True)
    assert all(w.end <= len("hello world nice") for w in result.label("insult").words)  # never 'idiot'


def test_a_text_without_words_reports_its_score_and_no_words(guard: OnnxTextModel) -> None:
    (result,) = explain_labels(guard, ["?!"], ["insult"])
    label = result.label("insult")
    assert label.words == () and label.masked_score == label.score == pytest.approx(direct(guard, "?!", INSULT))


def test_classifier_explains_its_predicted_label_from_the_same_batch(model_dir_factory: Callable[..., Path]) -> None:
    path = model_dir_factory(
        labels=["negative", "positive"],
        task="single_label_classification",
        weights={"nice": [0.0, 2.0], "day": [0.0, 1.0], "idiot": [3.0, 0.0], "hello": [0.5, 0.0]},
        max_length=64,
    )
    model = Counting(OnnxTextModel.from_directory(path, variant="fp32"))
    texts = ["nice day hello", "hello idiot"]
    results = explain_prediction(model, texts, top_k=2)
    assert model.batches[0] == 4 + 3  # no separate call to find the prediction
    assert [r.labels[0].label for r in results] == ["positive", "negative"]
    positive = results[0].label("positive")
    assert [w.word for w in positive.words] == ["nice", "day"]
    p = model.model.predict_proba
    assert positive.words[0].contribution == pytest.approx(p([texts[0]])[0, 1] - p([" day hello"])[0, 1], abs=1e-6)
    assert positive.masked_score == pytest.approx(p(["  hello"])[0, 1], abs=1e-6)


def test_explain_prediction_refuses_a_multi_label_model(guard: OnnxTextModel) -> None:
    with pytest.raises(ExplanationError, match=r"needs a single_label_classification model.*use Guard.explain"):
        explain_prediction(guard, ["you idiot"])


def test_bad_arguments_name_the_fix(guard: OnnxTextModel) -> None:
    with pytest.raises(ExplanationError, match=r"no label 'insults'; it scores toxicity, severe_toxicity"):
        explain_labels(guard, ["x"], ["insults"])
    with pytest.raises(ExplanationError, match=r"top_k=0; pass a whole number of words, at least 1"):
        explain_labels(guard, ["x"], ["insult"], top_k=0)
    with pytest.raises(ExplanationError, match=r"max_words=True"):
        explain_labels(guard, ["x"], ["insult"], max_words=True)
    with pytest.raises(ExplanationError, match=r"got 2 texts but 1 target lists"):
        occlude(guard.predict_proba, guard.labels, ["a", "b"], [["insult"]])
