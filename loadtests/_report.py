"""The benchmark's report: headline figures, ratios against the targets, the table.

Kept apart from the orchestration so the numbers that end up in ``bench.json`` and the
printed table come from one tested function.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from loadtests._stats import ratio

SCHEMA = "fairgate-bench/1"
# The targets: end to end >= 60% of the floor, >= 5x the usual stack, p99 < 50 ms at half load.
TARGETS: Mapping[str, tuple[str, float]] = {
    "fairgate_over_floor": (">=", 0.6),
    "fairgate_over_usual": (">=", 5.0),
    "p99_ms_half_load": ("<", 50.0),
}
REQUIRED_KEYS = ("fairgate_over_floor", "fairgate_over_usual", "p99_ms_half_load")


def _meets(value: float | None, op: str, bound: float) -> bool | None:
    if value is None:
        return None
    return value >= bound if op == ">=" else value < bound


def headline(
    *,
    floor_texts_per_s: float | None,
    fairgate_rps: float | None,
    fairgate_texts_per_request: float = 1.0,
    usual_rps: float | None,
    p99_ms_half_load: float | None,
    fairgate_cpu_ms_per_request: float | None = None,
    usual_cpu_ms_per_request: float | None = None,
    floor_cpu_ms_per_text: float | None = None,
) -> dict[str, Any]:
    """The headline keys of bench.json; a ratio whose inputs are missing is None, never 0.

    The ``*_cpu`` ratios compare CPU time per request instead of rates: on a machine
    shared with other work they move less than the rates do, so they cross-check them.
    """
    fairgate_texts = None if fairgate_rps is None else fairgate_rps * fairgate_texts_per_request
    figures: dict[str, Any] = {
        "floor_texts_per_s": floor_texts_per_s,
        "fairgate_rps": fairgate_rps,
        "fairgate_texts_per_s": fairgate_texts,
        "usual_rps": usual_rps,
        "fairgate_over_floor": _round(ratio(fairgate_texts, floor_texts_per_s)),
        "fairgate_over_usual": _round(ratio(fairgate_rps, usual_rps)),
        "p99_ms_half_load": p99_ms_half_load,
        "cpu_cross_check": {
            "fairgate_server_cpu_ms_per_request": fairgate_cpu_ms_per_request,
            "usual_server_cpu_ms_per_request": usual_cpu_ms_per_request,
            "floor_cpu_ms_per_text": floor_cpu_ms_per_text,
            "fairgate_over_usual_cpu": _round(ratio(usual_cpu_ms_per_request, fairgate_cpu_ms_per_request)),
            "fairgate_over_floor_cpu": _round(ratio(floor_cpu_ms_per_text, fairgate_cpu_ms_per_request)),
        },
    }
    figures["targets"] = {
        key: {"op": op, "bound": bound, "met": _meets(figures[key], op, bound)}
        for key, (op, bound) in TARGETS.items()
    }
    return figures


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


def check_report(report: Mapping[str, Any]) -> None:
    """Raise ``KeyError`` naming the first headline key bench.json lacks."""
    for key in (*REQUIRED_KEYS, "schema", "floor", "fairgate", "usual"):
        if key not in report:
            raise KeyError(f"bench report lacks {key!r}; it is produced by loadtests.bench")


def _fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:,.1f}{unit}" if abs(value) >= 10 else f"{value:,.3g}{unit}"
    return f"{value}{unit}"


def format_table(report: Mapping[str, Any]) -> str:
    """The one table the benchmark prints: raw figures, then the ratios against targets."""
    fair = report.get("fairgate") or {}
    half = fair.get("half_load") or {}
    sat = fair.get("saturation") or {}
    usual_sat = (report.get("usual") or {}).get("saturation") or {}
    floor = report.get("floor") or {}
    rows = [
        (
            "floor: ONNX sessions in-process",
            _fmt(report.get("floor_texts_per_s"), " texts/s"),
            f"{floor.get('variant', 'n/a')}, threads {floor.get('intra_op_threads') or 'default'}",
        ),
        (
            "fairgate: saturation (closed loop)",
            _fmt(report.get("fairgate_rps"), " req/s"),
            f"Little's law {_fmt(sat.get('littles_law_rps'))} req/s, errors {sat.get('errors', 'n/a')}",
        ),
        (
            f"fairgate: open loop at {_fmt(half.get('offered_rps'))} req/s",
            f"p99 {_fmt(half.get('p99_ms'), ' ms')}",
            f"p50 {_fmt(half.get('p50_ms'), ' ms')}, p95 {_fmt(half.get('p95_ms'), ' ms')}, errors {half.get('errors', 'n/a')}",
        ),
        (
            "usual stack: saturation (closed loop)",
            _fmt(report.get("usual_rps"), " req/s"),
            f"Little's law {_fmt(usual_sat.get('littles_law_rps'))} req/s, errors {usual_sat.get('errors', 'n/a')}",
        ),
    ]
    cpu = report.get("cpu_cross_check") or {}
    rows.append(
        (
            "CPU ms per text: floor / fairgate / usual",
            "/".join(
                _fmt(cpu.get(k))
                for k in (
                    "floor_cpu_ms_per_text",
                    "fairgate_server_cpu_ms_per_request",
                    "usual_server_cpu_ms_per_request",
                )
            ),
            (
                f"CPU ratios: fairgate/floor {_fmt(cpu.get('fairgate_over_floor_cpu'))}, "
                f"fairgate/usual {_fmt(cpu.get('fairgate_over_usual_cpu'))}"
            ),
        )
    )
    targets = report.get("targets") or {}
    for key in REQUIRED_KEYS:
        target = targets.get(key) or {}
        met = target.get("met")
        verdict = "n/a" if met is None else ("met" if met else "MISSED")
        rows.append(
            (
                key,
                _fmt(report.get(key)),
                f"target {target.get('op', '')} {target.get('bound', '')}: {verdict}",
            )
        )
    width = max(len(name) for name, _, _ in rows)
    value_width = max(len(value) for _, value, _ in rows)
    lines = [
        f"{'phase / figure'.ljust(width)}  {'value'.rjust(value_width)}  notes",
        "-" * (width + value_width + 40),
    ]
    lines += [f"{name.ljust(width)}  {value.rjust(value_width)}  {note}" for name, value, note in rows]
    return "\n".join(lines)
