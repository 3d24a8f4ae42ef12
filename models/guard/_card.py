"""The guard's model card: the pipeline's card plus the guard's own sections.

Per-category ROC AUC on the held-out split and the per-identity false-positive rates,
rendered only from the figures the build measured (the same dict stored as metadata).
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
    if value is None or (isinstance(value, float) and math.isnan(value)):
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
    return "\n".join(lines) + "\n"
