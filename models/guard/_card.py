"""The guard's model card: the pipeline's card plus the guard's own sections.

Per-category ROC AUC on the held-out split, the per-identity false-positive rates and
the identity fairness report (metadata key ``identity_report``, the dict of
``fairness.IdentityReport.as_dict``), rendered only from the figures the build measured
(the same dict stored as metadata).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from fairgate.models.guard._categories import CATEGORIES

_INTENDED_USE = (
    "Scoring short English texts for toxicity in six categories (`toxicity`, "
    "`severe_toxicity`, `obscene`, `threat`, `insult`, `identity_attack`, sigmoid scores "
    "in [0, 1]) so fairgate's guardrails can flag or block requests. A screening signal "
    "for moderation with human review, not an automated verdict about a person."
)


def _fmt(value: Any) -> str:
    if value is None or value == "NaN" or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def render_guard_card(*, name: str, metadata: Mapping[str, Any]) -> str:
    """Markdown for the guard, from the build's metadata dict."""
    from fairgate.models.card import render_model_card

    evaluation = metadata.get("evaluation", {})
    per_category = evaluation.get("per_category", {})
    metrics: dict[str, Any] = {
        f"roc_auc_{c}": per_category[c]["roc_auc"] for c in CATEGORIES if c in per_category
    }
    identity = metadata.get("identity_fpr", {})
    if identity.get("spread") is not None:
        metrics["identity_fpr_spread"] = identity.get("spread")
    report = metadata.get("identity_report") or {}
    for key in ("benign_flag_rate", "flag_rate_spread", "toxic_recall_flag", "final_metric"):
        if key in report:
            metrics[f"identity_{key}"] = _number(report[key])
    if "mean_gap" in report.get("counterfactual_gap", {}):
        metrics["identity_counterfactual_gap"] = _number(report["counterfactual_gap"]["mean_gap"])
    limitations = [
        "Trained or converted for short English texts; sarcasm, quotes, reclaimed slurs and "
        "context across messages are beyond it. The per-identity figures come from a small "
        "templated set of non-toxic sentences: they show whether naming a group alone raises "
        "the score, not how the model behaves on real traffic.",
    ]
    untrained = metadata.get("untrained_categories") or []
    if untrained:
        limitations.append(
            f"**Not trained for {', '.join(untrained)}**: its data had no labels for them, so "
            f"those outputs are disabled (constant score ~0). Do not rely on them."
        )
    dropped = metadata.get("detoxify", {}).get("dropped_outputs") or []
    if dropped:
        limitations.append(
            f"Converted from a Detoxify checkpoint with extra outputs ({', '.join(dropped)}); "
            "only the six guard categories are kept."
        )
    card = render_model_card(
        name=name,
        task="multi_label_classification",
        labels=list(CATEGORIES),
        base=str(metadata.get("base", "n/a")),
        data=metadata.get("data", {}),
        training=metadata.get("training", {}),
        metrics=metrics,
        parity=metadata.get("parity", {}),
        export=metadata.get("export", {}),
        intended_use=_INTENDED_USE,
        limitations="\n\n".join(limitations),
    )
    lines = [card.rstrip(), "", "## Source", "", f"`{metadata.get('source', 'n/a')}`"]
    detoxify = metadata.get("detoxify")
    if detoxify:
        lines += [
            "",
            f"Detoxify checkpoint: {detoxify.get('model_name')} (base "
            f"`{detoxify.get('model_type')}`), {detoxify.get('num_classes')} outputs; kept "
            + ", ".join(f"`{c}` <- output {i}" for c, i in detoxify.get("kept_outputs", {}).items()),
        ]
    lines += [
        "",
        f"## ROC AUC per category ({evaluation.get('data', 'held-out split')}, "
        f"{evaluation.get('n', 'n/a')} texts, {evaluation.get('variant', 'int8')} ONNX)",
        "",
        "| category | ROC AUC | positives | negatives |",
        "|---|---|---|---|",
    ]
    for category in CATEGORIES:
        row = per_category.get(category)
        if row is None:
            lines.append(f"| `{category}` | not labelled in the data | | |")
        else:
            lines.append(
                f"| `{category}` | {_fmt(row.get('roc_auc'))} | {row.get('positives')} | "
                f"{row.get('negatives')} |"
            )
    lines += ["", "## False-positive rate per identity group", ""]
    if identity.get("per_group"):
        lines += [
            f"Share of non-toxic sentences naming each group that score `toxicity >= "
            f"{identity.get('threshold')}` ({identity.get('data')}, {identity.get('sentences')} "
            f"sentences, {identity.get('variant', 'int8')} ONNX). Overall "
            f"{_fmt(identity.get('overall_fpr'))}; best group `{identity.get('best_group')}`, "
            f"worst `{identity.get('worst_group')}`, spread (worst - best) "
            f"**{_fmt(identity.get('spread'))}**. Spread of the mean `toxicity` score between "
            f"groups: {_fmt(identity.get('mean_score_spread'))}.",
            "",
            "| group | sentences | false positives | FPR | mean score |",
            "|---|---|---|---|---|",
        ]
        for group, row in identity["per_group"].items():
            lines.append(
                f"| {group} | {row.get('count')} | {row.get('false_positives')} | "
                f"{_fmt(row.get('fpr'))} | {_fmt(row.get('mean_score'))} |"
            )
    else:
        lines.append(f"Not measured: {identity.get('status', 'no identity set')}.")
    lines += _identity_report_section(report)
    return "\n".join(lines) + "\n"


def _number(value: Any) -> Any:
    """The metrics table formats floats; the stored dict spells NaN as ``"NaN"``."""
    return math.nan if value == "NaN" else value


def _worst(report: Mapping[str, Any], figure: str) -> str:
    entry = report.get("worst_group", {}).get(figure)
    return f"`{entry['group']}` {_fmt(entry['value'])}" if entry else "n/a (insufficient samples)"


def _identity_report_section(report: Mapping[str, Any]) -> list[str]:
    """Identity fairness report: headline figures, the per-group table, the worst templates."""
    lines = ["", "## Identity fairness report", ""]
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
        "| group | benign | toxic | FPR @ flag | FPR @ block | FNR @ flag | Subgroup AUC | BPSN AUC | BNSP AUC |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for group, row in report["per_group"].items():
        lines.append(
            f"| {group} | {row.get('n_benign')} | {row.get('n_toxic')} | {_fmt(row.get('fpr_flag'))} | "
            f"{_fmt(row.get('fpr_block'))} | {_fmt(row.get('fnr_flag'))} | {_fmt(row.get('subgroup_auc'))} | "
            f"{_fmt(row.get('bpsn_auc'))} | {_fmt(row.get('bnsp_auc'))} |"
        )
    worst_templates = gap.get("worst_templates") or []
    if worst_templates:
        lines += ["", "Largest counterfactual gaps:", "", "| template | kind | gap | highest | lowest |",
                  "|---|---|---|---|---|"]
        for t in worst_templates:
            lines.append(
                f"| `{t.get('template')}` | {t.get('kind')} | {_fmt(t.get('gap'))} | {t.get('max_group')} "
                f"{_fmt(t.get('max_score'))} | {t.get('min_group')} {_fmt(t.get('min_score'))} |"
            )
    return lines
