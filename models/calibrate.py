"""Calibrate the guard's per-category thresholds on the user's own benign texts.

Behind ``fairgate calibrate``: read texts, score them with a stored guard, and give every
category a flag and a block threshold from
:func:`~fairgate.guardrails.calibration.calibrate_threshold`. The policy acts per category
but a text is blocked when *any* category blocks it, so by default (``joint``) the targets
are split over the categories (:func:`~fairgate.guardrails.calibration.split_budget`) and
the promise is about the whole guard. Serving dependencies only (no pandas, no torch): the
people who need this run it next to their traffic.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import unicodedata
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from fairgate.guardrails.calibration import (
    CalibratedThreshold,
    CalibrationError,
    calibrate_threshold,
    recall_at,
    split_budget,
)
from fairgate.guardrails.contracts import TOXICITY_CATEGORIES
from fairgate.guardrails.policy import Policy, default_policy_path
from fairgate.models.errors import DataError

__all__ = [
    "CategoryCalibration",
    "GuardCalibration",
    "calibrate_guard",
    "calibrated_policy_text",
    "read_texts",
    "texts_fingerprint",
]

def read_texts(path: str | Path, *, text_column: str = "text", option: str = "--benign") -> list[str]:
    """Texts of a ``.txt`` (one per line), ``.csv`` or ``.tsv`` (column ``text_column``) file.

    Blank texts are skipped: the guard never sees them as traffic. Raises
    :class:`~fairgate.models.errors.DataError` naming the file, the problem and the option.
    """
    file = Path(path)
    if not file.is_file():
        raise DataError(f"{option} {file}: file not found; pass an existing .txt, .csv or .tsv file")
    suffix = file.suffix.lower()
    if suffix not in {".txt", ".csv", ".tsv"}:
        raise DataError(
            f"{option} {file}: unsupported file type {suffix or '(none)'!r}; use .txt (one text per "
            "line), .csv or .tsv (with a text column)"
        )
    try:
        with file.open(encoding="utf-8-sig", newline="") as handle:
            if suffix == ".txt":
                texts = [line.rstrip("\r\n") for line in handle]
            else:
                texts = _column(handle, file=file, text_column=text_column, tsv=suffix == ".tsv", option=option)
    except UnicodeDecodeError as error:
        raise DataError(f"{option} {file}: not UTF-8 text ({error.reason}); re-save it as UTF-8") from error
    except csv.Error as error:
        raise DataError(f"{option} {file}: cannot parse as {suffix[1:].upper()} ({error})") from error
    texts = [t for t in texts if t.strip()]
    if not texts:
        raise DataError(f"{option} {file}: no texts (the file is empty or every text is blank)")
    return texts


def _column(handle: Any, *, file: Path, text_column: str, tsv: bool, option: str) -> list[str]:
    # TSV as GLUE writes it: quotes are literal text, not field delimiters.
    reader = csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE) if tsv else csv.DictReader(handle)
    columns = list(reader.fieldnames or [])
    if not columns:
        raise DataError(f"{option} {file}: the file is empty; it needs a header row with a {text_column!r} column")
    if text_column not in columns:
        raise DataError(
            f"{option} {file}: no column {text_column!r} (columns: {', '.join(columns)}); "
            "name the text column with --text-column"
        )
    return [row[text_column] or "" for row in reader]


def texts_fingerprint(texts: Sequence[str]) -> str:
    """``sha256:`` of the NFC-normalised texts in order: names the sample without keeping it."""
    digest = hashlib.sha256()
    for text in texts:
        digest.update(json.dumps(unicodedata.normalize("NFC", text), ensure_ascii=False).encode())
        digest.update(b"\n")
    return "sha256:" + digest.hexdigest()


@dataclass(frozen=True, kw_only=True)
class CategoryCalibration:
    """One category's flag and block thresholds, and their recall on toxic texts (NaN: none given)."""

    category: str
    flag: CalibratedThreshold
    block: CalibratedThreshold
    recall_flag: float
    recall_block: float


@dataclass(frozen=True, kw_only=True)
class GuardCalibration:
    """Thresholds for several categories with the targets they were held to.

    ``category_*`` are the per-category targets after the joint split (equal to the
    overall ones when ``joint`` is off). ``any_*`` are measured on the calibration texts
    for "any calibrated category fires": false rates on benign, recall on toxic.
    """

    categories: dict[str, CategoryCalibration]
    max_false_block: float
    max_false_flag: float
    confidence: float
    joint: bool
    category_false_block: float
    category_false_flag: float
    category_confidence: float
    n_benign: int
    n_toxic: int
    any_false_flag: float
    any_false_block: float
    any_recall_flag: float
    any_recall_block: float

    def guarantee(self) -> str:
        """The promise in one sentence a user can check against their own traffic."""
        level = f"{self.confidence:g}"
        names = ", ".join(self.categories)
        if self.joint:
            scope = (
                f"any of the {len(self.categories)} calibrated categories ({names}); each category was held to "
                f"{self.category_false_block:.3g} (block) and {self.category_false_flag:.3g} (flag) at "
                f"{self.category_confidence:.4g} confidence (Bonferroni split of the rate and of the 1 - confidence)"
            )
        else:
            scope = (
                f"each category separately ({names}); NOT for the whole guard: with --no-joint, several "
                "categories may add up"
            )
        return (
            f"With {level} confidence, on texts drawn like the {self.n_benign} benign ones, the guard blocks at "
            f"most {self.max_false_block:g} of them; and, with {level} confidence, it flags or blocks at most "
            f"{self.max_false_flag:g}. Scope: {scope}."
        )

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["guarantee"] = self.guarantee()
        return out


def calibrate_guard(
    benign_scores: np.ndarray,
    *,
    categories: Sequence[str],
    max_false_block: float,
    max_false_flag: float,
    confidence: float,
    joint: bool = True,
    toxic_scores: np.ndarray | None = None,
    score_categories: Sequence[str] = TOXICITY_CATEGORIES,
) -> GuardCalibration:
    """Flag and block thresholds per category from ``[n, len(score_categories)]`` benign scores.

    ``max_false_flag`` bounds "flagged or blocked" (``score >= flag``), so it must be at
    least ``max_false_block``; then every flag threshold is at most its block threshold, as
    the policy requires. A threshold above 1 (the k-th highest benign score is already 1.0)
    cannot be written into a policy and raises :class:`CalibrationError`.
    """
    if not categories:
        raise CalibrationError("no categories to calibrate; pass e.g. --categories toxicity,threat")
    unknown = [c for c in categories if c not in score_categories]
    if unknown:
        raise CalibrationError(
            f"unknown categories {', '.join(unknown)}; use some of {', '.join(score_categories)}"
        )
    if max_false_flag < max_false_block:
        raise CalibrationError(
            f"--max-false-flag {max_false_flag:g} is below --max-false-block {max_false_block:g}; a blocked text "
            "is also flagged, so set the flag target at least as high as the block target"
        )
    parts = len(categories) if joint else 1
    block_rate, level = split_budget(max_rate=max_false_block, confidence=confidence, parts=parts)
    flag_rate, _ = split_budget(max_rate=max_false_flag, confidence=confidence, parts=parts)
    benign = np.asarray(benign_scores, dtype=np.float64)
    toxic = None if toxic_scores is None else np.asarray(toxic_scores, dtype=np.float64)
    results: dict[str, CategoryCalibration] = {}
    for category in categories:
        column = list(score_categories).index(category)
        hint = f" (the joint split over {parts} categories asks more; --no-joint asks less)" if parts > 1 else ""
        found: dict[str, CalibratedThreshold] = {}
        for action, rate in (("block", block_rate), ("flag", flag_rate)):  # block first: it needs the most texts
            try:
                found[action] = calibrate_threshold(benign[:, column], max_rate=rate, confidence=level)
            except CalibrationError as error:
                raise CalibrationError(f"category {category}, {action} threshold: {error}{hint}") from None
        flag, block = found["flag"], found["block"]
        for action, result in (("flag", flag), ("block", block)):
            if result.threshold > 1.0:
                raise CalibrationError(
                    f"category {category}: the {result.k}-th highest benign score is already 1.0, so no {action} "
                    "threshold in [0, 1] keeps the promise; check the benign file for toxic texts, "
                    "or leave this category out of --categories"
                )
        results[category] = CategoryCalibration(
            category=category,
            flag=flag,
            block=block,
            recall_flag=recall_at(toxic[:, column], flag.threshold) if toxic is not None else math.nan,
            recall_block=recall_at(toxic[:, column], block.threshold) if toxic is not None else math.nan,
        )
    return GuardCalibration(
        categories=results,
        max_false_block=max_false_block,
        max_false_flag=max_false_flag,
        confidence=confidence,
        joint=joint,
        category_false_block=block_rate,
        category_false_flag=flag_rate,
        category_confidence=level,
        n_benign=int(benign.shape[0]),
        n_toxic=0 if toxic is None else int(toxic.shape[0]),
        any_false_flag=_any_rate(benign, results, score_categories, "flag"),
        any_false_block=_any_rate(benign, results, score_categories, "block"),
        any_recall_flag=_any_rate(toxic, results, score_categories, "flag"),
        any_recall_block=_any_rate(toxic, results, score_categories, "block"),
    )


def _any_rate(
    scores: np.ndarray | None, results: dict[str, CategoryCalibration], names: Sequence[str], action: str
) -> float:
    if scores is None or scores.shape[0] == 0:
        return math.nan
    fired = np.zeros(scores.shape[0], dtype=bool)
    for category, result in results.items():
        threshold = result.flag.threshold if action == "flag" else result.block.threshold
        fired |= scores[:, list(names).index(category)] >= threshold
    return float(fired.mean())


def calibrated_policy_text(
    calibration: GuardCalibration,
    *,
    provenance: dict[str, Any],
    base: str | Path | None = None,
    now: datetime | None = None,
) -> tuple[str, Policy]:
    """The YAML of ``base`` (or the default policy) with the calibrated thresholds, and its Policy.

    Only ``toxicity.categories`` of the calibrated categories change (other keys and
    categories stay as they were; a category that only flags in ``base`` gets no block; the comments of ``base`` are not kept); ``version`` gets
    a ``+calibrated.<date>`` suffix so the metrics show the change. The policy has no field
    for provenance (unknown keys are errors), so a comment header records it. The text is
    validated with :class:`Policy` before it is returned.
    """
    import yaml

    source = Path(base) if base is not None else default_policy_path()
    original = Policy.from_yaml(source)  # PolicyError names the file and the fix
    data = yaml.safe_load(source.read_text(encoding="utf-8")) or {}
    stamp = (now or datetime.now(UTC)).astimezone(UTC)
    thresholds = {
        name: {k: v for k, v in bounds.model_dump().items() if v is not None}
        for name, bounds in original.toxicity.categories.items()
    }
    for name, result in calibration.categories.items():
        # A category keeps the actions the base policy gives it: one that only flags there
        # (the default's toxicity, insult, obscene) gets a calibrated flag and still never
        # blocks. Blocking through fewer categories only lowers the false-block rate.
        flag_only = name in thresholds and "block" not in thresholds[name]
        thresholds[name] = {"flag": result.flag.threshold}
        if not flag_only:
            thresholds[name]["block"] = result.block.threshold
    toxicity = dict(data.get("toxicity") or {})
    toxicity["categories"] = thresholds
    data["toxicity"] = toxicity
    data["version"] = f"{original.version}+calibrated.{stamp:%Y%m%dT%H%M%SZ}"
    body = yaml.safe_dump(data, sort_keys=False, allow_unicode=True, default_flow_style=None, width=100)
    text = _header(calibration, provenance=provenance, source=source, stamp=stamp) + body
    policy = Policy.from_mapping(yaml.safe_load(text), source="calibrated policy")
    return text, policy


def _header(calibration: GuardCalibration, *, provenance: dict[str, Any], source: Path, stamp: datetime) -> str:
    c = calibration
    lines = [
        f"Calibrated by `fairgate calibrate` on {stamp:%Y-%m-%dT%H:%M:%SZ}, starting from {source}.",
        *(f"{key}: {value}" for key, value in provenance.items()),
        f"targets: false-block <= {c.max_false_block:g}, false-flag <= {c.max_false_flag:g}, "
        f"confidence {c.confidence:g}, joint={str(c.joint).lower()} (per category: block "
        f"{c.category_false_block:.6g}, flag {c.category_false_flag:.6g}, confidence {c.category_confidence:.6g})",
        "method: " + next(iter(c.categories.values())).block.method,
    ]
    for name, result in c.categories.items():
        lines.append(
            f"  {name}: flag {result.flag.threshold:.6f} (k={result.flag.k} of n={result.flag.n}), "
            f"block {result.block.threshold:.6f} (k={result.block.k} of n={result.block.n})"
        )
    lines.append("Guarantee: " + c.guarantee())
    lines.append("Recalibrate when the traffic or the guard model changes.")
    wrapped: list[str] = []
    for line in lines:
        wrapped.extend(_wrap(line))
    return "".join(f"# {line}\n" for line in wrapped) + "\n"


def _wrap(line: str, width: int = 98) -> list[str]:
    import textwrap

    return textwrap.wrap(line, width=width, subsequent_indent="    ", break_on_hyphens=False) or [""]
