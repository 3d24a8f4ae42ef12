"""Wrappers that count a guarded pipeline's model calls (rows per call), for tests that
bound what explanations and the counterfactual probe add to a batch."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fairgate.guardrails import OnnxToxicityScorer
from fairgate.guardrails.onnx_model import Encoding, OnnxTextModel


class CountingScorer:
    """A toxicity scorer that records the number of texts of each call."""

    def __init__(self, inner: OnnxToxicityScorer) -> None:
        self.inner = inner
        self.calls: list[int] = []

    @property
    def categories(self) -> Sequence[str]:
        return self.inner.categories

    def score(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(len(texts))
        return self.inner.score(texts)


class CountingClassifier:
    """A classifier model that records the number of rows of each run."""

    def __init__(self, inner: OnnxTextModel) -> None:
        self.inner = inner
        self.labels = inner.labels
        self.task = inner.task
        self.tokenizer_fingerprint = inner.tokenizer_fingerprint
        self.max_length = inner.max_length
        self.normalization = inner.normalization
        self.calls: list[int] = []

    def encode(self, texts: Sequence[str]) -> Encoding:
        return self.inner.encode(texts)

    def run(self, encoding: Encoding) -> np.ndarray:
        self.calls.append(len(encoding.input_ids))
        return self.inner.run(encoding)

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        return self.inner.probabilities(logits)
