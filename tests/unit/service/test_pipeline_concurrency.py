"""The pipeline from several threads: one lock (the guard's) makes each batch one unit."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from prometheus_client import CollectorRegistry

from fairgate.guardrails.encoding import Encoding
from fairgate.guardrails.guard import Guard
from fairgate.guardrails.normalize import TextNormalization
from fairgate.guardrails.policy import TOXICITY_CATEGORIES, Policy
from fairgate.service._pipeline import GuardedClassifier

THREADS = 8
BATCHES = 25


class WordModel:
    """'good' -> positive, anything else negative; ``hold`` pauses ``run`` until released."""

    labels = ("negative", "positive")
    tokenizer_fingerprint = "tok"
    max_length = 16
    normalization = TextNormalization.none()

    def __init__(self) -> None:
        self.hold = threading.Event()
        self.hold.set()
        self.running = threading.Event()

    def encode(self, texts: Sequence[str]) -> Encoding:
        ids = np.array([[1 if "good" in t else 2] for t in texts], dtype=np.int64)
        return Encoding(ids, np.ones_like(ids), np.zeros_like(ids), self.tokenizer_fingerprint, max_length=16)

    def run(self, encoding: Encoding) -> np.ndarray:
        self.running.set()
        assert self.hold.wait(10)
        return np.array([[0.0, 3.0] if row[0] == 1 else [3.0, 0.0] for row in encoding.input_ids])

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        exp = np.exp(logits - logits.max(axis=1, keepdims=True))
        result: np.ndarray = exp / exp.sum(axis=1, keepdims=True)
        return result


class QuietScorer:
    tokenizer_fingerprint = "tok"
    categories = TOXICITY_CATEGORIES

    def score(self, texts: Sequence[str], *, encoding: Encoding | None = None) -> np.ndarray:
        return np.full((len(texts), len(self.categories)), 0.01)


@dataclass
class Item:
    text: str
    group: str | None


BATCH = [Item("good day", "female"), Item("bad day", "female"), Item("good day", "male"), Item("bad day", "male")]


def _pipeline() -> tuple[GuardedClassifier, Guard, WordModel]:
    policy = Policy.from_mapping(
        {
            "version": "concurrency",
            "groups": {"source": "request", "allowed": ["female", "male"]},
            "toxicity": {"categories": {"toxicity": {"flag": 0.5, "block": 0.9}}},
            "rates": {"window": {"size": 1000}, "checks_per_window": 250, "min_samples": 10},
        }
    )
    guard = Guard(policy=policy, scorer=QuietScorer(), registry=CollectorRegistry())
    model = WordModel()
    return GuardedClassifier(classifier=model, guard=guard, guard_model=model), guard, model


def _counts(pipeline: GuardedClassifier) -> dict[str, tuple[int, int]]:
    negative = next(m for m in pipeline.status().monitors if m.name == "negative")
    return {g.group: (g.n, g.positives) for g in negative.groups if g.group in ("female", "male")}


def test_concurrent_batches_count_exactly_what_was_sent() -> None:
    pipeline, guard, _ = _pipeline()
    start = threading.Barrier(THREADS)
    labels: list[list[str | None]] = []

    def send() -> None:
        start.wait()
        for _ in range(BATCHES):
            labels.append([r.label for r in pipeline.classify(BATCH)])

    threads = [threading.Thread(target=send) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert labels == [["positive", "negative", "positive", "negative"]] * (THREADS * BATCHES)
    sent = THREADS * BATCHES * 2
    assert _counts(pipeline) == {"female": (sent, sent // 2), "male": (sent, sent // 2)}
    negative = next(m for m in guard.monitors if m.name == "negative")
    assert negative.checks == THREADS * BATCHES


def test_a_status_read_waits_for_the_batch_in_flight() -> None:
    pipeline, _, model = _pipeline()
    model.hold.clear()
    batch = threading.Thread(target=pipeline.classify, args=(BATCH,))
    batch.start()
    assert model.running.wait(10), "the batch reached the classifier"
    seen: list[dict[str, tuple[int, int]]] = []
    reader = threading.Thread(target=lambda: seen.append(_counts(pipeline)))
    reader.start()

    reader.join(timeout=0.2)
    assert reader.is_alive(), "the status read waits while the batch holds the guard's lock"
    model.hold.set()
    batch.join(timeout=10)
    reader.join(timeout=10)
    assert seen == [{"female": (2, 1), "male": (2, 1)}], "and then sees the whole batch"


def test_the_pipeline_batch_runs_under_the_guards_lock_not_one_of_its_own() -> None:
    pipeline, guard, model = _pipeline()
    finished = threading.Event()

    def classify() -> None:
        pipeline.classify(BATCH)
        finished.set()

    with guard.lock:
        thread = threading.Thread(target=classify)
        thread.start()
        assert not model.running.wait(0.2), "a whole batch, inference included, waits for the guard's lock"
    thread.join(timeout=10)
    assert finished.is_set() and model.running.is_set()
