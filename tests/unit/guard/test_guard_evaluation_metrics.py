"""The guard's figures: per-identity FPR and spread, per-category AUC, binary labels."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from fairgate.models.guard import CATEGORIES, GuardDataError
from fairgate.models.guard.evaluation import (
    binary_labels,
    category_roc_auc,
    identity_false_positive_rates,
    roc_auc,
)
from fairgate.models.guard.latency import time_batches
from fairgate.models.store import json_safe


def test_identity_fpr_per_group_and_spread():
    scores = np.array([0.9, 0.1, 0.2, 0.6, 0.7, 0.1, 0.5])
    groups = ["muslim", "muslim", "jewish", "jewish", "jewish", "christian", "christian"]
    figures = identity_false_positive_rates(scores, groups)
    assert figures["per_group"]["muslim"] == {
        "count": 2, "false_positives": 1, "fpr": 0.5, "mean_score": 0.5
    }
    assert figures["per_group"]["jewish"]["fpr"] == pytest.approx(2 / 3)
    assert figures["per_group"]["christian"]["fpr"] == 0.5  # 0.5 counts: toxicity >= 0.5
    assert figures["worst_group"] == "jewish" and figures["best_group"] in {"muslim", "christian"}
    assert figures["spread"] == pytest.approx(2 / 3 - 0.5)
    assert figures["overall_fpr"] == pytest.approx(4 / 7)
    assert figures["mean_score_spread"] == pytest.approx(0.5 - 0.3)  # muslim and jewish 0.5, christian 0.3


def test_small_groups_are_insufficient_not_zero():
    figures = identity_false_positive_rates(
        np.array([0.1, 0.2, 0.9]), ["a", "a", "b"], min_samples=2
    )
    assert math.isnan(figures["per_group"]["b"]["fpr"])
    assert figures["best_group"] == figures["worst_group"] == "a"
    assert figures["spread"] == 0.0


def test_auc_is_nan_for_one_class_and_exact_otherwise():
    assert math.isnan(roc_auc(np.array([0, 0]), np.array([0.1, 0.2])))
    assert roc_auc(np.array([0, 1, 0, 1]), np.array([0.1, 0.9, 0.2, 0.3])) == 1.0
    scores = np.zeros((4, 6))
    scores[:, 3] = [0.9, 0.1, 0.8, 0.2]  # threat column
    out = category_roc_auc(scores, np.array([[1], [0], [0], [1]]), ["threat"])
    assert out["threat"] == {"roc_auc": 0.75, "positives": 2, "negatives": 2}


def test_binary_labels_forms_and_errors():
    assert binary_labels(["1", "0", "True", "false"], column="y").tolist() == [True, False, True, False]
    assert binary_labels(["0", "1", "2"], column="class", positive_label="0,1").tolist() == [True, True, False]
    assert binary_labels(["0.0", "2.0"], column="class", positive_label="0").tolist() == [True, False]
    with pytest.raises(GuardDataError, match=r"column 'class' is not binary \(found \['2'\]\).*--positive-label"):
        binary_labels(["0", "1", "2"], column="class")
    with pytest.raises(GuardDataError, match="no row of 'y' equals --positive-label 'toxic'"):
        binary_labels(["a", "b"], column="y", positive_label="toxic")


def test_store_metadata_keeps_nan_visible_and_drops_none():
    raw = {"auc": float("nan"), "unset": None, "list": [1.0, None, np.float32(0.5)], "n": np.int64(3)}
    assert json_safe(raw, drop_none=True) == {"auc": "NaN", "list": [1.0, "n/a", 0.5], "n": 3}
    # --json output: the same NaN rule; null is valid JSON, so unset entries stay.
    assert json_safe(raw) == {"auc": "NaN", "unset": None, "list": [1.0, None, 0.5], "n": 3}


def test_time_batches_uses_full_batches_after_warmup():
    calls: list[int] = []

    def run(batch: list[str]) -> None:
        calls.append(len(batch))
        time.sleep(0.004)  # a floor, not a ceiling: the timing can only be longer

    result = time_batches(run, [str(i) for i in range(100)], batch_size=32)
    assert calls == [32, 32, 32]  # 3 full batches; the last 4 texts are dropped
    assert result["batches"] == 1 and result["ms_per_text_median"] >= 4.0 / 32


def test_categories_are_the_contract_order():
    assert CATEGORIES == ("toxicity", "severe_toxicity", "obscene", "threat", "insult", "identity_attack")
