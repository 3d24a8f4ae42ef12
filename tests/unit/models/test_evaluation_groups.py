"""Per-group metrics (fairlearn MetricFrame) and the deploy gate, on hand-checked numbers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fairgate.models.errors import DeployGateError
from fairgate.models.evaluation import check_deploy_gate, classification_metrics, group_metrics

LABELS = ["negative", "positive"]


def _report(min_group_size: int = 1) -> dict:
    # group a: 4 rows, predicted positive 3 times; group b: 4 rows, positive once; c: 1 row
    targets = np.asarray([1, 1, 0, 0, 1, 1, 0, 0, 1])
    predictions = np.asarray([1, 1, 1, 0, 1, 0, 0, 0, 1])
    groups = ["a"] * 4 + ["b"] * 4 + ["c"]
    return group_metrics(targets=targets, predictions=predictions, groups=groups,
                         labels=LABELS, min_group_size=min_group_size)


def test_selection_rates_fpr_fnr_and_counts_per_group() -> None:
    report = _report()
    a, b = report["groups"]["a"], report["groups"]["b"]
    assert a["count"] == 4 and a["selection_rate"] == {"negative": 0.25, "positive": 0.75}
    assert a["fpr"] == 0.5 and a["fnr"] == 0.0
    assert b["selection_rate"]["positive"] == 0.25 and b["fnr"] == 0.5 and b["fpr"] == 0.0
    assert report["positive_label"] == "positive"


def test_undefined_rates_are_nan_not_zero() -> None:
    c = _report()["groups"]["c"]  # one positive row: no negatives, so no FPR
    assert math.isnan(c["fpr"]) and c["fnr"] == 0.0


def test_parity_difference_and_ratio_skip_small_groups() -> None:
    report = _report(min_group_size=2)
    assert report["groups"]["c"]["insufficient_samples"] is True
    positive = report["parity"]["positive"]
    assert positive["difference"] == pytest.approx(0.5)
    assert positive["ratio"] == pytest.approx(1 / 3)
    assert (positive["lowest_group"], positive["highest_group"]) == ("b", "a")


def test_gate_fails_naming_group_and_figure() -> None:
    with pytest.raises(DeployGateError) as error:
        check_deploy_gate(_report(min_group_size=2), max_parity_difference=0.3)
    message = str(error.value)
    assert "group 'a' has selection rate 0.750" in message
    assert "parity difference 0.500 > --max-parity-difference 0.3" in message


def test_impact_ratio_gate_fails_and_passes() -> None:
    report = _report(min_group_size=2)
    with pytest.raises(DeployGateError, match=r"group 'b' .* impact ratio 0.333 < --min-impact-ratio 0.8"):
        check_deploy_gate(report, min_impact_ratio=0.8)
    passed = check_deploy_gate(report, max_parity_difference=0.6, min_impact_ratio=0.3)
    assert len(passed) == 4  # two labels x two checks


def test_gate_without_enough_groups_fails_rather_than_passing() -> None:
    report = group_metrics(targets=np.asarray([1, 0]), predictions=np.asarray([1, 0]),
                           groups=["a", "a"], labels=LABELS)
    with pytest.raises(DeployGateError, match="cannot be computed"):
        check_deploy_gate(report, max_parity_difference=0.1)


def test_classification_metrics() -> None:
    probs = np.asarray([[0.9, 0.1], [0.2, 0.8], [0.4, 0.6], [0.7, 0.3]])
    metrics = classification_metrics(targets=np.asarray([0, 1, 0, 1]), probs=probs, labels=LABELS)
    assert metrics["accuracy"] == 0.5
    assert metrics["roc_auc"] == pytest.approx(0.75)  # 3 of 4 positive-negative pairs ordered
    one_class = classification_metrics(targets=np.asarray([1, 1]), probs=probs[:2], labels=LABELS)
    assert math.isnan(one_class["roc_auc"])
