"""The model card (markdown) written next to the model as ``MODEL_CARD.md``.

One renderer for every model: a card is a list of sections, each a function of the
metadata the build stores, so the card cannot claim more than the store holds. The
classifier's card is :data:`CLASSIFIER_CARD`; the guard adds its own sections
(``fairgate.models.guard._card``). Render from :func:`fairgate.models.store.json_safe`
metadata: figures that cannot be computed are then ``"NaN"``, shown as such, never as 0.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from fairgate.models.store import json_safe

__all__ = [
    "CLASSIFIER_CARD",
    "CardSection",
    "classifier_sections",
    "export_section",
    "fmt",
    "intended_use_section",
    "limitations_section",
    "metrics_section",
    "per_group_section",
    "render_card",
    "render_model_card",
    "summary_section",
    "table",
    "training_section",
]

# A section: metadata in, markdown lines out (an empty list renders nothing).
CardSection = Callable[[Mapping[str, Any]], list[str]]

_INSUFFICIENT = "NaN (insufficient samples)"
_CLASSIFIER_USE = (
    "Classification of short English texts, served behind fairgate's toxicity and "
    "per-group rate guardrails. Not for decisions about people without human review."
)
_CLASSIFIER_LIMITATIONS = (
    "Per-group figures come from a small templated identity set: they show whether the "
    "model treats the same sentence differently by group, not how it behaves on real "
    "traffic. Watch the live per-group monitors."
)


def fmt(value: Any, *, nan: str = "n/a") -> str:
    """A figure for a card or a CLI line: four decimals; ``None`` is "n/a", NaN is ``nan``."""
    if value is None:
        return "n/a"
    if value == "NaN" or (isinstance(value, float) and math.isnan(value)):
        return nan
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> list[str]:
    """A markdown table: the header, its rule, one line per row (cells as given)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]


def render_card(*, name: str, metadata: Mapping[str, Any], sections: Sequence[CardSection]) -> str:
    """Markdown for one model: the title, then each section in order."""
    lines = [f"# Model card: {name}", ""]
    for section in sections:
        lines += section(metadata)
    return "\n".join(lines).rstrip() + "\n"


def summary_section(metadata: Mapping[str, Any]) -> list[str]:
    """Task and labels, base encoder, data with its fingerprint and split sizes."""
    data = metadata.get("data") or {}
    labels = metadata.get("labels") or []
    lines = [
        f"- **Task:** {metadata.get('task', 'n/a')} over labels {', '.join(f'`{l}`' for l in labels)}",
        f"- **Base encoder:** {metadata.get('base', 'n/a')}",
        f"- **Data:** {data.get('source', 'n/a')} (fingerprint `{data.get('fingerprint', 'n/a')}`)",
    ]
    if data.get("sizes"):
        lines.append("- **Split sizes:** " + ", ".join(f"{k} {v}" for k, v in data["sizes"].items()))
    return [*lines, ""]


def intended_use_section(text: str) -> CardSection:
    """The intended-use paragraph: what the model is for and what it is not for."""
    return lambda metadata: ["## Intended use", "", text, ""]


def _scalar_metrics(metadata: Mapping[str, Any]) -> Mapping[str, Any]:
    metrics = metadata.get("metrics") or {}
    return {k: v for k, v in metrics.items() if not isinstance(v, dict | list)}


def metrics_section(
    pick: Callable[[Mapping[str, Any]], Mapping[str, Any]] = _scalar_metrics,
) -> CardSection:
    """The metrics table; ``pick`` chooses its rows (default: the scalars of ``metrics``)."""

    def section(metadata: Mapping[str, Any]) -> list[str]:
        rows = pick(metadata)
        lines = ["## Metrics (test split)", ""]
        if not rows:
            return [*lines, "No evaluation recorded.", ""]
        return [*lines, *table(["metric", "value"], [(k, fmt(v, nan=_INSUFFICIENT)) for k, v in rows.items()]), ""]

    return section


def per_group_section(metadata: Mapping[str, Any]) -> list[str]:
    """The identity set's per-group table and the parity of each label's rate."""
    report = (metadata.get("metrics") or {}).get("per_group")
    if not report:
        return []
    lines = [f"### Per group ({report.get('source', 'identity set')})", ""]
    labels = report.get("labels", [])
    lines += table(
        ["group", "count", "accuracy", *[f"rate `{l}`" for l in labels], "FPR", "FNR"],
        [
            [group, fmt(row.get("count")), fmt(row.get("accuracy")),
             *[fmt(row.get("selection_rate", {}).get(l)) for l in labels], fmt(row.get("fpr")), fmt(row.get("fnr"))]
            for group, row in report.get("groups", {}).items()
        ],
    )
    parity = report.get("parity", {})
    if parity:
        lines += ["", *table(
            ["label", "parity difference", "impact ratio", "lowest group", "highest group"],
            [
                [f"`{label}`", fmt(f.get("difference")), fmt(f.get("ratio")),
                 f.get("lowest_group"), f.get("highest_group")]
                for label, f in parity.items()
            ],
        )]
    return [*lines, ""]


def training_section(metadata: Mapping[str, Any]) -> list[str]:
    """The training record as JSON, without the per-step history (that stays in the store)."""
    record = {k: v for k, v in (metadata.get("training") or {}).items() if k != "history"}
    if not record:
        return ["## Training", "", "Not trained (random weights).", ""]
    return ["## Training", "", "```json", json.dumps(record, indent=2, default=str), "```", ""]


def export_section(metadata: Mapping[str, Any]) -> list[str]:
    """Graph optimisation, quantisation target and the ONNX-vs-PyTorch parity figures."""
    export, parity = metadata.get("export") or {}, metadata.get("parity") or {}
    return [
        "## Export and parity",
        "",
        f"- ONNX graph optimisation level {export.get('optimization_level', 'n/a')}; "
        f"int8 dynamic quantisation for `{export.get('quantization_target', 'n/a')}`",
        f"- Parity on {parity.get('n', 'n/a')} validation texts: fp32 max |logit diff| "
        f"{fmt(parity.get('fp32_max_abs_diff'))} (tolerance {fmt(parity.get('fp32_tolerance'))}); "
        f"int8 label agreement {fmt(parity.get('int8_label_agreement'))} "
        f"(minimum {fmt(parity.get('int8_min_agreement'))})",
        "",
    ]


def domain_section(metadata: Mapping[str, Any]) -> list[str]:
    """The domain-shift monitor's reference statistics: what "in domain" means for this model."""
    domain = metadata.get("domain")
    if not domain:
        return []
    quantiles = domain.get("validation_quantiles") or {}
    levels = sorted({q for row in quantiles.values() for q in row}, key=float)
    return [
        "## Domain reference (domain-shift monitor)",
        "",
        f"Mahalanobis distance of the pooled embedding to the nearest class mean, shared covariance "
        f"(shrinkage {fmt(domain.get('shrinkage'))}), fitted on {domain.get('n_train')} training texts "
        f"({domain.get('dim')} dimensions); quantiles of the distance on {domain.get('n_validation')} "
        "held-out validation texts, per ONNX variant. Serving counts an item as out of domain above "
        "the policy's quantile (`domain.quantile`, 0.99 by default).",
        "",
        *table(["variant", *levels], [[variant, *[fmt(row.get(q)) for q in levels]] for variant, row in quantiles.items()]),
        "",
    ]


def limitations_section(text: str | Callable[[Mapping[str, Any]], str]) -> CardSection:
    """What the figures do not show; ``text`` may depend on the metadata."""

    def section(metadata: Mapping[str, Any]) -> list[str]:
        return ["## Limitations", "", text(metadata) if callable(text) else text, ""]

    return section


def classifier_sections(
    *, use: str = _CLASSIFIER_USE, limits: str = _CLASSIFIER_LIMITATIONS
) -> tuple[CardSection, ...]:
    """The classifier's card, with its default intended use and limitations unless given."""
    return (
        summary_section,
        intended_use_section(use),
        metrics_section(),
        per_group_section,
        training_section,
        export_section,
        domain_section,
        limitations_section(limits),
    )


CLASSIFIER_CARD = classifier_sections()


def render_model_card(
    *,
    name: str,
    task: str,
    labels: list[str],
    base: str,
    data: Mapping[str, Any],
    training: Mapping[str, Any],
    metrics: Mapping[str, Any],
    parity: Mapping[str, Any],
    export: Mapping[str, Any],
    intended_use: str | None = None,
    limitations: str | None = None,
) -> str:
    """The classifier's card from figures in hand (for models built outside the pipeline).

    The same sections as the pipeline's card, from the metadata these figures make.
    """
    sections = classifier_sections(
        use=intended_use or _CLASSIFIER_USE, limits=limitations or _CLASSIFIER_LIMITATIONS
    )
    metadata = {
        "task": task, "labels": labels, "base": base, "data": data, "training": training,
        "metrics": metrics, "parity": parity, "export": export,
    }
    return render_card(name=name, metadata=json_safe(metadata), sections=sections)
