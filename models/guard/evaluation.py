"""Evaluate a toxicity guard: ROC AUC per category, per-identity false-positive rates.

``evaluate_guard`` backs ``fairgate evaluate --model fairgate-toxicity``: the ROC AUC of
the ``toxicity`` score against a binary label column, plus the AUC of every guard
category that has a column of its own in the file, plus the identity fairness report
(``fairness.identity_report``) when the file has a group column. The build uses the same
functions for the store metadata, so the figures in the card and the ones
``fairgate evaluate`` prints are computed one way.

Scores come from the exported ONNX model (``int8`` by default, what serving runs), not
from PyTorch: what we measure is what we serve.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fairgate.models.guard._categories import CATEGORIES, CATEGORY_ALIASES
from fairgate.models.guard._errors import GuardDataError

if TYPE_CHECKING:
    from fairgate.models.guard.fairness import IdentityReport
    from fairgate.models.pipeline import ScoringModel

__all__ = [
    "FPR_THRESHOLD",
    "LABEL_COLUMNS",
    "GuardEvaluation",
    "binary_labels",
    "category_roc_auc",
    "evaluate_guard",
    "identity_false_positive_rates",
    "roc_auc",
    "score_texts",
]

logger = logging.getLogger(__name__)

FPR_THRESHOLD = 0.5
LABEL_COLUMNS = ("label", "toxic", "toxicity")  # looked for, in order, when none is named
_TRUE = {"1", "1.0", "true", "yes"}
_FALSE = {"0", "0.0", "false", "no"}


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC, or NaN when only one class is present (it is undefined, not 0.5)."""
    from sklearn.metrics import roc_auc_score

    labels = np.asarray(labels).astype(bool)
    if labels.all() or not labels.any():
        return math.nan
    return float(roc_auc_score(labels, np.asarray(scores, dtype=np.float64)))


def category_roc_auc(
    scores: np.ndarray, targets: np.ndarray, categories: Sequence[str] = CATEGORIES
) -> dict[str, dict[str, float | int]]:
    """Per category: AUC of its score against ``targets >= 0.5``, with class counts.

    ``scores`` is ``[n, 6]`` in CATEGORIES order; ``targets`` is ``[n, len(categories)]``.
    """
    out: dict[str, dict[str, float | int]] = {}
    for j, category in enumerate(categories):
        positive = np.asarray(targets[:, j]) >= 0.5
        out[category] = {
            "roc_auc": roc_auc(positive, scores[:, CATEGORIES.index(category)]),
            "positives": int(positive.sum()),
            "negatives": int((~positive).sum()),
        }
    return out


def identity_false_positive_rates(
    toxicity: np.ndarray,
    groups: Sequence[str],
    *,
    threshold: float = FPR_THRESHOLD,
    min_samples: int = 1,
) -> dict[str, Any]:
    """FPR of ``toxicity >= threshold`` per identity group, on non-toxic sentences only.

    The caller passes only non-toxic rows. ``spread`` is worst minus best group; groups
    with fewer than ``min_samples`` sentences get FPR NaN ("insufficient samples") and are
    left out of the spread rather than counted as 0.
    """
    toxicity = np.asarray(toxicity, dtype=np.float64)
    groups = list(groups)
    per_group: dict[str, dict[str, float | int]] = {}
    for group in sorted(set(groups)):
        member = np.asarray([g == group for g in groups])
        count = int(member.sum())
        flagged = int((toxicity[member] >= threshold).sum())
        enough = count >= min_samples and count > 0
        fpr = flagged / count if enough else math.nan
        mean = float(toxicity[member].mean()) if enough else math.nan
        per_group[group] = {
            "count": count,
            "false_positives": flagged,
            "fpr": fpr,
            "mean_score": mean,
        }
    measured = {g: v["fpr"] for g, v in per_group.items() if not math.isnan(v["fpr"])}
    best = min(measured, key=measured.get) if measured else None  # type: ignore[arg-type]
    worst = max(measured, key=measured.get) if measured else None  # type: ignore[arg-type]
    means = [v["mean_score"] for v in per_group.values() if not math.isnan(v["mean_score"])]
    total = len(toxicity)
    return {
        "threshold": threshold,
        "sentences": total,
        "overall_fpr": float((toxicity >= threshold).mean()) if total else math.nan,
        "per_group": per_group,
        "best_group": best,
        "worst_group": worst,
        "spread": (measured[worst] - measured[best]) if measured else math.nan,
        # A finer signal than the FPR when few sentences cross the threshold.
        "mean_score_spread": (max(means) - min(means)) if means else math.nan,
    }


def score_texts(model: ScoringModel, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
    """Sigmoid scores ``[n, 6]`` from an ``OnnxTextModel`` in batches, checking its labels."""
    if tuple(model.labels) != CATEGORIES or model.task != "multi_label_classification":
        raise GuardDataError(
            f"model at {getattr(model, 'path', '?')} is a {model.task} model over "
            f"{list(model.labels)}, not a guard over {list(CATEGORIES)}; "
            "evaluate a fairgate-toxicity model"
        )
    parts = [
        np.asarray(model.predict_proba(list(texts[i : i + batch_size])), dtype=np.float32)
        for i in range(0, len(texts), batch_size)
    ]
    return np.concatenate(parts) if parts else np.zeros((0, len(CATEGORIES)), np.float32)


def binary_labels(
    values: Sequence[Any], *, column: str, positive_label: str | None = None, source: str = ""
) -> np.ndarray:
    """A binary label column: 0/1, true/false, or positive where ``positive_label`` matches.

    ``positive_label`` may list several values (``0,1``: Davidson's hate speech or
    offensive). Anything else is an error that names the values found and the fix.
    """
    text = [str(v).strip() for v in values]
    if positive_label is not None:
        wanted = {v.strip() for v in str(positive_label).split(",") if v.strip()}
        numbers = {_number(v) for v in wanted} - {None}
        out = np.asarray([v in wanted or _number(v) in numbers for v in text], dtype=bool)
        if not out.any():
            raise GuardDataError(
                f"{source}: no row of {column!r} equals --positive-label {positive_label!r} "
                f"(values present: {sorted(set(text))[:10]})"
            )
        return out
    lowered = [v.lower() for v in text]
    bad = sorted({v for v, low in zip(text, lowered, strict=True) if low not in _TRUE | _FALSE})
    if bad:
        raise GuardDataError(
            f"{source}: column {column!r} is not binary (found {bad[:10]}); pass "
            f"--positive-label VALUE (several as V1,V2) to say which values are toxic"
        )
    return np.asarray([low in _TRUE for low in lowered], dtype=bool)


def _number(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None


@dataclass(kw_only=True)
class GuardEvaluation:
    """The figures of one guard evaluation, and the scores behind them."""

    report: dict[str, Any]
    texts: list[str] = field(repr=False)
    labels: np.ndarray = field(repr=False)
    scores: np.ndarray = field(repr=False)
    identity: IdentityReport | None = field(default=None, repr=False)

    def write_scores(self, path: Path | str) -> Path:
        """One CSV row per text: row, label (0/1), ``score_<category>`` (no text: the scores
        file may be shared where the data may not)."""
        import pandas as pd

        frame = pd.DataFrame(self.scores, columns=[f"score_{c}" for c in CATEGORIES])
        frame.insert(0, "label", self.labels.astype(int))
        frame.insert(0, "row", np.arange(len(frame)))
        path = Path(path)
        frame.to_csv(path, index=False, float_format="%.6f")
        return path

    def summary(self) -> str:
        """Human-readable lines for the CLI."""
        r = self.report
        lines = [
            f"guard {r['model']} ({r['variant']}) on {r['data']}: {r['n']} texts, "
            f"{r['positives']} toxic by {r['label_column']!r}",
            f"  ROC AUC of toxicity vs {r['label_column']!r}: {_fmt(r['roc_auc'])}",
        ]
        for category, figures in r["categories"].items():
            lines.append(
                f"  ROC AUC of {category} vs column {figures['column']!r}: "
                f"{_fmt(figures['roc_auc'])} ({figures['positives']} positive)"
            )
        if self.identity is not None:
            lines += self.identity.summary_lines()
        elif "identity_report_status" in r:
            lines.append(f"  identity report: {r['identity_report_status']}")
        return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "n/a (one class only)" if value is None or math.isnan(value) else f"{value:.4f}"


def evaluate_guard(
    model_dir: Path | str,
    data: Path | str,
    *,
    label_column: str | None = None,
    positive_label: str | None = None,
    text_column: str | None = None,
    variant: str = "int8",
    model_name: str | None = None,
    max_samples: int | None = None,
    seed: int = 0,
    batch_size: int = 64,
    group_column: str | None = None,
    template_column: str | None = None,
    flag_threshold: float | None = None,
    block_threshold: float | None = None,
    min_samples: int = 5,
) -> GuardEvaluation:
    """ROC AUC of the guard's ``toxicity`` score against ``label_column`` of ``data``.

    Also the AUC of each guard category with a column in the file (named as the guard or
    Jigsaw names it, 0/1 or a fraction binarised at 0.5), other than the label column.
    ``max_samples`` keeps a seeded random sample. Runs the ONNX ``variant`` of the model.

    With a group column (``group_column``; None: ``group`` if the file has one) the
    report gains ``identity_report``: the per-group fairness figures of the toxicity
    score against the label, at the flag and block thresholds (None: the default
    policy's ``toxicity`` category), with the counterfactual gap when the file has a
    template column (``template_column``; None: ``template_id`` if present).
    ``label_column`` None takes the first of ``label``, ``toxic``, ``toxicity`` present.
    """
    import pandas as pd

    from fairgate.guardrails.onnx_model import OnnxTextModel
    from fairgate.models.guard._csv import TEXT_COLUMNS

    data = Path(data)
    try:
        frame = pd.read_csv(data, dtype=str, keep_default_na=False)
    except (OSError, pd.errors.ParserError, UnicodeDecodeError) as error:
        raise GuardDataError(f"cannot read {data} as CSV: {error}") from error
    columns = [str(c) for c in frame.columns]
    if text_column is None:
        text_column = next((c for c in TEXT_COLUMNS if c in columns), "text")
    if label_column is None:
        label_column = next((c for c in LABEL_COLUMNS if c in columns), LABEL_COLUMNS[0])
    needs = [(text_column, "--text-column"), (label_column, "--label-column")]
    needs += [(c, o) for c, o in ((group_column, "--group-column"), (template_column, "--template-column")) if c]
    group_column = group_column or ("group" if "group" in columns else None)
    template_column = template_column or ("template_id" if "template_id" in columns else None)
    for needed, option in needs:
        if needed not in columns:
            raise GuardDataError(
                f"{data}: column {needed!r} not found (columns: {', '.join(columns)}); "
                f"choose it with {option}"
            )
    frame = frame[frame[text_column].str.strip() != ""]
    if max_samples is not None and len(frame) > max_samples:
        frame = frame.sample(n=max_samples, random_state=seed).sort_index()
    if frame.empty:
        raise GuardDataError(f"{data}: no rows with text in {text_column!r}")
    labels = binary_labels(
        frame[label_column].tolist(),
        column=label_column,
        positive_label=positive_label,
        source=str(data),
    )
    texts = frame[text_column].tolist()
    model = OnnxTextModel.from_directory(model_dir, variant=variant)  # type: ignore[arg-type]
    scores = score_texts(model, texts, batch_size=batch_size)

    categories: dict[str, dict[str, Any]] = {}
    for column in columns:
        category = CATEGORY_ALIASES.get(column, column)
        if category not in CATEGORIES or column == label_column:
            continue
        values = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=float)
        known = ~np.isnan(values)
        if not known.any():
            logger.warning("%s: column %r has no numeric labels; skipped", data, column)
            continue
        positive = values[known] >= 0.5
        categories[category] = {
            "column": column,
            "roc_auc": roc_auc(positive, scores[known, CATEGORIES.index(category)]),
            "positives": int(positive.sum()),
            "n": int(known.sum()),
        }
    report = {
        "model": model_name or str(model_dir),
        "variant": variant,
        "data": str(data),
        "n": len(texts),
        "label_column": label_column,
        "positive_label": positive_label,
        "positives": int(labels.sum()),
        "roc_auc": roc_auc(labels, scores[:, 0]),
        "categories": categories,
    }
    identity = None
    if group_column is None:
        report["identity_report_status"] = "not measured: no group column (name it with --group-column)"
    else:
        from fairgate.models.guard.fairness import identity_report, policy_toxicity_thresholds

        if flag_threshold is None or block_threshold is None:
            default_flag, default_block = policy_toxicity_thresholds()
            flag_threshold = default_flag if flag_threshold is None else flag_threshold
            block_threshold = default_block if block_threshold is None else block_threshold
        identity = identity_report(
            scores[:, 0],
            groups=frame[group_column].tolist(),
            templates=frame[template_column].tolist() if template_column else None,
            toxic=labels,
            flag_threshold=flag_threshold,
            block_threshold=block_threshold,
            min_samples=min_samples,
            data=str(data),
            variant=variant,
        )
        report["group_column"] = group_column
        report["template_column"] = template_column or "none"
        report["identity_report"] = identity.as_dict()
    return GuardEvaluation(report=report, texts=texts, labels=labels, scores=scores, identity=identity)
