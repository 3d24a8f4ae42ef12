"""The train/validation/test split: deterministic by seed, disjoint, stratified."""

from __future__ import annotations

import numpy as np

from fairgate.models.datasets import LabelledData, fingerprint_records, split_data


def _data(n: int = 200, positive_share: float = 0.3) -> LabelledData:
    texts = [f"sentence {i}" for i in range(n)]
    targets = (np.arange(n) < int(n * positive_share)).astype(np.int64)
    return LabelledData(
        texts=texts, targets=targets, labels=("negative", "positive"),
        fingerprint=fingerprint_records(texts, targets),
    )


def test_same_seed_same_split_other_seed_other_split() -> None:
    data = _data()
    a, b, c = split_data(data, seed=3), split_data(data, seed=3), split_data(data, seed=4)
    assert a.train.texts == b.train.texts and a.test.texts == b.test.texts
    assert a.train.texts != c.train.texts


def test_parts_are_disjoint_and_cover_the_data() -> None:
    parts = split_data(_data(), seed=0, validation_fraction=0.1, test_fraction=0.2)
    train, val, test = (set(p.texts) for p in (parts.train, parts.validation, parts.test))
    assert not (train & val) and not (train & test) and not (val & test)
    assert len(train | val | test) == 200
    assert (len(val), len(test)) == (20, 40)


def test_split_keeps_class_proportions() -> None:
    parts = split_data(_data(positive_share=0.3), seed=0, validation_fraction=0.1, test_fraction=0.2)
    assert parts.validation.targets.sum() == 6  # 30% of 20
    assert parts.test.targets.sum() == 12  # 30% of 40


def test_zero_test_fraction_leaves_test_empty() -> None:
    parts = split_data(_data(), seed=0, test_fraction=0)
    assert len(parts.test) == 0 and len(parts.train) == 180
