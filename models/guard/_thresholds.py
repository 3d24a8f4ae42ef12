"""Recommended flag and block thresholds, calibrated on benign text the guard never saw.

Stored as metadata ``recommended_thresholds``; the identity report and the fairness gate
are measured at these thresholds, so the gate judges the guard as it will be configured.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fairgate.guardrails.contracts import is_comment_line
from fairgate.models.guard._categories import CATEGORIES
from fairgate.models.guard._errors import GuardDataError

if TYPE_CHECKING:
    from fairgate.models.guard._build import GuardBuildConfig
    from fairgate.models.pipeline import ScoringModel

__all__ = ["BUNDLED_CALIBRATION", "bundled_path", "describe_categories", "recommended_thresholds"]

logger = logging.getLogger(__name__)

# Benign text never trained on: the recommended thresholds are calibrated on it.
BUNDLED_CALIBRATION = Path("toxicity") / "calibration" / "benign_calibration.txt"

# Categories whose scores block in the default policy: any of them at or above the block
# threshold blocks, any of all six at or above the flag threshold flags. The specific harms
# block; the broad `toxicity` category (Jigsaw: "rude, disrespectful or unreasonable", the
# parent of insult and obscene) only flags, like insult and obscene: a blocking `toxicity`
# blocked every insult and every swear word the policy means to flag, and most false blocks
# of ordinary text (harsh film reviews, tweets) were `toxicity` alone (docs/guard.md,
# "What blocks").
_BLOCKING = ("severe_toxicity", "threat", "identity_attack")
# The conventional thresholds (flag, block) per category: the calibrated threshold is the
# *lowest* that keeps the guarantee, and a recommended threshold is never below these.
# Raising a threshold above the calibrated one only lowers the false-block rate, so the
# guarantee still holds for every category and for their union.
_FLOORS: dict[str, tuple[float, float | None]] = {
    "toxicity": (0.5, None),
    "severe_toxicity": (0.3, 0.6),
    "threat": (0.5, 0.8),
    "identity_attack": (0.5, 0.8),
    "insult": (0.6, None),
    "obscene": (0.7, None),
}


def bundled_path(relative: Path) -> Path | None:
    """A file shipped with fairgate, or ``None`` when this installation lacks it."""
    from fairgate.models.datasets import bundled_data_path
    from fairgate.models.errors import DataError

    try:
        return bundled_data_path(relative)
    except DataError:
        return None


def recommended_thresholds(onnx_model: ScoringModel, config: GuardBuildConfig) -> dict[str, Any]:
    """Block and flag thresholds with a stated false-block (false-flag) guarantee.

    One threshold per action, shared by the categories that take it, calibrated on the
    *maximum* of their scores per benign text: "any category blocks" is then exactly
    "max >= threshold", so the guarantee covers the union with no Bonferroni split
    (which would need about 1,750 calibration texts at 1% and 95% over four categories).
    """
    from fairgate.guardrails.calibration import CalibrationError, calibrate_threshold
    from fairgate.models.guard.evaluation import score_texts

    path = config.calibration_data or bundled_path(BUNDLED_CALIBRATION)
    if path is None or not Path(path).is_file():
        logger.warning("calibration set not found (%s); no recommended thresholds", path)
        return {"status": f"calibration set not found ({path})"}
    texts = _read_lines(Path(path))
    scores = score_texts(onnx_model, texts)
    blocking = [CATEGORIES.index(c) for c in _BLOCKING]
    try:
        block = calibrate_threshold(
            scores[:, blocking].max(axis=1),
            max_rate=config.max_false_block,
            confidence=config.calibration_confidence,
        )
        flag = calibrate_threshold(
            scores.max(axis=1), max_rate=config.max_false_flag, confidence=config.calibration_confidence
        )
    except CalibrationError as error:
        logger.warning("thresholds not calibrated: %s", error)
        return {"status": f"not calibrated: {error}"}
    block_at = _ceil3(block.threshold)
    flag_at = _ceil3(flag.threshold)
    categories: dict[str, dict[str, float]] = {}
    for category, (flag_floor, block_floor) in _FLOORS.items():
        category_flag = max(flag_at, flag_floor)
        if block_floor is None:
            categories[category] = {"flag": category_flag}
            continue
        category_block = max(block_at, block_floor)
        categories[category] = {"flag": min(category_flag, category_block), "block": category_block}
    blocked = float(np.mean(_acts(scores, categories, "block")))
    flagged = float(np.mean(_acts(scores, categories, "flag") | _acts(scores, categories, "block")))
    return {
        "method": "order-statistic bound on the max score over the acting categories",
        "guarantee": (
            f"P(false-block rate > {config.max_false_block:g}) <= {1 - config.calibration_confidence:.2g} "
            f"and P(false-flag rate > {config.max_false_flag:g}) <= {1 - config.calibration_confidence:.2g}, "
            "for benign text like the calibration set"
        ),
        "data": str(path),
        "data_fingerprint": _fingerprint(texts),
        "n": len(texts),
        "confidence": config.calibration_confidence,
        "block": {**block.__dict__, "applied": block_at, "calibration_blocked": blocked},
        "flag": {**flag.__dict__, "applied": flag_at, "calibration_flagged": flagged},
        "categories": categories,
    }


def describe_categories(categories: dict[str, dict[str, float]]) -> str:
    """The thresholds that apply, per category: ``toxicity flag 0.5; threat flag 0.5, block 0.8``."""
    parts = []
    for category, thresholds in categories.items():
        acts = ", ".join(f"{action} {thresholds[action]:g}" for action in ("flag", "block") if action in thresholds)
        parts.append(f"{category} {acts}")
    return "; ".join(parts)


def _ceil3(value: float) -> float:
    """Round up to 3 decimals: a policy-friendly threshold that is never below the bound."""
    return min(1.0, float(np.ceil(value * 1000.0) / 1000.0))


def _acts(scores: np.ndarray, categories: dict[str, dict[str, float]], action: str) -> np.ndarray:
    """Rows where any category's score reaches its ``action`` threshold."""
    hit = np.zeros(len(scores), dtype=bool)
    for category, thresholds in categories.items():
        if action in thresholds:
            hit |= scores[:, CATEGORIES.index(category)] >= thresholds[action]
    return hit


def _read_lines(path: Path) -> list[str]:
    """Texts of a calibration file: one per line (``#`` comments skipped), or a CSV's ``text``."""
    if path.suffix.lower() in (".csv", ".tsv"):
        import pandas as pd

        frame = pd.read_csv(path, sep="\t" if path.suffix.lower() == ".tsv" else ",", dtype=str)
        if "text" not in frame.columns:
            raise GuardDataError(f"{path}: a calibration CSV needs a 'text' column")
        return [t for t in frame["text"].fillna("").tolist() if t.strip()]
    lines = path.read_text(encoding="utf-8").splitlines()
    texts = (line.strip() for line in lines)
    return [text for text in texts if text and not is_comment_line(text)]


def _fingerprint(texts: list[str]) -> str:
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode("utf-8") + b"\n")
    return f"sha256:{digest.hexdigest()}"
