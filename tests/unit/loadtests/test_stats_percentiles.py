"""Percentiles, ratios and summaries behind every published figure."""

from __future__ import annotations

import math

import numpy as np
import pytest

from loadtests._stats import percentile, ratio, summarize


@pytest.mark.parametrize("q", [0, 1, 50, 95, 99, 99.9, 100])
def test_percentile_matches_numpy_linear_interpolation(q: float) -> None:
    values = [0.7, 12.0, 3.5, 3.5, 9.25, 100.0, 0.01, 42.0]
    assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)))


def test_percentile_of_nothing_is_nan_not_zero() -> None:
    assert math.isnan(percentile([], 99))


def test_percentile_rejects_q_outside_0_100() -> None:
    with pytest.raises(ValueError, match="q=101"):
        percentile([1.0], 101)


def test_ratio_is_none_when_it_cannot_be_computed() -> None:
    assert ratio(6.0, 3.0) == 2.0
    assert ratio(6.0, 0.0) is None
    assert ratio(None, 3.0) is None
    assert ratio(6.0, math.nan) is None


def test_summarize_reports_milliseconds_and_successful_throughput() -> None:
    summary = summarize([0.010, 0.020, 0.030, 0.040], errors=1, duration_s=2.0)
    assert summary.requests == 5 and summary.ok == 4 and summary.errors == 1
    assert summary.throughput_rps == 2.0
    assert summary.p50_ms == pytest.approx(25.0)
    assert summary.max_ms == pytest.approx(40.0)


def test_summarize_texts_per_second_counts_batch_items() -> None:
    assert summarize([0.1] * 10, errors=0, duration_s=5.0, texts_per_request=16).texts_per_s == 32.0


def test_summarize_with_no_success_has_no_latency() -> None:
    summary = summarize([], errors=3, duration_s=1.0)
    assert summary.p99_ms is None and summary.throughput_rps == 0.0
