"""The classifier overlapped with the guard's screen (``classifier_runner``): same answers,
run beside the screen, blocked items' answers dropped, failures handled as inline."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from fairgate.guardrails.guard import Guard
from fairgate.guardrails.onnx_model import Encoding
from fairgate.service._pipeline import GuardedClassifier, ModelFailure
from tests.unit.service.test_pipeline_batch import FakeModel, FakeScorer, Item, _policy


class EmbeddingModel(FakeModel):
    """A classifier whose graph also returns pooled embeddings: row k's embedding is [ids[k, 0], k]."""

    def __init__(self, *, delay_s: float = 0.0, fail: bool = False) -> None:
        super().__init__(fail=fail)
        self.delay_s = delay_s
        self.started = threading.Event()
        self.finished = threading.Event()
        self.threads: list[str] = []

    def run_outputs(self, encoding: Encoding) -> tuple[np.ndarray, np.ndarray]:
        self.started.set()
        self.threads.append(threading.current_thread().name)
        try:
            if self.delay_s:
                time.sleep(self.delay_s)
            logits = self.run(encoding)
            rows = np.arange(len(encoding), dtype=np.float32)
            embeddings = np.stack([encoding.input_ids[:, 0].astype(np.float32), rows], axis=1)
            return logits, embeddings
        finally:
            self.finished.set()


class WaitingScorer(FakeScorer):
    """Screens only after the classifier has started (or a timeout): proves the two overlap."""

    def __init__(self, classifier_started: threading.Event) -> None:
        super().__init__()
        self.classifier_started = classifier_started
        self.saw_classifier_running: list[bool] = []

    def score(self, texts: list[str], *, encoding: Encoding | None = None) -> np.ndarray:
        self.saw_classifier_running.append(self.classifier_started.wait(timeout=5.0))
        return super().score(texts, encoding=encoding)


@pytest.fixture
def runner() -> Iterator[ThreadPoolExecutor]:
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="test-classifier")
    yield pool
    pool.shutdown(wait=True)


def _pipeline(
    classifier: FakeModel, scorer: FakeScorer, runner: ThreadPoolExecutor | None
) -> tuple[GuardedClassifier, Guard, CollectorRegistry]:
    registry = CollectorRegistry()
    guard = Guard(policy=_policy(), scorer=scorer, registry=registry)
    pipeline = GuardedClassifier(
        classifier=classifier,  # type: ignore[arg-type]
        guard=guard,
        guard_model=FakeModel(fingerprint=scorer.tokenizer_fingerprint),  # type: ignore[arg-type]
        classifier_runner=runner,
    )
    return pipeline, guard, registry


ITEMS = [Item("good food", "female"), Item("i hate you all", "male"), Item("bad service here", None)]


def test_overlapped_answers_equal_the_sequential_ones(runner: ThreadPoolExecutor) -> None:
    sequential, _, _ = _pipeline(EmbeddingModel(), FakeScorer(), None)
    overlapped, _, _ = _pipeline(EmbeddingModel(), FakeScorer(), runner)

    expected = [r.model_dump(exclude={"request_id"}) for r in sequential.classify(ITEMS)]
    got = [r.model_dump(exclude={"request_id"}) for r in overlapped.classify(ITEMS)]

    assert got == expected
    assert [r["action"] for r in got] == ["allow", "block", "allow"]
    assert [r["label"] for r in got] == ["positive", None, "negative"]
    assert got[1]["scores"] == {}


def test_the_classifier_runs_on_the_runner_thread_while_the_guard_screens(runner: ThreadPoolExecutor) -> None:
    classifier = EmbeddingModel()
    scorer = WaitingScorer(classifier.started)
    pipeline, _, _ = _pipeline(classifier, scorer, runner)

    pipeline.classify(ITEMS)

    assert scorer.saw_classifier_running == [True], "the screen ran with the classifier already started"
    assert classifier.threads and classifier.threads[0].startswith("test-classifier")


def test_a_shut_down_runner_means_the_classifier_runs_inline_not_a_failure() -> None:
    """The service closing shuts the runner down; a batch still in flight is answered inline."""
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="test-classifier")
    pool.shutdown(wait=True)
    classifier = EmbeddingModel()
    pipeline, _, _ = _pipeline(classifier, FakeScorer(), pool)

    results = pipeline.classify(ITEMS)

    assert [r.label for r in results] == ["positive", None, "negative"]
    assert classifier.threads == [threading.current_thread().name]  # inline, on the caller's thread
    assert len(classifier.run_batches) == 1 and len(classifier.run_batches[0]) == 2  # passed items only


def test_a_cancelled_overlapped_run_is_run_again_inline() -> None:
    """``shutdown(cancel_futures=True)`` may cancel the batch's queued run: it is answered inline."""
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="test-classifier")
    release = threading.Event()
    pool.submit(release.wait, 5.0)  # occupy the runner so the batch's run stays queued
    classifier = EmbeddingModel()

    class CancellingScorer(FakeScorer):
        def score(self, texts: list[str], *, encoding: Encoding | None = None) -> np.ndarray:
            pool.shutdown(wait=False, cancel_futures=True)  # the service closes mid-batch
            release.set()
            return super().score(texts, encoding=encoding)

    pipeline, _, _ = _pipeline(classifier, CancellingScorer(), pool)

    results = pipeline.classify(ITEMS)

    assert [r.label for r in results] == ["positive", None, "negative"]
    assert classifier.threads == [threading.current_thread().name]
    pool.shutdown(wait=True)


def test_without_a_runner_the_screen_comes_first_and_blocked_items_never_run() -> None:
    classifier = EmbeddingModel()
    pipeline, _, _ = _pipeline(classifier, FakeScorer(), None)

    pipeline.classify(ITEMS)

    assert len(classifier.run_batches) == 1 and len(classifier.run_batches[0]) == 2


def test_blocked_items_answers_are_dropped_and_their_embedding_rows_are_nan(
    runner: ThreadPoolExecutor, monkeypatch: pytest.MonkeyPatch
) -> None:
    classifier = EmbeddingModel()
    pipeline, guard, registry = _pipeline(classifier, FakeScorer(), runner)
    seen: list[np.ndarray] = []
    review = guard.review

    def capture(screens, labels, *, embeddings=None):  # type: ignore[no-untyped-def]
        seen.append(embeddings)
        return review(screens, labels, embeddings=embeddings)

    monkeypatch.setattr(guard, "review", capture)

    results = pipeline.classify(ITEMS)

    assert len(classifier.run_batches) == 1 and len(classifier.run_batches[0]) == 3, "the whole batch ran"
    assert results[1].label is None and results[1].scores == {} and results[1].domain_score is None
    embeddings = seen[0]
    assert embeddings.shape == (3, 2)
    assert np.isnan(embeddings[1]).all()
    # Rows 0 and 2 are the classifier's own rows 0 and 2 (not shifted by the dropped row).
    assert embeddings[0].tolist() == [1.0, 0.0] and embeddings[2].tolist() == [2.0, 2.0]
    assert registry.get_sample_value("fairgate_batch_size_sum", {"stage": "classifier"}) == 3


def test_a_classifier_failure_fails_the_batch_when_an_item_needs_it(runner: ThreadPoolExecutor) -> None:
    pipeline, _, _ = _pipeline(EmbeddingModel(fail=True), FakeScorer(), runner)

    with pytest.raises(ModelFailure, match="classifier failed on a batch of 3 items: onnx session exploded"):
        pipeline.classify(ITEMS)


def test_a_classifier_failure_on_a_wholly_blocked_batch_is_not_fatal(runner: ThreadPoolExecutor) -> None:
    pipeline, _, _ = _pipeline(EmbeddingModel(fail=True), FakeScorer(), runner)

    results = pipeline.classify([Item("hate"), Item("hate again")])

    assert [r.action for r in results] == ["block", "block"]
    assert [r.label for r in results] == [None, None]


def test_a_failing_screen_waits_for_the_classifier_before_the_lock_is_released(
    runner: ThreadPoolExecutor, monkeypatch: pytest.MonkeyPatch
) -> None:
    classifier = EmbeddingModel(delay_s=0.2)
    pipeline, guard, _ = _pipeline(classifier, FakeScorer(), runner)

    def explode(*args: object, **kwargs: object) -> None:
        classifier.started.wait(timeout=5.0)
        raise RuntimeError("screen exploded")

    monkeypatch.setattr(guard, "screen", explode)

    with pytest.raises(RuntimeError, match="screen exploded"):
        pipeline.classify(ITEMS)
    assert classifier.finished.is_set(), "the batch ended with its classifier run still in flight"
