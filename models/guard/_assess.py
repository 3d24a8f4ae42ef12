"""The guard's assessment of its int8 ONNX model, run by the pipeline before anything is stored.

In order: ROC AUC per category on the held-out split, the per-identity false-positive
rates, the recommended thresholds, the identity fairness report at those thresholds and
the fairness gate (which raises, and then nothing is stored), and the headline figures
where ``fairgate models`` looks for them. Each is one metadata key.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fairgate.models.errors import FairnessGateError
from fairgate.models.guard._categories import CATEGORIES
from fairgate.models.guard._errors import GuardDataError
from fairgate.models.guard._thresholds import bundled_path, recommended_thresholds

if TYPE_CHECKING:
    from fairgate.models.guard._build import GuardBuildConfig
    from fairgate.models.guard._csv import GuardDataset
    from fairgate.models.guard.fairness import IdentityReport
    from fairgate.models.pipeline import ScoringModel

__all__ = ["BUNDLED_IDENTITY_EVAL", "GuardAssessment", "measure_identity_fpr"]

logger = logging.getLogger(__name__)

BUNDLED_IDENTITY_EVAL = Path("identity_eval") / "identity_eval.csv"


@dataclass(frozen=True, kw_only=True)
class GuardAssessment:
    """The pipeline's ``assess`` step for a guard (see the module docstring)."""

    config: GuardBuildConfig
    test: GuardDataset | None
    test_name: str | None

    def __call__(self, *, int8: ScoringModel, model_dir: Path) -> dict[str, Any]:
        from fairgate.models.datasets import BUNDLED_IDENTITY

        config = self.config
        evaluation = self._per_category(int8)
        identity_fpr = measure_identity_fpr(
            int8, config.identity_data or bundled_path(BUNDLED_IDENTITY), variant="int8"
        )
        recommended = recommended_thresholds(int8, config)
        from fairgate.models.guard.fairness import policy_toxicity_thresholds, report_thresholds

        # The report judges the guard at the thresholds it will be configured with: its own
        # recommended ones, else the default policy's (the build's gate uses the same).
        categories = recommended.get("categories")
        flag, block = report_thresholds(categories) if categories else policy_toxicity_thresholds()
        report = _identity_report(int8, config, flag=flag, block=block)
        try:
            gate = _gate(report, config)
        except FairnessGateError:
            if config.rejected_out is not None:
                _keep_rejected(model_dir, config.rejected_out, report)
            raise
        return {
            "evaluation": evaluation,
            "identity_fpr": identity_fpr,
            "recommended_thresholds": recommended,
            "identity_report": (
                report.as_dict() if report is not None else {"status": "identity evaluation set not found"}
            ),
            "fairness_gate": gate,
            "metrics": _headline(evaluation, identity_fpr, report),
        }

    def _per_category(self, int8: ScoringModel) -> dict[str, Any]:
        """ROC AUC of each labelled category on the held-out split."""
        from fairgate.models.guard.evaluation import category_roc_auc, score_texts

        test = self.test
        if test is None:
            return {"status": "no evaluation data"}
        known = [c for c in CATEGORIES if c in test.known_categories]
        scores = score_texts(int8, test.texts)
        columns = [CATEGORIES.index(c) for c in known]
        per_category = category_roc_auc(scores, test.targets[:, columns], known)
        aucs = [v["roc_auc"] for v in per_category.values() if not np.isnan(v["roc_auc"])]
        return {
            "data": self.test_name,
            "n": len(test),
            "variant": "int8",
            "per_category": per_category,
            "mean_roc_auc": float(np.mean(aucs)) if aucs else float("nan"),
        }


def measure_identity_fpr(onnx_model: ScoringModel, path: Path | None, *, variant: str) -> dict[str, Any]:
    """Per-group FPR of ``toxicity >= 0.5`` on the identity set's non-toxic sentences."""
    import pandas as pd

    from fairgate.models.guard.evaluation import (
        binary_labels,
        identity_false_positive_rates,
        score_texts,
    )

    if path is None or not Path(path).is_file():
        logger.warning("identity set not found (%s); per-identity FPR not measured", path)
        return {"status": f"identity set not found ({path})"}
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    for column in ("text", "group"):
        if column not in frame.columns:
            raise GuardDataError(f"{path}: identity set needs a {column!r} column")
    if "toxic" in frame.columns:
        toxic = binary_labels(frame["toxic"].tolist(), column="toxic", source=str(path))
        frame = frame[~toxic]
    scores = score_texts(onnx_model, frame["text"].tolist())
    figures = identity_false_positive_rates(scores[:, 0], frame["group"].tolist())
    figures.update({"data": str(path), "variant": variant})
    return figures


def _identity_report(
    onnx_model: ScoringModel, config: GuardBuildConfig, *, flag: float, block: float
) -> IdentityReport | None:
    from fairgate.models.guard.fairness import measure_identity_report

    path = config.identity_eval_data or bundled_path(BUNDLED_IDENTITY_EVAL)
    if path is None or not Path(path).is_file():
        logger.warning("identity evaluation set not found (%s); no identity report", path)
        return None
    return measure_identity_report(
        onnx_model, path, flag_threshold=flag, block_threshold=block, variant="int8"
    )


def _keep_rejected(model_dir: Path, target: Path, report: IdentityReport | None) -> None:
    """Copy a refused guard's model directory and its identity report to ``target`` (not the store)."""
    import json
    import shutil

    shutil.copytree(model_dir, target, dirs_exist_ok=True)
    if report is not None:
        (target / "identity_report.json").write_text(json.dumps(report.as_dict(), indent=2), encoding="utf-8")
    logger.warning("the refused guard was written to %s (not stored)", target)


def _gate(report: IdentityReport | None, config: GuardBuildConfig) -> dict[str, Any]:
    """Raise ``FairnessGateError`` (nothing stored) unless the guard passes or the gate is off."""
    from fairgate.models.guard.fairness import check_fairness_gate

    limits = {
        "max_benign_flag_rate": config.fairness_max_flag_rate,
        "max_flag_rate_spread": config.fairness_max_spread,
    }
    if not config.fairness_gate:
        logger.warning("fairness gate skipped (--no-fairness-gate): this guard was not checked")
        return {"status": "skipped (--no-fairness-gate)", **limits}
    if report is None:
        raise FairnessGateError(
            "fairness gate: no identity evaluation set to check the guard on; pass "
            "--identity-eval-data FILE (template_id,text,group,toxic) or --no-fairness-gate"
        )
    check_fairness_gate(
        report,
        max_benign_flag_rate=config.fairness_max_flag_rate,
        max_flag_rate_spread=config.fairness_max_spread,
    )
    return {"status": "passed", **limits}


def _headline(
    evaluation: dict[str, Any], identity_fpr: dict[str, Any], report: IdentityReport | None
) -> dict[str, Any]:
    """Headline figures where ``fairgate models`` looks for them (metadata ``metrics``)."""
    per_category = evaluation.get("per_category", {})
    metrics = {
        "roc_auc": per_category.get("toxicity", {}).get("roc_auc", float("nan")),
        "mean_roc_auc": evaluation.get("mean_roc_auc", float("nan")),
        "identity_fpr_spread": identity_fpr.get("spread", float("nan")),
    }
    if report is not None:
        metrics.update({
            "identity_benign_flag_rate": report.benign_flag_rate,
            "identity_flag_rate_spread": report.flag_rate_spread,
            "identity_toxic_recall": report.toxic_recall_flag,
            "identity_counterfactual_gap": (
                report.counterfactual.mean_gap if report.counterfactual else float("nan")
            ),
        })
    return metrics
