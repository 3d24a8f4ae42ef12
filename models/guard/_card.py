"""The guard's model card: the shared sections plus the guard's own.

Rendered by the one renderer (``fairgate.models.card.render_card``) from the metadata
the build stores: per-category ROC AUC on the held-out split, the per-identity
false-positive rates, the recommended thresholds and the identity fairness report
(metadata key ``identity_report``, the dict of ``fairness.IdentityReport.as_dict``).
Figures that cannot be computed read "n/a" here; the report's legend says why.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fairgate.models.card import (
    CardSection,
    export_section,
    intended_use_section,
    limitations_section,
    metrics_section,
    summary_section,
    table,
    training_section,
)
from fairgate.models.card import fmt as _fmt
from fairgate.models.guard._categories import CATEGORIES

__all__ = ["GUARD_CARD"]

_INTENDED_USE = (
    "Scoring short English texts for toxicity in six categories (`toxicity`, "
    "`severe_toxicity`, `obscene`, `threat`, `insult`, `identity_attack`, sigmoid scores "
    "in [0, 1]) so fairgate's guardrails can flag or block requests. A screening signal "
    "for moderation with human review, not an automated verdict about a person."
)


def _headline(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """The metrics table's rows: AUC per category, identity spreads and rates."""
    per_category = (metadata.get("evaluation") or {}).get("per_category", {})
    rows: dict[str, Any] = {f"roc_auc_{c}": per_category[c]["roc_auc"] for c in CATEGORIES if c in per_category}
    identity = metadata.get("identity_fpr") or {}
    if identity.get("spread") is not None:
        rows["identity_fpr_spread"] = identity.get("spread")
    report = metadata.get("identity_report") or {}
    for key in ("benign_flag_rate", "flag_rate_spread", "toxic_recall_flag", "final_metric"):
        if key in report:
            rows[f"identity_{key}"] = report[key]
    if "mean_gap" in report.get("counterfactual_gap", {}):
        rows["identity_counterfactual_gap"] = report["counterfactual_gap"]["mean_gap"]
    return rows


def _limitations(metadata: Mapping[str, Any]) -> str:
    paragraphs = [
        "Trained or converted for short English texts; sarcasm, quotes, reclaimed slurs and "
        "context across messages are beyond it. The per-identity figures come from a small "
        "templated set of non-toxic sentences: they show whether naming a group alone raises "
        "the score, not how the model behaves on real traffic.",
    ]
    untrained = metadata.get("untrained_categories") or []
    if untrained:
        paragraphs.append(
            f"**Not trained for {', '.join(untrained)}**: its data had no labels for them, so "
            f"those outputs are disabled (constant score ~0). Do not rely on them."
        )
    dropped = (metadata.get("detoxify") or {}).get("dropped_outputs") or []
    if dropped:
        paragraphs.append(
            f"Converted from a Detoxify checkpoint with extra outputs ({', '.join(dropped)}); "
            "only the six guard categories are kept."
        )
    return "\n\n".join(paragraphs)


def _source(metadata: Mapping[str, Any]) -> list[str]:
    lines = ["## Source", "", f"`{metadata.get('source', 'n/a')}`"]
    detoxify = metadata.get("detoxify")
    if detoxify:
        lines += [
            "",
            f"Detoxify checkpoint: {detoxify.get('model_name')} (base "
            f"`{detoxify.get('model_type')}`), {detoxify.get('num_classes')} outputs; kept "
            + ", ".join(f"`{c}` <- output {i}" for c, i in detoxify.get("kept_outputs", {}).items()),
        ]
    return [*lines, ""]


def _per_category(metadata: Mapping[str, Any]) -> list[str]:
    evaluation = metadata.get("evaluation") or {}
    per_category = evaluation.get("per_category", {})
    lines = [
        f"## ROC AUC per category ({evaluation.get('data', 'held-out split')}, "
        f"{evaluation.get('n', 'n/a')} texts, {evaluation.get('variant', 'int8')} ONNX)",
        "",
    ]
    rows = [
        (f"`{c}`", _fmt(row.get("roc_auc")), row.get("positives"), row.get("negatives"))
        if (row := per_category.get(c)) is not None
        else (f"`{c}`", "not labelled in the data", "", "")
        for c in CATEGORIES
    ]
    return [*lines, *table(["category", "ROC AUC", "positives", "negatives"], rows), ""]


def _identity_fpr(metadata: Mapping[str, Any]) -> list[str]:
    identity = metadata.get("identity_fpr") or {}
    lines = ["## False-positive rate per identity group", ""]
    if not identity.get("per_group"):
        return [*lines, f"Not measured: {identity.get('status', 'no identity set')}.", ""]
    lines += [
        f"Share of non-toxic sentences naming each group that score `toxicity >= "
        f"{identity.get('threshold')}` ({identity.get('data')}, {identity.get('sentences')} "
        f"sentences, {identity.get('variant', 'int8')} ONNX). Overall "
        f"{_fmt(identity.get('overall_fpr'))}; best group `{identity.get('best_group')}`, "
        f"worst `{identity.get('worst_group')}`, spread (worst - best) "
        f"**{_fmt(identity.get('spread'))}**. Spread of the mean `toxicity` score between "
        f"groups: {_fmt(identity.get('mean_score_spread'))}.",
        "",
        *table(
            ["group", "sentences", "false positives", "FPR", "mean score"],
            [
                (group, row.get("count"), row.get("false_positives"), _fmt(row.get("fpr")), _fmt(row.get("mean_score")))
                for group, row in identity["per_group"].items()
            ],
        ),
    ]
    return [*lines, ""]


def _recommended_thresholds(metadata: Mapping[str, Any]) -> list[str]:
    """The calibrated flag and block thresholds and the guarantee that comes with them."""
    from fairgate.models.guard._thresholds import describe_categories

    recommended = metadata.get("recommended_thresholds") or {}
    lines = ["## Recommended thresholds", ""]
    if "block" not in recommended:
        return [*lines, f"None recorded: {recommended.get('status', 'no calibration set')}.", ""]
    block, flag = recommended["block"], recommended["flag"]
    categories = recommended.get("categories", {})
    blocking = "`, `".join(c for c, t in categories.items() if "block" in t)
    return [
        *lines,
        f"Per category, the higher of the calibrated threshold and the category's conventional "
        f"floor: {describe_categories(categories)}. Calibrated: flag {flag.get('applied')} over "
        f"every category, block {block.get('applied')} over `{blocking}`, on {recommended.get('n')} "
        f"benign texts never trained on ({recommended.get('data')}) by {recommended.get('method')}: "
        f"{recommended.get('guarantee')}. Share of the calibration set flagged "
        f"{_fmt(flag.get('calibration_flagged'))}, blocked {_fmt(block.get('calibration_blocked'))}. "
        "Recalibrate on your own traffic with `fairgate calibrate`.",
        "",
    ]


_REPORT_COLUMNS = ("fpr_flag", "fpr_block", "fnr_flag", "subgroup_auc", "bpsn_auc", "bnsp_auc")


def _worst(report: Mapping[str, Any], figure: str) -> str:
    entry = report.get("worst_group", {}).get(figure)
    return f"`{entry['group']}` {_fmt(entry['value'])}" if entry else "n/a (insufficient samples)"


def _identity_report(metadata: Mapping[str, Any]) -> list[str]:
    """Identity fairness report: headline figures, the per-group table, the worst templates."""
    report = metadata.get("identity_report") or {}
    lines = ["## Identity fairness report", ""]
    if not report.get("per_group"):
        return [*lines, f"Not measured: {report.get('status', 'no identity evaluation set')}."]
    flag, block = report.get("flag_threshold"), report.get("block_threshold")
    means = report.get("generalized_mean_auc", {})
    lines += [
        f"{report.get('data', 'identity set')} ({report.get('n')} rows: {report.get('n_benign')} benign, "
        f"{report.get('n_toxic')} toxic; {report.get('n_groups')} groups; "
        f"{report.get('variant', 'int8')} ONNX), kept apart from training by template. Flag at "
        f"`toxicity >= {flag}`, block at `>= {block}`.",
        "",
        f"- **Benign flag rate:** {_fmt(report.get('benign_flag_rate'))} (worst group "
        f"{_worst(report, 'fpr_flag')}); **spread** over groups {_fmt(report.get('flag_rate_spread'))}",
        f"- **Benign block rate:** {_fmt(report.get('benign_block_rate'))} (worst group "
        f"{_worst(report, 'fpr_block')}); spread {_fmt(report.get('block_rate_spread'))}",
        f"- **Toxic recall at flag:** {_fmt(report.get('toxic_recall_flag'))} (worst FNR "
        f"{_worst(report, 'fnr_flag')}); FNR spread {_fmt(report.get('fnr_spread'))}",
        f"- **AUC:** overall {_fmt(report.get('overall_auc'))}; lowest Subgroup AUC "
        f"{_worst(report, 'subgroup_auc')}, BPSN {_worst(report, 'bpsn_auc')}, BNSP "
        f"{_worst(report, 'bnsp_auc')}; generalized mean (p = {report.get('generalized_mean_power')}) "
        + ", ".join(f"{k} {_fmt(means.get(k))}" for k in ("subgroup_auc", "bpsn_auc", "bnsp_auc"))
        + f"; Jigsaw final metric {_fmt(report.get('final_metric'))}",
    ]
    gap = report.get("counterfactual_gap", {})
    if "mean_gap" in gap:
        lines.append(
            f"- **Counterfactual gap** (max - min `toxicity` over the groups of one template, mean over "
            f"{gap.get('templates')} templates): {_fmt(gap.get('mean_gap'))} (benign "
            f"{_fmt(gap.get('mean_gap_benign'))}, toxic {_fmt(gap.get('mean_gap_toxic'))}); largest "
            f"{_fmt(gap.get('max_gap'))}"
        )
    else:
        lines.append(f"- **Counterfactual gap:** {gap.get('status', 'not measured')}")
    lines += [
        "",
        "FPR: share of the group's benign rows at or above the threshold; FNR: share of its toxic "
        "rows below the flag threshold. Subgroup AUC uses the group's rows only; BPSN (background "
        "positive, subgroup negative) and BNSP (background negative, subgroup positive) are the "
        "unintended-bias AUCs of Borkan et al. (2019). n/a: insufficient samples (fewer than "
        f"{report.get('min_samples')} rows of the kind needed), never 0.",
        "",
        *table(
            ["group", "benign", "toxic", "FPR @ flag", "FPR @ block", "FNR @ flag", "Subgroup AUC", "BPSN AUC",
             "BNSP AUC"],
            [
                (group, row.get("n_benign"), row.get("n_toxic"),
                 *(_fmt(row.get(k)) for k in _REPORT_COLUMNS))
                for group, row in report["per_group"].items()
            ],
        ),
    ]
    worst_templates = gap.get("worst_templates") or []
    if worst_templates:
        lines += ["", "Largest counterfactual gaps:", "", *table(
            ["template", "kind", "gap", "highest", "lowest"],
            [
                (f"`{t.get('template')}`", t.get("kind"), _fmt(t.get("gap")),
                 f"{t.get('max_group')} {_fmt(t.get('max_score'))}", f"{t.get('min_group')} {_fmt(t.get('min_score'))}")
                for t in worst_templates
            ],
        )]
    return lines


GUARD_CARD: tuple[CardSection, ...] = (
    summary_section,
    intended_use_section(_INTENDED_USE),
    metrics_section(_headline),
    training_section,
    export_section,
    limitations_section(_limitations),
    _source,
    _per_category,
    _identity_fpr,
    _recommended_thresholds,
    _identity_report,
)
