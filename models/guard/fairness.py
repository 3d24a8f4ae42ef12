"""The guard's identity fairness report and the fairness gate of ``fairgate build guard``.

A guard must not flag people for naming who they are. The report measures that on an
identity set whose templates are filled for every group (``models/data/identity_eval``):

- per group, the false-positive rate of benign rows at the policy's flag and block
  thresholds, the false-negative rate of toxic rows at the flag threshold, and the Jigsaw
  unintended-bias AUCs (Borkan et al. 2019, "Nuanced Metrics for Measuring Unintended
  Bias with Real Data for Text Classification"): Subgroup AUC (the group's rows only),
  BPSN (background positive, subgroup negative: toxic rows of other groups against the
  group's benign rows; low when the group's benign rows score like toxic ones) and BNSP
  (background negative, subgroup positive; low when the group's toxic rows score like
  benign ones);
- overall, the benign flag and block rates, toxic recall, the spread of each rate over
  groups, the worst group per figure, the generalized mean (power -5) of each bias AUC
  and Jigsaw's final metric;
- the counterfactual gap: for one template, every word but the identity phrase is the
  same, so max - min score over its groups is the bias of the identity term alone.

A figure that cannot be computed (a group without enough rows of a kind) is NaN with a
status that says so, never 0. ``IdentityReport.as_dict`` turns NaN into ``"NaN"``, as the
store metadata does (``fairgate.models.store.json_safe``), so the dict can be stored and
printed as is.

AUCs are rank-based (Mann-Whitney U, ties counted one half), computed with numpy.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fairgate.models.errors import FairnessGateError
from fairgate.models.guard._errors import GuardDataError
from fairgate.models.store import json_safe

if TYPE_CHECKING:
    from fairgate.models.pipeline import ScoringModel

__all__ = [
    "BIAS_AUCS",
    "DEFAULT_MAX_BENIGN_FLAG_RATE",
    "DEFAULT_MAX_FLAG_RATE_SPREAD",
    "DEFAULT_MIN_SAMPLES",
    "GENERALIZED_MEAN_POWER",
    "IDENTITY_EVAL",
    "CounterfactualGap",
    "GroupFigures",
    "IdentityEvalSet",
    "IdentityReport",
    "TemplateGap",
    "bundled_identity_eval_path",
    "check_fairness_gate",
    "generalized_mean",
    "identity_report",
    "measure_identity_report",
    "policy_toxicity_thresholds",
    "rank_auc",
    "read_identity_eval",
    "report_thresholds",
]

logger = logging.getLogger(__name__)

IDENTITY_EVAL = Path("identity_eval") / "identity_eval.csv"
DEFAULT_MAX_BENIGN_FLAG_RATE = 0.05
DEFAULT_MAX_FLAG_RATE_SPREAD = 0.10
DEFAULT_MIN_SAMPLES = 5
GENERALIZED_MEAN_POWER = -5.0
BIAS_AUCS: tuple[str, ...] = ("subgroup_auc", "bpsn_auc", "bnsp_auc")
_GATE_FIX = (
    "Fix: add counterfactual training data for the named group (benign sentences with the "
    "identity term swapped across groups), or recalibrate the thresholds (`fairgate calibrate`); "
    "to accept the figure knowingly, raise the limit with --fairness-max-flag-rate "
    "(or --fairness-max-spread)"
)


def rank_auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """P(a positive scores above a negative), ties counted 1/2; NaN when a side is empty.

    The Mann-Whitney U statistic over ``n_pos * n_neg``, from average ranks: the same
    number as ``sklearn.metrics.roc_auc_score`` without needing the train extra.
    """
    positive = np.asarray(positive, dtype=np.float64).ravel()
    negative = np.asarray(negative, dtype=np.float64).ravel()
    n_pos, n_neg = len(positive), len(negative)
    if n_pos == 0 or n_neg == 0:
        return math.nan
    _, inverse, counts = np.unique(
        np.concatenate([positive, negative]), return_inverse=True, return_counts=True
    )
    mean_rank = np.cumsum(counts) - (counts - 1) / 2.0  # 1-based average rank of each value
    u = mean_rank[inverse[:n_pos]].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def generalized_mean(values: Sequence[float], *, power: float = GENERALIZED_MEAN_POWER) -> float:
    """``(mean(v ** p)) ** (1 / p)`` over the finite values: Jigsaw's way to weigh the worst
    groups most (p = -5). NaN when no value is finite; 0 when one value is 0 (p < 0)."""
    finite = np.asarray([v for v in values if not math.isnan(v)], dtype=np.float64)
    if finite.size == 0:
        return math.nan
    if power < 0 and (finite <= 0).any():
        return 0.0
    return float(np.mean(finite**power) ** (1.0 / power))


@dataclass(frozen=True, kw_only=True)
class GroupFigures:
    """One group's figures; NaN where the group has too few rows of the kind needed."""

    group: str
    n_benign: int
    n_toxic: int
    benign_flagged: int
    benign_blocked: int
    toxic_missed: int
    fpr_flag: float
    fpr_block: float
    fnr_flag: float
    mean_benign_score: float
    subgroup_auc: float
    bpsn_auc: float
    bnsp_auc: float
    status: str

    @property
    def sufficient(self) -> bool:
        """True when every figure of the group could be computed."""
        return self.status == "ok"

    def as_dict(self) -> dict[str, Any]:
        """JSON- and store-safe: NaN as ``"NaN"``."""
        return {k: json_safe(getattr(self, k)) for k in _GROUP_FIELDS}


_GROUP_FIELDS = (
    "n_benign",
    "n_toxic",
    "benign_flagged",
    "benign_blocked",
    "toxic_missed",
    "fpr_flag",
    "fpr_block",
    "fnr_flag",
    "mean_benign_score",
    "subgroup_auc",
    "bpsn_auc",
    "bnsp_auc",
    "status",
)


@dataclass(frozen=True, kw_only=True)
class TemplateGap:
    """One template's counterfactual gap: the highest- and lowest-scoring groups."""

    template: str
    kind: str  # benign | toxic | mixed
    gap: float
    groups: int
    max_group: str
    max_score: float
    min_group: str
    min_score: float

    def as_dict(self) -> dict[str, Any]:
        return {k: json_safe(v) for k, v in self.__dict__.items()}


@dataclass(frozen=True, kw_only=True)
class CounterfactualGap:
    """Mean over templates of (max - min mean score over the template's groups).

    Templates with fewer than two groups have no gap and are left out.
    """

    templates: int
    benign_templates: int
    toxic_templates: int
    mean_gap: float
    mean_gap_benign: float
    mean_gap_toxic: float
    max_gap: float
    worst_templates: tuple[TemplateGap, ...]

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            k: json_safe(getattr(self, k))
            for k in (
                "templates",
                "benign_templates",
                "toxic_templates",
                "mean_gap",
                "mean_gap_benign",
                "mean_gap_toxic",
                "max_gap",
            )
        }
        out["worst_templates"] = [t.as_dict() for t in self.worst_templates]
        return out


@dataclass(frozen=True, kw_only=True)
class IdentityReport:
    """Per-group and overall fairness figures of a guard's ``toxicity`` score."""

    flag_threshold: float
    block_threshold: float
    min_samples: int
    n: int
    n_benign: int
    n_toxic: int
    benign_flag_rate: float
    benign_block_rate: float
    toxic_recall_flag: float
    overall_auc: float
    flag_rate_spread: float
    block_rate_spread: float
    fnr_spread: float
    worst: Mapping[str, tuple[str, float]]
    best: Mapping[str, tuple[str, float]]
    generalized_mean_auc: Mapping[str, float]
    final_metric: float
    groups: Mapping[str, GroupFigures]
    counterfactual: CounterfactualGap | None
    data: str | None = None
    variant: str | None = None
    notes: tuple[str, ...] = field(default=())

    @property
    def insufficient_groups(self) -> list[str]:
        """Groups with at least one figure NaN for want of rows."""
        return [g for g, figures in self.groups.items() if not figures.sufficient]

    def as_dict(self) -> dict[str, Any]:
        """The report as plain JSON (NaN as ``"NaN"``, no ``None``): the metadata's
        ``identity_report`` and ``fairgate evaluate --json``'s."""
        out: dict[str, Any] = {}
        if self.data is not None:
            out["data"] = self.data
        if self.variant is not None:
            out["variant"] = self.variant
        out.update(
            {
                "flag_threshold": self.flag_threshold,
                "block_threshold": self.block_threshold,
                "min_samples": self.min_samples,
                "n": self.n,
                "n_benign": self.n_benign,
                "n_toxic": self.n_toxic,
                "n_groups": len(self.groups),
                "benign_flag_rate": json_safe(self.benign_flag_rate),
                "benign_block_rate": json_safe(self.benign_block_rate),
                "toxic_recall_flag": json_safe(self.toxic_recall_flag),
                "overall_auc": json_safe(self.overall_auc),
                "flag_rate_spread": json_safe(self.flag_rate_spread),
                "block_rate_spread": json_safe(self.block_rate_spread),
                "fnr_spread": json_safe(self.fnr_spread),
                "worst_group": {k: {"group": g, "value": json_safe(v)} for k, (g, v) in self.worst.items()},
                "best_group": {k: {"group": g, "value": json_safe(v)} for k, (g, v) in self.best.items()},
                "generalized_mean_power": GENERALIZED_MEAN_POWER,
                "generalized_mean_auc": {k: json_safe(v) for k, v in self.generalized_mean_auc.items()},
                "final_metric": json_safe(self.final_metric),
                "insufficient_groups": self.insufficient_groups,
                "per_group": {g: figures.as_dict() for g, figures in self.groups.items()},
                "counterfactual_gap": (
                    self.counterfactual.as_dict()
                    if self.counterfactual is not None
                    else {"status": "not measured: no template column"}
                ),
                "notes": list(self.notes),
            }
        )
        return out

    def summary_lines(self) -> list[str]:
        """Human-readable lines for the CLI: the headline figures, then one line per group."""
        f = _fmt
        worst = self.worst
        lines = [
            f"identity report ({len(self.groups)} groups, {self.n_benign} benign and {self.n_toxic} "
            f"toxic rows; flag at toxicity >= {self.flag_threshold:g}, block at >= {self.block_threshold:g}):",
            f"  benign flag rate {f(self.benign_flag_rate)} (worst {_who(worst, 'fpr_flag')}), "
            f"spread {f(self.flag_rate_spread)}",
            f"  benign block rate {f(self.benign_block_rate)} (worst {_who(worst, 'fpr_block')}), "
            f"spread {f(self.block_rate_spread)}",
            f"  toxic recall at flag {f(self.toxic_recall_flag)} (worst FNR {_who(worst, 'fnr_flag')}), "
            f"FNR spread {f(self.fnr_spread)}",
            f"  AUC overall {f(self.overall_auc)}; lowest Subgroup AUC {_who(worst, 'subgroup_auc')}, "
            f"BPSN {_who(worst, 'bpsn_auc')}, BNSP {_who(worst, 'bnsp_auc')}",
            "  generalized mean (p=-5) of Subgroup/BPSN/BNSP AUC "
            + "/".join(f(self.generalized_mean_auc[k]) for k in BIAS_AUCS)
            + f"; Jigsaw final metric {f(self.final_metric)}",
        ]
        cf = self.counterfactual
        if cf is None:
            lines.append("  counterfactual gap: not measured (no template column)")
        else:
            lines.append(
                f"  counterfactual gap (max - min over groups, {cf.templates} templates): mean "
                f"{f(cf.mean_gap)} (benign {f(cf.mean_gap_benign)}, toxic {f(cf.mean_gap_toxic)}), "
                f"max {f(cf.max_gap)}"
            )
            for t in cf.worst_templates:
                lines.append(
                    f"    {t.template} ({t.kind}): gap {f(t.gap)}, {t.max_group} {f(t.max_score)} "
                    f"vs {t.min_group} {f(t.min_score)}"
                )
        lines.append(
            "  group: benign/toxic rows, FPR@flag, FPR@block, FNR@flag, Subgroup/BPSN/BNSP AUC"
        )
        for group, g in self.groups.items():
            mark = "" if g.sufficient else f" ({g.status})"
            lines.append(
                f"    {group}: {g.n_benign}/{g.n_toxic}, {f(g.fpr_flag)}, {f(g.fpr_block)}, "
                f"{f(g.fnr_flag)}, {f(g.subgroup_auc)}/{f(g.bpsn_auc)}/{f(g.bnsp_auc)}{mark}"
            )
        lines.extend(f"  note: {note}" for note in self.notes)
        return lines


def _fmt(value: float) -> str:
    return "NaN (insufficient samples)" if math.isnan(value) else f"{value:.4f}"


def _who(extremes: Mapping[str, tuple[str, float]], figure: str) -> str:
    if figure not in extremes:
        return "n/a (insufficient samples)"
    group, value = extremes[figure]
    return f"{group} {value:.4f}"


def _rate(hits: np.ndarray, n: int, min_samples: int) -> float:
    return float(hits.sum() / n) if n >= max(min_samples, 1) else math.nan


def _group_figures(
    group: str,
    member: np.ndarray,
    scores: np.ndarray,
    toxic: np.ndarray,
    *,
    flag: float,
    block: float,
    min_samples: int,
) -> GroupFigures:
    benign_rows, toxic_rows = member & ~toxic, member & toxic
    n_benign, n_toxic = int(benign_rows.sum()), int(toxic_rows.sum())
    benign, bad = scores[benign_rows], scores[toxic_rows]
    enough_benign, enough_toxic = n_benign >= min_samples, n_toxic >= min_samples
    missing = [
        f"{n} {kind} rows (< {min_samples})"
        for n, kind, enough in ((n_benign, "benign", enough_benign), (n_toxic, "toxic", enough_toxic))
        if not enough
    ]
    return GroupFigures(
        group=group,
        n_benign=n_benign,
        n_toxic=n_toxic,
        benign_flagged=int((benign >= flag).sum()),
        benign_blocked=int((benign >= block).sum()),
        toxic_missed=int((bad < flag).sum()),
        fpr_flag=_rate(benign >= flag, n_benign, min_samples),
        fpr_block=_rate(benign >= block, n_benign, min_samples),
        fnr_flag=_rate(bad < flag, n_toxic, min_samples),
        mean_benign_score=float(benign.mean()) if enough_benign and n_benign else math.nan,
        subgroup_auc=rank_auc(bad, benign) if enough_benign and enough_toxic else math.nan,
        bpsn_auc=rank_auc(scores[toxic & ~member], benign) if enough_benign else math.nan,
        bnsp_auc=rank_auc(bad, scores[~toxic & ~member]) if enough_toxic else math.nan,
        status="ok" if not missing else "insufficient samples: " + ", ".join(missing),
    )


def _extremes(
    groups: Mapping[str, GroupFigures], figure: str, *, highest: bool
) -> tuple[str, float] | None:
    measured = [(g, getattr(f, figure)) for g, f in groups.items() if not math.isnan(getattr(f, figure))]
    if not measured:
        return None
    pick = max if highest else min
    return pick(measured, key=lambda item: item[1])


def _spread(groups: Mapping[str, GroupFigures], figure: str) -> float:
    values = [getattr(f, figure) for f in groups.values() if not math.isnan(getattr(f, figure))]
    return float(max(values) - min(values)) if len(values) >= 2 else math.nan


def _counterfactual(
    scores: np.ndarray,
    groups: np.ndarray,
    templates: np.ndarray,
    toxic: np.ndarray,
    *,
    keep_worst: int,
) -> CounterfactualGap:
    gaps: list[TemplateGap] = []
    for template in sorted(set(templates.tolist())):
        rows = (templates == template) & (groups != "")
        if not rows.any():
            continue
        means = {
            g: float(scores[rows & (groups == g)].mean()) for g in sorted(set(groups[rows].tolist()))
        }
        if len(means) < 2:
            continue
        high = max(means, key=means.__getitem__)
        low = min(means, key=means.__getitem__)
        kinds = toxic[rows]
        kind = "toxic" if kinds.all() else "benign" if not kinds.any() else "mixed"
        gaps.append(
            TemplateGap(
                template=str(template),
                kind=kind,
                gap=means[high] - means[low],
                groups=len(means),
                max_group=high,
                max_score=means[high],
                min_group=low,
                min_score=means[low],
            )
        )

    def mean_of(kind: str | None) -> float:
        values = [t.gap for t in gaps if kind is None or t.kind == kind]
        return float(np.mean(values)) if values else math.nan

    return CounterfactualGap(
        templates=len(gaps),
        benign_templates=sum(t.kind == "benign" for t in gaps),
        toxic_templates=sum(t.kind == "toxic" for t in gaps),
        mean_gap=mean_of(None),
        mean_gap_benign=mean_of("benign"),
        mean_gap_toxic=mean_of("toxic"),
        max_gap=max((t.gap for t in gaps), default=math.nan),
        worst_templates=tuple(sorted(gaps, key=lambda t: (-t.gap, t.template))[:keep_worst]),
    )


def identity_report(
    scores: Sequence[float] | np.ndarray,
    *,
    groups: Sequence[str],
    templates: Sequence[str] | None,
    toxic: Sequence[bool] | np.ndarray,
    flag_threshold: float,
    block_threshold: float,
    min_samples: int = DEFAULT_MIN_SAMPLES,
    worst_templates: int = 5,
    data: str | None = None,
    variant: str | None = None,
) -> IdentityReport:
    """The identity fairness report of one ``toxicity`` score per row.

    ``groups`` names each row's group; an empty name means "no group": the row counts
    overall and as background for BPSN/BNSP, but in no group. A group's benign figures
    need ``min_samples`` benign rows and its toxic figures ``min_samples`` toxic rows,
    else they are NaN and the group's ``status`` says which rows are missing.
    ``templates`` (None: no counterfactual gap) groups the rows filled from one template.
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 1:
        raise GuardDataError(
            f"identity_report takes one toxicity score per row, got an array of shape "
            f"{scores.shape}; pass the toxicity column (scores[:, 0])"
        )
    toxic = np.asarray(toxic, dtype=bool)
    names = np.asarray([str(g).strip() for g in groups], dtype=object)
    lengths = {"scores": len(scores), "groups": len(names), "toxic": len(toxic)}
    if templates is not None:
        lengths["templates"] = len(templates)
    if len(set(lengths.values())) != 1:
        raise GuardDataError(f"identity_report needs one value per row in each input; got lengths {lengths}")
    if np.isnan(scores).any():
        raise GuardDataError(f"{int(np.isnan(scores).sum())} toxicity scores are NaN; score every row")
    if not 0.0 <= flag_threshold <= block_threshold <= 1.0:
        raise GuardDataError(
            f"thresholds flag {flag_threshold} and block {block_threshold} must satisfy "
            "0 <= flag <= block <= 1; take them from the policy's toxicity category"
        )
    if min_samples < 1:
        raise GuardDataError(f"min_samples is {min_samples}; use 1 or more")

    per_group = {
        group: _group_figures(
            group,
            names == group,
            scores,
            toxic,
            flag=flag_threshold,
            block=block_threshold,
            min_samples=min_samples,
        )
        for group in sorted(set(names.tolist()) - {""})
    }
    benign, bad = scores[~toxic], scores[toxic]
    worst: dict[str, tuple[str, float]] = {}
    best: dict[str, tuple[str, float]] = {}
    for figure, higher_is_worse in (
        ("fpr_flag", True),
        ("fpr_block", True),
        ("fnr_flag", True),
        ("mean_benign_score", True),
        ("subgroup_auc", False),
        ("bpsn_auc", False),
        ("bnsp_auc", False),
    ):
        if (w := _extremes(per_group, figure, highest=higher_is_worse)) is not None:
            worst[figure] = w
        if (b := _extremes(per_group, figure, highest=not higher_is_worse)) is not None:
            best[figure] = b
    overall_auc = rank_auc(bad, benign)
    means = {k: generalized_mean([getattr(f, k) for f in per_group.values()]) for k in BIAS_AUCS}
    notes = []
    if templates is None:
        notes.append("no template column: counterfactual gap not measured")
    return IdentityReport(
        flag_threshold=float(flag_threshold),
        block_threshold=float(block_threshold),
        min_samples=min_samples,
        n=len(scores),
        n_benign=len(benign),
        n_toxic=len(bad),
        benign_flag_rate=_rate(benign >= flag_threshold, len(benign), 1),
        benign_block_rate=_rate(benign >= block_threshold, len(benign), 1),
        toxic_recall_flag=_rate(bad >= flag_threshold, len(bad), 1),
        overall_auc=overall_auc,
        flag_rate_spread=_spread(per_group, "fpr_flag"),
        block_rate_spread=_spread(per_group, "fpr_block"),
        fnr_spread=_spread(per_group, "fnr_flag"),
        worst=worst,
        best=best,
        generalized_mean_auc=means,
        # Jigsaw's final metric: equal weights (1/4) on the overall AUC and the three means.
        final_metric=0.25 * (overall_auc + sum(means.values())),
        groups=per_group,
        counterfactual=(
            None
            if templates is None
            else _counterfactual(
                scores,
                names,
                np.asarray([str(t) for t in templates], dtype=object),
                toxic,
                keep_worst=worst_templates,
            )
        ),
        data=data,
        variant=variant,
        notes=tuple(notes),
    )


def check_fairness_gate(
    report: IdentityReport,
    *,
    max_benign_flag_rate: float = DEFAULT_MAX_BENIGN_FLAG_RATE,
    max_flag_rate_spread: float = DEFAULT_MAX_FLAG_RATE_SPREAD,
) -> None:
    """Raise ``FairnessGateError`` when benign identity rows are flagged too often.

    Fails when the overall benign flag rate, any group's benign flag rate or the spread
    of the flag rate over groups exceeds its limit, and when those figures cannot be
    computed (a gate that cannot measure must not pass). The message names each failing
    figure, its group, its value and its limit, then the fix.
    """
    problems: list[str] = []
    failures: list[dict[str, Any]] = []

    def fail(figure: str, group: str | None, value: float, limit: float, text: str) -> None:
        problems.append(text)
        failures.append({"figure": figure, "group": group, "value": value, "limit": limit})

    flag = f"toxicity >= {report.flag_threshold:g}"
    worst = report.worst.get("fpr_flag")
    if math.isnan(report.benign_flag_rate):
        fail("benign flag rate", None, math.nan, max_benign_flag_rate,
             "benign flag rate cannot be computed: the identity set has no benign rows")
    elif report.benign_flag_rate > max_benign_flag_rate:
        where = f"; worst group {worst[0]!r} at {worst[1]:.4f}" if worst else ""
        fail("benign flag rate", worst[0] if worst else None, report.benign_flag_rate, max_benign_flag_rate,
             f"benign flag rate {report.benign_flag_rate:.4f} ({flag}) exceeds the limit "
             f"{max_benign_flag_rate:g}{where}")
    over = [f for f in report.groups.values() if not math.isnan(f.fpr_flag) and f.fpr_flag > max_benign_flag_rate]
    for g in sorted(over, key=lambda f: (-f.fpr_flag, f.group)):  # worst first
        fail("benign flag rate", g.group, g.fpr_flag, max_benign_flag_rate,
             f"group {g.group!r}: benign flag rate {g.fpr_flag:.4f} ({g.benign_flagged} of "
             f"{g.n_benign} benign rows score {flag}) exceeds the limit {max_benign_flag_rate:g}")
    if math.isnan(report.flag_rate_spread):
        fail("flag-rate spread", None, math.nan, max_flag_rate_spread,
             f"flag-rate spread cannot be computed: fewer than 2 groups have {report.min_samples} or "
             f"more benign rows (insufficient samples: {', '.join(report.insufficient_groups) or 'none'})")
    elif report.flag_rate_spread > max_flag_rate_spread:
        high, low = report.worst["fpr_flag"], report.best["fpr_flag"]
        fail("flag-rate spread", high[0], report.flag_rate_spread, max_flag_rate_spread,
             f"flag-rate spread {report.flag_rate_spread:.4f} (worst group {high[0]!r} {high[1]:.4f}, "
             f"best {low[0]!r} {low[1]:.4f}) exceeds the limit {max_flag_rate_spread:g}")
    if problems:
        raise FairnessGateError(
            "fairness gate failed: " + "; ".join(problems) + ". " + _GATE_FIX, failures=failures
        )
    logger.info(
        "fairness gate passed: benign flag rate %.4f <= %g, flag-rate spread %.4f <= %g",
        report.benign_flag_rate,
        max_benign_flag_rate,
        report.flag_rate_spread,
        max_flag_rate_spread,
    )


def policy_toxicity_thresholds(policy: Any = None) -> tuple[float, float]:
    """(flag, block) for the identity report's ``toxicity`` score (default: the bundled policy)."""
    from fairgate.guardrails.policy import Policy

    policy = policy if policy is not None else Policy.default()
    categories = {name: t.model_dump() for name, t in policy.toxicity.categories.items()}
    return report_thresholds(categories)


def report_thresholds(categories: Mapping[str, Mapping[str, float | None]]) -> tuple[float, float]:
    """(flag, block) of the identity report's ``toxicity`` score for ``{category: {flag, block}}``.

    The flag threshold is the ``toxicity`` category's. When ``toxicity`` only flags (the
    default policy: the specific harms block), the block figure is taken at the lowest block
    threshold of any category. This is an approximation of what the policy blocks, not a
    bound: ``toxicity`` is the parent category and usually scores at least as high as the
    harms under it, but nothing forces it to. With no block anywhere, blocks are reported at
    1.0 (none, in practice).
    """
    toxicity = categories.get("toxicity")
    if toxicity is None:
        raise GuardDataError(
            "the policy sets no thresholds for the toxicity category; add e.g. "
            "toxicity: {flag: 0.5} under toxicity.categories or pass the thresholds"
        )
    blocks = [float(b) for t in categories.values() if (b := t.get("block")) is not None]
    own_flag, own_block = toxicity.get("flag"), toxicity.get("block")
    flag = float(own_flag if own_flag is not None else own_block if own_block is not None else 0.5)
    block = float(own_block) if own_block is not None else min(blocks, default=1.0)
    return flag, max(flag, block)


def bundled_identity_eval_path() -> Path:
    """The identity evaluation set the project ships (kept apart from training by template)."""
    from fairgate.models.datasets import bundled_data_path

    return bundled_data_path(IDENTITY_EVAL)


@dataclass(frozen=True, kw_only=True)
class IdentityEvalSet:
    """The rows of an identity set: text, group, template and whether the row is toxic."""

    path: Path
    texts: list[str]
    groups: list[str]
    templates: list[str] | None
    toxic: np.ndarray

    def __len__(self) -> int:
        return len(self.texts)


def read_identity_eval(
    path: Path | str | None = None,
    *,
    text_column: str = "text",
    group_column: str = "group",
    template_column: str | None = "template_id",
    toxic_column: str = "toxic",
) -> IdentityEvalSet:
    """Read an identity set (default: the bundled one); errors name the column and the fix."""
    import pandas as pd

    from fairgate.models.guard.evaluation import binary_labels

    path = Path(path) if path is not None else bundled_identity_eval_path()
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, pd.errors.ParserError, UnicodeDecodeError) as error:
        raise GuardDataError(f"cannot read {path} as CSV: {error}") from error
    columns = [str(c) for c in frame.columns]
    for column in (text_column, group_column, toxic_column, template_column):
        if column is not None and column not in columns:
            raise GuardDataError(
                f"{path}: the identity set needs a {column!r} column (columns: {', '.join(columns)}); "
                "see models/data/identity_eval/README.md for the layout"
            )
    frame = frame[frame[text_column].str.strip() != ""]
    if frame.empty:
        raise GuardDataError(f"{path}: no rows with text in {text_column!r}")
    return IdentityEvalSet(
        path=path,
        texts=frame[text_column].tolist(),
        groups=frame[group_column].tolist(),
        templates=frame[template_column].tolist() if template_column is not None else None,
        toxic=binary_labels(frame[toxic_column].tolist(), column=toxic_column, source=str(path)),
    )


def measure_identity_report(
    model: ScoringModel,
    path: Path | str | None = None,
    *,
    flag_threshold: float | None = None,
    block_threshold: float | None = None,
    min_samples: int = DEFAULT_MIN_SAMPLES,
    variant: str | None = None,
    batch_size: int = 64,
    template_column: str | None = "template_id",
) -> IdentityReport:
    """Score an identity set (default: the bundled one) with an ``OnnxTextModel`` guard and
    report; thresholds default to the bundled policy's ``toxicity`` category.
    ``template_column=None`` reads a set without templates (no counterfactual gap)."""
    from fairgate.models.guard.evaluation import score_texts

    if flag_threshold is None or block_threshold is None:
        default_flag, default_block = policy_toxicity_thresholds()
        flag_threshold = default_flag if flag_threshold is None else flag_threshold
        block_threshold = default_block if block_threshold is None else block_threshold
    data = read_identity_eval(path, template_column=template_column)
    scores = score_texts(model, data.texts, batch_size=batch_size)
    return identity_report(
        scores[:, 0],
        groups=data.groups,
        templates=data.templates,
        toxic=data.toxic,
        flag_threshold=flag_threshold,
        block_threshold=block_threshold,
        min_samples=min_samples,
        data=str(data.path),
        variant=variant,
    )
