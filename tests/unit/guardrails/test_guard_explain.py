"""Guard.explain: the categories that flag or block under the policy, their actions, the cost,
and no side effects on the guard's metrics."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from fairgate.guardrails import Guard, OnnxToxicityScorer, Policy
from fairgate.guardrails.explain import ExplanationError
from fairgate.guardrails.word_spans import mask_words, split_words


class CountingScorer:
    """The ONNX guard scorer, counting calls and rows."""

    def __init__(self, inner: OnnxToxicityScorer) -> None:
        self.inner = inner
        self.batches: list[int] = []

    @property
    def categories(self) -> Sequence[str]:
        return self.inner.categories

    def score(self, texts: Sequence[str]) -> np.ndarray:
        self.batches.append(len(texts))
        return self.inner.score(texts)


def make_policy(**toxicity: Any) -> Policy:
    return Policy.from_mapping(
        {
            "version": "explain-test",
            "groups": {"source": "request", "allowed": ["a", "b"]},
            "toxicity": {
                "categories": {
                    "toxicity": {"flag": 0.5, "block": 0.9},
                    "insult": {"flag": 0.5},
                    "threat": {"flag": 0.3, "block": 0.8},
                },
                **toxicity,
            },
            "rates": {"enabled": False},
        }
    )


@pytest.fixture
def scorer(guard_model_dir: Path) -> CountingScorer:
    # guard_model_dir: 'idiot' an insult (and toxic), 'kill' a threat (and toxic); [CLS] -4.
    return CountingScorer(OnnxToxicityScorer.from_directory(guard_model_dir, variant="fp32"))


def make_guard(scorer: Any, policy: Policy | None = None) -> tuple[Guard, CollectorRegistry]:
    registry = CollectorRegistry()
    return Guard(policy=policy or make_policy(), scorer=scorer, registry=registry), registry


def test_explains_the_categories_that_flag_or_block_with_their_actions(scorer: CountingScorer) -> None:
    guard, _ = make_guard(scorer)
    texts = ["hello you idiot", "nice day", "i kill you"]
    insulting, benign, threatening = guard.explain(texts, top_k=2)
    assert {(l.label, l.action) for l in insulting.labels} == {("toxicity", "block"), ("insult", "flag")}
    assert benign.labels == ()
    assert {(l.label, l.action) for l in threatening.labels} == {("toxicity", "block"), ("threat", "block")}
    assert insulting.label("insult").words[0].word == "idiot"
    word = threatening.label("threat").words[0]
    assert (word.word, texts[2][word.start : word.end]) == ("kill", "kill")
    # One call to find what flags, one occlusion batch (the benign text adds no rows);
    # top sets of one word need no joint row.
    assert scorer.batches[0] == 3
    assert scorer.batches[1] == (1 + 3) + (1 + 3)


def test_contributions_are_the_scorers_own_drops(scorer: CountingScorer) -> None:
    guard, _ = make_guard(scorer)
    text = "you idiot, hello"
    (result,) = guard.explain([text], categories=["insult"], top_k=3)
    insult = list(scorer.categories).index("insult")
    original = scorer.inner.score([text])[0, insult]
    for word in result.label("insult").words:
        masked = scorer.inner.score([text[: word.start] + text[word.end :]])[0, insult]
        assert word.contribution == pytest.approx(float(original - masked), abs=1e-6)


def test_screens_are_reused_so_a_benign_batch_costs_nothing(scorer: CountingScorer) -> None:
    guard, _ = make_guard(scorer)
    texts = ["nice day", "hello world"]
    screens = guard.screen(texts)
    scorer.batches.clear()
    assert [e.labels for e in guard.explain(texts, screens=screens)] == [(), ()]
    assert scorer.batches == []
    flagged = guard.screen(["you idiot"])
    scorer.batches.clear()
    (result,) = guard.explain(["you idiot"], screens=flagged, top_k=1)
    assert scorer.batches == [1 + 2]  # no re-scoring of the text: only the occlusion batch
    assert {l.label: l.action for l in result.labels} == {r.category: r.action for r in flagged[0].reasons}


def test_requested_categories_are_explained_whatever_they_score(scorer: CountingScorer) -> None:
    guard, _ = make_guard(scorer)
    benign, insulting = guard.explain(["nice day", "you idiot"], categories=["insult", "obscene"])
    assert [(l.label, l.action) for l in benign.labels] == [("insult", "allow"), ("obscene", "allow")]
    assert benign.label("insult").words == ()  # no word raises a benign text's insult score
    assert insulting.label("insult").action == "flag"
    assert insulting.label("obscene").action == "allow"  # obscene has no thresholds in this policy
    scorer.batches.clear()
    assert [e.labels for e in guard.explain(["you idiot"], categories=[])] == [()]
    assert guard.explain([], categories=["insult"]) == []
    assert scorer.batches == []


def test_explain_records_no_metrics(scorer: CountingScorer) -> None:
    guard, registry = make_guard(scorer)
    guard.explain(["you idiot kill"], categories=["insult"])
    guard.explain(["you idiot kill"])
    labels = {"stage": "input", "category": "insult"}
    assert registry.get_sample_value("fairgate_toxicity_score_count", labels) is None
    assert registry.get_sample_value("fairgate_batch_size_count", {"stage": "input"}) is None
    guard.screen(["you idiot kill"])  # the control: screening is traffic, and counts
    assert registry.get_sample_value("fairgate_toxicity_score_count", labels) == 1


def test_offsets_of_repeated_words_with_punctuation(scorer: CountingScorer) -> None:
    guard, _ = make_guard(scorer)
    text = "Idiot! you... IDIOT, idiot?"
    (result,) = guard.explain([text], categories=["insult"], top_k=3)
    words = result.label("insult").words
    assert [(w.start, w.end) for w in words] == [(0, 5), (14, 19), (21, 26)]
    assert all(text[w.start : w.end].lower() == "idiot" for w in words)
    # Three insults: each alone barely matters, all three together do.
    together = mask_words(text, split_words(text)[0:1] + split_words(text)[2:4])
    assert result.label("insult").masked_score == pytest.approx(
        float(scorer.inner.score([together])[0, list(scorer.categories).index("insult")]), abs=1e-6
    )


def test_guard_without_toxicity(scorer: CountingScorer) -> None:
    off = make_policy(enabled=False)
    guard, _ = make_guard(None, off)
    assert [e.labels for e in guard.explain(["you idiot"])] == [()]
    with pytest.raises(ExplanationError, match=r"no toxicity scorer .*pass scorer= \(to this call or to Guard\)"):
        guard.explain(["you idiot"], categories=["insult"])


def test_argument_errors(scorer: CountingScorer) -> None:
    guard, _ = make_guard(scorer)
    with pytest.raises(ExplanationError, match=r"no label 'insults'; it scores toxicity"):
        guard.explain(["x"], categories=["insults"])
    with pytest.raises(ValueError, match=r"got 2 texts but 1 screens"):
        guard.explain(["a", "b"], screens=guard.screen(["a"]))


def test_another_scorer_explains_what_the_guards_own_flags(guard_model_dir: Path, scorer: CountingScorer) -> None:
    """E.g. the fp32 variant explains the int8 guard's decision: the guard decides what flags."""
    guard, _ = make_guard(scorer)
    other = CountingScorer(OnnxToxicityScorer.from_directory(guard_model_dir, variant="fp32"))
    (result,) = guard.explain(["you idiot"], scorer=other, top_k=1)
    assert {l.label for l in result.labels} == {"toxicity", "insult"}
    assert scorer.batches == [1]  # what flags: the guard's scorer
    assert other.batches == [1 + 2]  # the occlusion batch: the other scorer
