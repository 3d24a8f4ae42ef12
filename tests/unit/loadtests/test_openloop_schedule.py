"""The open-loop schedule: send times for a constant arrival rate, bounded by time and count."""

from __future__ import annotations

import itertools
import math

import pytest

from loadtests._drivers import arrival_offsets


def test_uniform_arrivals_are_exactly_one_over_rate_apart() -> None:
    offsets = arrival_offsets(rate=50.0, duration_s=2.0, max_requests=10_000)
    assert len(offsets) == 100
    gaps = [b - a for a, b in itertools.pairwise(offsets)]
    assert all(math.isclose(gap, 0.02) for gap in gaps)
    assert offsets[0] == 0.0
    assert offsets[-1] < 2.0


def test_uniform_arrivals_stop_at_the_request_cap() -> None:
    assert len(arrival_offsets(rate=1000.0, duration_s=10.0, max_requests=7)) == 7


def test_fractional_rate_rounds_the_count_up_within_the_duration() -> None:
    offsets = arrival_offsets(rate=2.5, duration_s=1.0, max_requests=100)
    assert offsets == [0.0, 0.4, 0.8]


def test_poisson_arrivals_keep_the_average_rate_and_the_bounds() -> None:
    offsets = arrival_offsets(rate=200.0, duration_s=20.0, max_requests=100_000, arrival="poisson", seed=3)
    assert all(0.0 <= t < 20.0 for t in offsets)
    assert offsets == sorted(offsets)
    assert 3600 < len(offsets) < 4400  # 4000 expected, sd ~63
    gaps = [b - a for a, b in itertools.pairwise(offsets)]
    assert max(gaps) > 3 * (1 / 200.0)  # bursts and lulls, unlike the uniform schedule


def test_poisson_arrivals_are_reproducible_for_a_seed() -> None:
    first = arrival_offsets(rate=30.0, duration_s=3.0, max_requests=1000, arrival="poisson", seed=1)
    second = arrival_offsets(rate=30.0, duration_s=3.0, max_requests=1000, arrival="poisson", seed=1)
    assert first == second


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rate": 0.0, "duration_s": 1.0, "max_requests": 1}, "rate=0.0 must be a positive"),
        ({"rate": 1.0, "duration_s": 0.0, "max_requests": 1}, "duration_s=0.0 must be positive"),
        ({"rate": 1.0, "duration_s": 1.0, "max_requests": 0}, "max_requests=0 must be at least 1"),
        ({"rate": 1.0, "duration_s": 1.0, "max_requests": 1, "arrival": "bursty"}, "'uniform' or 'poisson'"),
    ],
)
def test_bad_schedule_arguments_are_named(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        arrival_offsets(**kwargs)
