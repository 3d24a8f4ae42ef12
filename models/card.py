"""The model card (markdown) written next to the model as ``MODEL_CARD.md``.

Rendered only from the figures the build measured, so the card cannot claim more than
the metadata in the store.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

__all__ = ["render_model_card"]


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return "NaN (insufficient samples)" if math.isnan(value) else f"{value:.4f}"
    return str(value)


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
    """Markdown for one model: what it is, its data, metrics overall and per group, export."""
    lines = [
        f"# Model card: {name}",
        "",
        f"- **Task:** {task} over labels {', '.join(f'`{l}`' for l in labels)}",
        f"- **Base encoder:** {base}",
        f"- **Data:** {data.get('source', 'n/a')} (fingerprint `{data.get('fingerprint', 'n/a')}`)",
    ]
    if data.get("sizes"):
        sizes = data["sizes"]
        lines.append("- **Split sizes:** " + ", ".join(f"{k} {v}" for k, v in sizes.items()))
    lines += [
        "",
        "## Intended use",
        "",
        intended_use
        or "Classification of short English texts, served behind fairgate's toxicity and "
        "per-group rate guardrails. Not for decisions about people without human review.",
        "",
        "## Metrics (test split)",
        "",
    ]
    overall = {k: v for k, v in metrics.items() if not isinstance(v, dict | list)}
    if overall:
        lines += ["| metric | value |", "|---|---|"]
        lines += [f"| {k} | {_fmt(v)} |" for k, v in overall.items()]
    else:
        lines.append("No evaluation recorded.")
    per_group = metrics.get("per_group") if isinstance(metrics, Mapping) else None
    if per_group:
        lines += _group_section(per_group)
    lines += ["", "## Training", ""]
    if training:
        lines += ["```json", json.dumps(training, indent=2, default=str), "```"]
    else:
        lines.append("Not trained (random weights).")
    lines += [
        "",
        "## Export and parity",
        "",
        f"- ONNX graph optimisation level {export.get('optimization_level', 'n/a')}; "
        f"int8 dynamic quantisation for `{export.get('quantization_target', 'n/a')}`",
        f"- Parity on {parity.get('n', 'n/a')} validation texts: fp32 max |logit diff| "
        f"{_fmt(parity.get('fp32_max_abs_diff'))} (tolerance {_fmt(parity.get('fp32_tolerance'))}); "
        f"int8 label agreement {_fmt(parity.get('int8_label_agreement'))} "
        f"(minimum {_fmt(parity.get('int8_min_agreement'))})",
        "",
        "## Limitations",
        "",
        limitations
        or "Per-group figures come from a small templated identity set: they show whether the "
        "model treats the same sentence differently by group, not how it behaves on real "
        "traffic. Watch the live per-group monitors.",
        "",
    ]
    return "\n".join(lines)


def _group_section(per_group: Mapping[str, Any]) -> list[str]:
    lines = ["", f"### Per group ({per_group.get('source', 'identity set')})", ""]
    groups = per_group.get("groups", {})
    labels = per_group.get("labels", [])
    header = ["group", "count", "accuracy", *[f"rate `{l}`" for l in labels], "FPR", "FNR"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for group, row in groups.items():
        cells = [group, _fmt(row.get("count")), _fmt(row.get("accuracy"))]
        cells += [_fmt(row.get("selection_rate", {}).get(l)) for l in labels]
        cells += [_fmt(row.get("fpr")), _fmt(row.get("fnr"))]
        lines.append("| " + " | ".join(cells) + " |")
    parity = per_group.get("parity", {})
    if parity:
        lines += ["", "| label | parity difference | impact ratio | lowest group | highest group |", "|---|---|---|---|---|"]
        for label, figures in parity.items():
            lines.append(
                f"| `{label}` | {_fmt(figures.get('difference'))} | {_fmt(figures.get('ratio'))} | "
                f"{figures.get('lowest_group')} | {figures.get('highest_group')} |"
            )
    return lines
