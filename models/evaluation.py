"""Evaluation: headline metrics, per-group metrics with fairlearn, and the deploy gate.

Groups whose figure is undefined (no negatives for an FPR, too few samples for a rate)
report NaN with a reason, never a silent zero; JSON output turns NaN into ``null``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

# One definition of the logits -> probabilities rule, shared with the ONNX runtime.
from fairgate.guardrails.contracts import probabilities, sigmoid, softmax
from fairgate.models.errors import DeployGateError

__all__ = [
    "check_deploy_gate",
    "classification_metrics",
    "group_metrics",
    "probabilities",
    "sigmoid",
    "softmax",
]

logger = logging.getLogger(__name__)


def classification_metrics(
    *, targets: np.ndarray, probs: np.ndarray, labels: Sequence[str]
) -> dict[str, Any]:
    """Accuracy, macro-F1 and ROC AUC (one-vs-rest macro for more than two labels).

    ROC AUC is NaN when the data holds a single class: it is undefined, not 0.5.
    """
    from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

    targets = np.asarray(targets, dtype=np.int64)
    predictions = probs.argmax(axis=1)
    present = np.unique(targets)
    if len(present) < 2:
        auc = math.nan
    elif len(labels) == 2:
        auc = float(roc_auc_score(targets == 1, probs[:, 1]))
    else:
        try:
            auc = float(
                roc_auc_score(targets, probs, multi_class="ovr", average="macro", labels=list(range(len(labels))))
            )
        except ValueError:
            auc = math.nan
    return {
        "n": len(targets),
        "accuracy": float(accuracy_score(targets, predictions)),
        "macro_f1": float(
            f1_score(targets, predictions, average="macro", labels=list(range(len(labels))), zero_division=0)
        ),
        "roc_auc": auc,
    }


def _rate(mask: np.ndarray, of: np.ndarray) -> float:
    total = int(of.sum())
    return float((mask & of).sum() / total) if total else math.nan


def group_metrics(
    *,
    targets: np.ndarray,
    predictions: np.ndarray,
    groups: Sequence[str],
    labels: Sequence[str],
    positive_label: str | None = None,
    min_group_size: int = 5,
    source: str = "",
) -> dict[str, Any]:
    """Per-group metrics with fairlearn's ``MetricFrame`` and demographic parity per label.

    For each group: count, accuracy, the selection rate of every label, and FPR / FNR of
    ``positive_label`` (default: the last label) one-vs-rest. For each label: demographic
    parity difference (max - min selection rate) and ratio (min / max) across the groups
    with at least ``min_group_size`` rows; smaller groups are listed but marked.
    """
    from fairlearn.metrics import MetricFrame, count, selection_rate
    from sklearn.metrics import accuracy_score

    labels = list(labels)
    positive_label = positive_label or labels[-1]
    if positive_label not in labels:
        raise ValueError(f"positive label {positive_label!r} is not one of {labels}")
    positive = labels.index(positive_label)
    y_true = np.asarray(targets, dtype=np.int64)
    y_pred = np.asarray(predictions, dtype=np.int64)
    sensitive = np.asarray(list(groups), dtype=object)

    def fpr(t: np.ndarray, p: np.ndarray) -> float:
        return _rate(np.asarray(p) == positive, np.asarray(t) != positive)

    def fnr(t: np.ndarray, p: np.ndarray) -> float:
        return _rate(np.asarray(p) != positive, np.asarray(t) == positive)

    metrics: dict[str, Any] = {"count": count, "accuracy": accuracy_score, "fpr": fpr, "fnr": fnr}
    for index, label in enumerate(labels):
        metrics[f"selection_rate:{label}"] = _selection_rate_of(selection_rate, index)
    frame = MetricFrame(metrics=metrics, y_true=y_true, y_pred=y_pred, sensitive_features=sensitive)
    by_group = frame.by_group
    group_rows: dict[str, dict[str, Any]] = {}
    for group in sorted(by_group.index, key=str):
        row = by_group.loc[group]
        n = int(row["count"])
        group_rows[str(group)] = {
            "count": n,
            "accuracy": float(row["accuracy"]),
            "selection_rate": {label: float(row[f"selection_rate:{label}"]) for label in labels},
            "fpr": float(row["fpr"]),
            "fnr": float(row["fnr"]),
            "insufficient_samples": n < min_group_size,
        }
    eligible = [g for g, r in group_rows.items() if not r["insufficient_samples"]]
    parity: dict[str, dict[str, Any]] = {}
    for label in labels:
        rates = {g: group_rows[g]["selection_rate"][label] for g in eligible}
        if len(rates) < 2:
            parity[label] = {
                "difference": math.nan,
                "ratio": math.nan,
                "lowest_group": None,
                "highest_group": None,
                "note": f"fewer than two groups with at least {min_group_size} rows",
            }
            continue
        # Same figures as fairlearn's demographic_parity_difference/ratio for this label.
        low = min(rates, key=lambda g: (rates[g], g))
        high = max(rates, key=lambda g: (rates[g], g))
        # Every group at rate 0 is parity (ratio 1), not an undefined figure.
        ratio = rates[low] / rates[high] if rates[high] > 0 else 1.0
        parity[label] = {
            "difference": float(rates[high] - rates[low]),
            "ratio": float(ratio),
            "lowest_group": low,
            "highest_group": high,
            "lowest_rate": rates[low],
            "highest_rate": rates[high],
        }
    return {
        "source": source,
        "labels": labels,
        "positive_label": positive_label,
        "min_group_size": min_group_size,
        "groups": group_rows,
        "parity": parity,
    }


def _selection_rate_of(selection_rate: Any, index: int):
    def metric(t: np.ndarray, p: np.ndarray) -> float:
        return float(selection_rate(t, p, pos_label=index))

    return metric


def check_deploy_gate(
    per_group: dict[str, Any],
    *,
    max_parity_difference: float | None = None,
    min_impact_ratio: float | None = None,
    labels: Sequence[str] | None = None,
) -> list[str]:
    """Raise :class:`DeployGateError` when a label's parity figure breaks a bound.

    Checks every label (or ``labels``); the message names the label, the two groups and
    the figure. Returns the list of checks that passed, for the build log.
    """
    passed: list[str] = []
    failures: list[str] = []
    for label, figures in per_group.get("parity", {}).items():
        if labels is not None and label not in labels:
            continue
        low, high = figures.get("lowest_group"), figures.get("highest_group")
        difference, ratio = figures.get("difference"), figures.get("ratio")
        if max_parity_difference is not None:
            if difference is None or math.isnan(difference):
                failures.append(
                    f"label {label!r}: parity difference cannot be computed ({figures.get('note', 'no groups')})"
                )
            elif difference > max_parity_difference:
                failures.append(
                    f"label {label!r}: group {high!r} has selection rate {figures['highest_rate']:.3f} "
                    f"and group {low!r} {figures['lowest_rate']:.3f}; parity difference "
                    f"{difference:.3f} > --max-parity-difference {max_parity_difference:g}"
                )
            else:
                passed.append(f"{label}: parity difference {difference:.3f} <= {max_parity_difference:g}")
        if min_impact_ratio is not None:
            if ratio is None or math.isnan(ratio):
                failures.append(
                    f"label {label!r}: impact ratio cannot be computed ({figures.get('note', 'highest rate is 0')})"
                )
            elif ratio < min_impact_ratio:
                failures.append(
                    f"label {label!r}: group {low!r} has selection rate {figures['lowest_rate']:.3f} vs "
                    f"{figures['highest_rate']:.3f} for group {high!r}; impact ratio {ratio:.3f} < "
                    f"--min-impact-ratio {min_impact_ratio:g}"
                )
            else:
                passed.append(f"{label}: impact ratio {ratio:.3f} >= {min_impact_ratio:g}")
    if failures:
        raise DeployGateError("deploy gate failed: " + "; ".join(failures))
    return passed
