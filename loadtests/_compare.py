"""Two model variants side by side in one run: ``python -m loadtests.bench --compare-guard-tag A,B``.

A speed claim about a model change (static int8 against dynamic, say) only holds if both
variants saw the same machine. On a shared machine the load drifts within minutes, so
the variants run in alternating short rounds (A B, then B A, ...) over the same texts and
batches, and the figures are summed per variant: CPU ms per text (process CPU, which the
neighbours' load does not inflate as much as wall time) and texts per second, with their
ratios B / A.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict

__all__ = ["CompareResult", "VariantFigures", "compare_variants", "parse_pair"]


class VariantFigures(BaseModel):
    """One variant's totals over all its rounds."""

    model_config = ConfigDict(frozen=True)

    label: str
    classifier_tag: str
    guard_tag: str
    rounds: int
    texts: int
    wall_s: float
    cpu_s: float
    cpu_ms_per_text: float | None
    texts_per_s: float | None


class CompareResult(BaseModel):
    """Both variants and B's figures relative to A's (``None`` when one could not be measured)."""

    model_config = ConfigDict(frozen=True)

    batch_size: int
    bucket_size: int | None
    a: VariantFigures
    b: VariantFigures
    cpu_ms_per_text_ratio: float | None  # B / A: below 1 means B is cheaper
    throughput_ratio: float | None  # B / A: above 1 means B is faster


def parse_pair(spec: str | None, default: str) -> tuple[str, str]:
    """``"A,B"`` -> (A, B); ``None`` -> (default, default): the unchanged model of the pair."""
    if spec is None:
        return default, default
    parts = [p.strip() for p in spec.split(",")]
    if len(parts) != 2 or not all(parts):
        raise ValueError(f"expected two tags as A,B (for example fairgate-toxicity:v1,fairgate-toxicity:v2), got {spec!r}")
    return parts[0], parts[1]


def _ratio(b: float | None, a: float | None) -> float | None:
    return round(b / a, 4) if a and b is not None else None


def compare_variants(
    load: Callable[[str], tuple[Any, Any]],
    tags: dict[str, tuple[str, str]],
    texts: Sequence[str],
    *,
    measure: Callable[..., Any],
    rounds: int = 6,
    round_s: float = 3.0,
    batch_size: int = 32,
    bucket_size: int | None = None,
) -> CompareResult:
    """Alternate ``measure`` rounds of variant ``"a"`` and ``"b"``; sum their figures.

    ``tags`` maps ``"a"``/``"b"`` to (classifier tag, guard tag); ``load(label)`` returns
    that variant's loaded (classifier, guard); ``measure`` is
    :func:`loadtests._floor.measure_floor` (or a stand-in with its signature and result).
    Round ``i`` runs A then B when ``i`` is even, B then A when odd, so a drift in the
    machine's load falls on both alike.
    """
    if rounds < 1:
        raise ValueError(f"rounds={rounds} must be at least 1")
    pairs = {label: load(label) for label in ("a", "b")}
    totals: dict[str, dict[str, float]] = {label: {"texts": 0, "wall": 0.0, "cpu": 0.0} for label in pairs}
    for index in range(rounds):
        for label in ("a", "b") if index % 2 == 0 else ("b", "a"):
            classifier, guard = pairs[label]
            result = measure(
                classifier, guard, texts, batch_size=batch_size, bucket_size=bucket_size, duration_s=round_s
            )
            totals[label]["texts"] += result.texts
            totals[label]["wall"] += result.duration_s
            totals[label]["cpu"] += result.cpu_ms_per_text * result.texts / 1000.0
    figures = {}
    for label, total in totals.items():
        texts_done = int(total["texts"])
        figures[label] = VariantFigures(
            label=label.upper(),
            classifier_tag=tags[label][0],
            guard_tag=tags[label][1],
            rounds=rounds,
            texts=texts_done,
            wall_s=round(total["wall"], 3),
            cpu_s=round(total["cpu"], 3),
            cpu_ms_per_text=round(total["cpu"] * 1000 / texts_done, 3) if texts_done else None,
            texts_per_s=round(texts_done / total["wall"], 3) if total["wall"] > 0 else None,
        )
    a, b = figures["a"], figures["b"]
    return CompareResult(
        batch_size=batch_size,
        bucket_size=bucket_size,
        a=a,
        b=b,
        cpu_ms_per_text_ratio=_ratio(b.cpu_ms_per_text, a.cpu_ms_per_text),
        throughput_ratio=_ratio(b.texts_per_s, a.texts_per_s),
    )
