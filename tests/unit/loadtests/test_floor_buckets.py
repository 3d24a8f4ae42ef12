"""The floor's length buckets and its arithmetic, on fake models (no ONNX)."""

from __future__ import annotations

import numpy as np
import pytest

from fairgate.guardrails.normalize import TextNormalization
from fairgate.guardrails.onnx_model import Encoding
from loadtests._floor import length_buckets, measure_floor, run_pair


def fake_encoding(lengths: list[int]) -> Encoding:
    """One token per word, right-padded like the real tokenizer."""
    width = max(lengths)
    mask = np.array([[1] * n + [0] * (width - n) for n in lengths], dtype=np.int64)
    return Encoding(input_ids=mask * 7, attention_mask=mask, token_type_ids=np.zeros_like(mask), fingerprint="f")


class FakeModel:
    """Tokenises a text to one token per word and records the shapes it is run on."""

    tokenizer_fingerprint = "f"
    max_length = 128
    variant = "int8"

    def __init__(self) -> None:
        self.shapes: list[tuple[int, int]] = []
        self.normalization = TextNormalization.none()

    def encode(self, texts: list[str]) -> Encoding:
        return fake_encoding([len(t.split()) for t in texts])

    def run(self, encoding: Encoding) -> None:
        self.shapes.append(tuple(encoding.input_ids.shape))


def test_length_buckets_group_similar_lengths() -> None:
    buckets = length_buckets([9, 1, 5, 2, 8, 1], 2)
    assert [sorted(b.tolist()) for b in buckets] == [[1, 5], [2, 3], [0, 4]]


def test_bucketed_run_pads_each_sub_batch_to_its_own_longest() -> None:
    classifier, guard = FakeModel(), FakeModel()
    texts = ["a " * 30, "b", "c c", "d " * 29]
    run_pair(classifier, guard, texts, bucket_size=2)
    assert classifier.shapes == [(2, 2), (2, 30)]
    assert guard.shapes == classifier.shapes  # one tokenisation, shared


def test_plain_run_pads_the_batch_to_its_longest() -> None:
    classifier, guard = FakeModel(), FakeModel()
    run_pair(classifier, guard, ["a " * 30, "b"])
    assert classifier.shapes == [(2, 30)]


def test_measure_floor_counts_texts_over_time_with_an_injected_clock() -> None:
    ticks = iter(np.arange(0.0, 100.0, 0.5))
    result = measure_floor(
        FakeModel(),
        FakeModel(),
        ["x"] * 10,
        batch_size=4,
        duration_s=2.2,
        warmup_batches=0,
        clock=lambda: float(next(ticks)),
        cpu_clock=lambda: 0.0,
    )
    # clock reads: start 0.0, then one read per loop check: 0.5, 1.0, 1.5, 2.0 pass, 2.5 stops; end 3.0
    assert result.batches == 4 and result.texts == 16
    assert result.duration_s == pytest.approx(3.0)
    assert result.texts_per_s == pytest.approx(16 / 3.0, rel=1e-3)
    assert result.variant == "batch 4"
