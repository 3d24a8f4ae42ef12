"""Percentiles, latency summaries and the ratios the benchmark reports.

Pure functions on plain numbers, so the arithmetic behind every published figure is
unit-tested without a server.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from pydantic import BaseModel, ConfigDict


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) with linear interpolation (numpy's default).

    NaN for no values: an empty run has no latency, and zero would be a lie.
    """
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile q={q} must be within [0, 100]")
    if not values:
        return math.nan
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100.0
    lower = math.floor(position)
    upper = math.ceil(position)
    if lower == upper:
        return float(ordered[lower])
    weight = position - lower
    return float(ordered[lower] * (1.0 - weight) + ordered[upper] * weight)


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """``numerator / denominator``, or None when either is missing, NaN or the denominator is 0."""
    if numerator is None or denominator is None:
        return None
    if math.isnan(numerator) or math.isnan(denominator) or denominator == 0:
        return None
    return numerator / denominator


class LatencySummary(BaseModel):
    """What one load phase measured; latencies in milliseconds, rates per second."""

    model_config = ConfigDict(frozen=True)

    requests: int
    ok: int
    errors: int
    duration_s: float
    throughput_rps: float
    texts_per_s: float
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    mean_ms: float | None
    max_ms: float | None


def _finite_or_none(value: float) -> float | None:
    return None if math.isnan(value) else round(value, 3)


def summarize(
    latencies_s: Iterable[float],
    *,
    errors: int,
    duration_s: float,
    texts_per_request: float = 1.0,
) -> LatencySummary:
    """Summarise successful-request latencies (seconds) over a phase of ``duration_s``.

    Throughput counts successful requests only: an error is not served work.
    """
    if duration_s <= 0:
        raise ValueError(f"duration_s={duration_s} must be positive")
    values = [float(v) for v in latencies_s]
    ok = len(values)
    millis = [v * 1000.0 for v in values]
    mean = sum(millis) / ok if ok else math.nan
    return LatencySummary(
        requests=ok + errors,
        ok=ok,
        errors=errors,
        duration_s=round(duration_s, 3),
        throughput_rps=round(ok / duration_s, 3),
        texts_per_s=round(ok * texts_per_request / duration_s, 3),
        p50_ms=_finite_or_none(percentile(millis, 50)),
        p95_ms=_finite_or_none(percentile(millis, 95)),
        p99_ms=_finite_or_none(percentile(millis, 99)),
        mean_ms=_finite_or_none(mean),
        max_ms=_finite_or_none(max(millis) if millis else math.nan),
    )
