"""The guarded batch path: screen -> one classifier run on what passed -> review, in order."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from fairgate.guardrails.guard import Guard
from fairgate.guardrails.normalize import TextNormalization
from fairgate.guardrails.onnx_model import Encoding
from fairgate.guardrails.policy import TOXICITY_CATEGORIES, Policy
from fairgate.service._pipeline import GuardedClassifier, ModelFailure, can_share_encoding

PAD = 0


class FakeModel:
    """Stands in for OnnxTextModel: ids encode the text's sentiment word, runs are recorded."""

    def __init__(
        self,
        *,
        fingerprint: str = "tok-A",
        max_length: int = 16,
        fail: bool = False,
        normalization: TextNormalization | None = None,
    ) -> None:
        self.labels = ("negative", "positive")
        self.task = "single_label_classification"
        self.tokenizer_fingerprint = fingerprint
        self.max_length = max_length
        self.normalization = normalization or TextNormalization.none()
        self.encode_calls: list[list[str]] = []
        self.run_batches: list[Encoding] = []
        self.fail = fail

    def encode(self, texts: list[str]) -> Encoding:
        self.encode_calls.append(list(texts))
        rows = [[1 if "good" in t else 2] + [5] * len(t.split()) for t in texts]
        width = max(len(r) for r in rows)
        ids = np.array([r + [PAD] * (width - len(r)) for r in rows], dtype=np.int64)
        mask = (ids != PAD).astype(np.int64)
        return Encoding(ids, mask, np.zeros_like(ids), self.tokenizer_fingerprint)

    def run(self, encoding: Encoding) -> np.ndarray:
        if self.fail:
            raise RuntimeError("onnx session exploded")
        self.run_batches.append(encoding)
        return np.array([[0.0, 3.0] if row[0] == 1 else [3.0, 0.0] for row in encoding.input_ids], dtype=np.float32)

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        exp = np.exp(logits - logits.max(axis=1, keepdims=True))
        return exp / exp.sum(axis=1, keepdims=True)


@dataclass
class FakeScorer:
    """Toxic when the text says 'hate'; remembers the encoding it was handed."""

    tokenizer_fingerprint: str = "tok-A"

    def __post_init__(self) -> None:
        self.encodings: list[Encoding | None] = []

    @property
    def categories(self) -> tuple[str, ...]:
        return TOXICITY_CATEGORIES

    def score(self, texts: list[str], *, encoding: Encoding | None = None) -> np.ndarray:
        self.encodings.append(encoding)
        out = np.full((len(texts), len(TOXICITY_CATEGORIES)), 0.01, dtype=np.float32)
        for i, text in enumerate(texts):
            if "hate" in text:
                out[i, 0] = 0.95
        return out


@dataclass
class Item:
    text: str
    group: str | None = None


def _policy() -> Policy:
    return Policy.from_mapping(
        {
            "version": "test-1",
            "groups": {"source": "request", "allowed": ["female", "male"]},
            "toxicity": {"categories": {"toxicity": {"flag": 0.5, "block": 0.9}}, "stages": ["input"]},
            "rates": {"window": {"size": 100}, "min_samples": 10},
        }
    )


def _pipeline(
    classifier: FakeModel | None = None, scorer: FakeScorer | None = None
) -> tuple[GuardedClassifier, FakeModel, FakeScorer, CollectorRegistry]:
    registry = CollectorRegistry()
    classifier = classifier or FakeModel()
    scorer = scorer or FakeScorer()
    guard = Guard(policy=_policy(), scorer=scorer, registry=registry)
    guard_model = FakeModel(fingerprint=scorer.tokenizer_fingerprint)
    pipeline = GuardedClassifier(classifier=classifier, guard=guard, guard_model=guard_model)  # type: ignore[arg-type]
    return pipeline, classifier, scorer, registry


def test_blocked_item_skips_the_classifier_and_carries_no_label() -> None:
    pipeline, classifier, _, _ = _pipeline()
    items = [Item("good food", "female"), Item("i hate you all", "male"), Item("bad service here", None)]

    results = pipeline.classify(items)

    assert [r.action for r in results] == ["allow", "block", "allow"]
    assert [r.label for r in results] == ["positive", None, "negative"]
    assert results[1].scores == {}
    assert results[0].scores["positive"] > 0.9
    assert len(classifier.run_batches) == 1, "one classifier run per batch"
    assert len(classifier.run_batches[0]) == 2, "the blocked item never reaches the model"
    reason = results[1].reasons[0]
    assert (reason.monitor, reason.category, reason.action) == ("toxicity", "toxicity", "block")
    assert reason.value == pytest.approx(0.95) and reason.threshold == 0.9
    assert "0.950 >= block threshold 0.9" in reason.message
    assert [r.groups for r in results] == [["female"], ["male"], ["none"]]
    assert len({r.request_id for r in results}) == 3


def test_one_tokenizer_call_per_batch_shared_with_the_guard() -> None:
    pipeline, classifier, scorer, _ = _pipeline()
    assert pipeline.share_encoding

    pipeline.classify([Item("good"), Item("hate hate hate hate hate"), Item("fine")])

    assert len(classifier.encode_calls) == 1
    shared = scorer.encodings[0]
    assert shared is not None and len(shared) == 3
    # The classifier ran on rows 0 and 2 of the same encoding, trimmed to their width.
    ran = classifier.run_batches[0]
    assert ran.input_ids.tolist() == [[1, 5], [2, 5]]


def test_different_tokenizers_do_not_share_an_encoding() -> None:
    pipeline, classifier, scorer, _ = _pipeline(scorer=FakeScorer(tokenizer_fingerprint="tok-B"))
    assert not pipeline.share_encoding

    pipeline.classify([Item("good"), Item("bad")])

    assert scorer.encodings == [None]
    assert len(classifier.encode_calls) == 1  # the classifier's own call; the guard encodes itself


def test_same_tokenizer_but_other_truncation_is_not_shared() -> None:
    assert can_share_encoding(FakeModel(max_length=16), FakeModel(max_length=16))  # type: ignore[arg-type]
    assert not can_share_encoding(FakeModel(max_length=16), FakeModel(max_length=32))  # type: ignore[arg-type]
    assert not can_share_encoding(FakeModel(), None)  # type: ignore[arg-type]


def test_same_tokenizer_but_other_normalisation_is_not_shared() -> None:
    social = TextNormalization.social()
    assert can_share_encoding(FakeModel(normalization=social), FakeModel(normalization=social))  # type: ignore[arg-type]
    assert not can_share_encoding(FakeModel(), FakeModel(normalization=social))  # type: ignore[arg-type]

    scorer = FakeScorer()
    guard = Guard(policy=_policy(), scorer=scorer, registry=CollectorRegistry())
    pipeline = GuardedClassifier(
        classifier=FakeModel(),  # type: ignore[arg-type]
        guard=guard,
        guard_model=FakeModel(normalization=social),  # type: ignore[arg-type]
    )
    assert not pipeline.share_encoding
    pipeline.classify([Item("good"), Item("bad")])
    assert scorer.encodings == [None], "the guard tokenises its own normalised texts"


def test_classifier_failure_raises_model_failure_not_a_label() -> None:
    pipeline, _, _, registry = _pipeline(classifier=FakeModel(fail=True))

    with pytest.raises(ModelFailure, match="classifier failed on a batch of 1 items: onnx session exploded"):
        pipeline.classify([Item("good")])

    assert registry.get_sample_value("fairgate_inference_duration_seconds_count", {"model": "classifier"}) == 1
    assert registry.get_sample_value("fairgate_decisions_total", {"action": "allow", "reason": "none"}) is None


def test_metrics_count_batches_and_decisions() -> None:
    pipeline, _, _, registry = _pipeline()

    pipeline.classify([Item("good", "female"), Item("hate", "female"), Item("ok", "male")])

    assert registry.get_sample_value("fairgate_batch_size_count", {"stage": "request"}) == 1
    assert registry.get_sample_value("fairgate_batch_size_sum", {"stage": "request"}) == 3
    assert registry.get_sample_value("fairgate_batch_size_sum", {"stage": "classifier"}) == 2
    assert registry.get_sample_value("fairgate_decisions_total", {"action": "allow", "reason": "none"}) == 2
    assert (
        registry.get_sample_value("fairgate_decisions_total", {"action": "block", "reason": "toxicity_toxicity"})
        == 1
    )
    assert registry.get_sample_value("fairgate_inference_duration_seconds_count", {"model": "classifier"}) == 1


def test_all_blocked_batch_runs_no_model() -> None:
    pipeline, classifier, _, _ = _pipeline()

    results = pipeline.classify([Item("hate"), Item("hate again")])

    assert [r.action for r in results] == ["block", "block"]
    assert classifier.run_batches == []


def test_empty_batch_returns_nothing() -> None:
    pipeline, classifier, _, _ = _pipeline()
    assert pipeline.classify([]) == []
    assert classifier.encode_calls == []


def test_status_reports_the_guard_windows() -> None:
    pipeline, _, _, _ = _pipeline()
    pipeline.classify([Item("bad", "female"), Item("good", "male")])

    status = pipeline.status()

    negative = next(m for m in status.monitors if m.name == "negative")
    counts = {g.group: (g.n, g.positives) for g in negative.groups}
    assert counts["female"] == (1, 1) and counts["male"] == (1, 0)
    assert status.policy_version == "test-1"


def test_row_subset_keeps_rows_and_drops_trailing_padding() -> None:
    ids = np.array([[1, 5, 5, 5], [2, 5, 0, 0], [1, 0, 0, 0]], dtype=np.int64)
    encoding = Encoding(ids, (ids != 0).astype(np.int64), np.zeros_like(ids), "tok")

    subset = encoding.select([1, 2])

    assert subset.input_ids.tolist() == [[2, 5], [1, 0]]
    assert subset.attention_mask.tolist() == [[1, 1], [1, 0]]
    assert subset.fingerprint == "tok"


class EncodeFailsOnce(FakeModel):
    """The shared tokenisation fails once (e.g. a text the normaliser cannot handle)."""

    def __init__(self) -> None:
        super().__init__()
        self.failed = False

    def encode(self, texts: list[str]) -> Encoding:
        if not self.failed:
            self.failed = True
            raise ValueError("normaliser exploded")
        return super().encode(texts)


def test_a_failed_shared_encoding_falls_back_to_per_model_encoding_not_a_failed_batch() -> None:
    pipeline, classifier, scorer, _ = _pipeline(classifier=EncodeFailsOnce())
    assert pipeline.share_encoding

    results = pipeline.classify([Item("good food"), Item("bad service")])

    assert [r.label for r in results] == ["positive", "negative"]
    assert scorer.encodings == [None], "the guard scored on its own, without a shared encoding"
    assert len(classifier.encode_calls) == 1  # the classifier's own (second) encode
