"""calibrate_threshold keeps its promise: the true false-positive rate is within target
with the stated confidence, by construction (brute force) and in simulation."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

from fairgate.guardrails.calibration import (
    CalibrationError,
    binomial_cdf,
    calibrate_threshold,
    clopper_pearson_upper,
    min_calibration_size,
    order_statistic_rank,
    recall_at,
    split_budget,
)
from fairgate.guardrails.calibration_simulate import simulate_calibration


@pytest.mark.parametrize(
    ("distribution", "n", "max_rate"),
    [("logit-normal", 1000, 0.01), ("heavy-tail", 500, 0.05), ("beta-like", 2000, 0.01), ("tied", 1000, 0.01)],
)
def test_true_rate_is_within_target_in_at_least_95_percent_of_seeds(distribution: str, n: int, max_rate: float):
    result = simulate_calibration(distribution=distribution, n=n, max_rate=max_rate, confidence=0.95, seeds=300)
    assert result.coverage >= 0.95
    assert result.holds


def test_simulated_failures_match_the_exact_bound_for_continuous_scores():
    # For continuous scores P(true rate > target) equals the bound: the simulation can see a wrong k.
    result = simulate_calibration(distribution="logit-normal", n=300, max_rate=0.01, confidence=0.95, seeds=600)
    failures = result.seeds - result.covered
    expected = result.failure_bound * result.seeds
    assert abs(failures - expected) <= 4 * math.sqrt(expected * (1 - result.failure_bound))


def test_joint_split_keeps_the_promise_for_any_of_three_categories():
    result = simulate_calibration(
        distribution="heavy-tail", n=1000, max_rate=0.05, confidence=0.95, seeds=200, categories=3
    )
    assert result.coverage >= 0.95
    assert result.failure_bound <= 0.05


def _brute_force_rank(n: int, max_rate: float, confidence: float) -> int:
    p, delta = Fraction(max_rate), 1 - Fraction(confidence)
    best, cdf = 0, Fraction(0)  # cdf = P(Binom(n, p) <= k - 1)
    for k in range(1, n + 1):
        cdf += math.comb(n, k - 1) * p ** (k - 1) * (1 - p) ** (n - k + 1)
        if cdf > delta:
            break
        best = k
    return best


def test_rank_matches_a_brute_force_binomial_bound_for_small_n():
    for n in range(1, 41):
        for max_rate in (0.05, 0.1, 0.25):
            for confidence in (0.5, 0.8, 0.9, 0.95):
                expected = _brute_force_rank(n, max_rate, confidence)
                assert order_statistic_rank(n=n, max_rate=max_rate, confidence=confidence) == expected, (
                    n, max_rate, confidence
                )


def test_binomial_cdf_matches_the_exact_sum():
    for n, p, x in ((10, 0.3, 2), (40, 0.05, 0), (200, 0.01, 3), (7, 0.9, 6)):
        exact = sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(x + 1))
        assert binomial_cdf(x, n=n, p=p) == pytest.approx(exact, rel=1e-10)


def test_threshold_sits_one_float_above_the_kth_largest_score():
    scores = np.random.default_rng(1).random(1000)
    result = calibrate_threshold(scores, max_rate=0.01, confidence=0.95)
    kth = np.sort(scores)[::-1][result.k - 1]
    assert result.k == 5
    assert result.threshold == np.nextafter(kth, np.inf)
    assert result.flagged == result.k - 1 == int((scores >= result.threshold).sum())
    assert result.empirical_rate == pytest.approx(0.004)


def test_higher_confidence_gives_a_higher_threshold():
    scores = np.random.default_rng(2).beta(2, 8, size=2000)
    results = [calibrate_threshold(scores, max_rate=0.02, confidence=c) for c in (0.6, 0.8, 0.95, 0.999)]
    thresholds = [r.threshold for r in results]
    assert thresholds == sorted(thresholds)
    assert thresholds[0] < thresholds[-1]
    assert [r.k for r in results] == sorted((r.k for r in results), reverse=True)


def test_upper_bound_of_the_chosen_threshold_stays_within_target():
    for seed in range(20):
        scores = np.random.default_rng(seed).random(300 + 97 * seed)
        result = calibrate_threshold(scores, max_rate=0.03, confidence=0.9)
        assert result.failure_bound <= 0.1
        assert result.empirical_rate <= result.rate_upper_bound <= 0.03


def test_clopper_pearson_upper_with_no_events_is_the_closed_form():
    assert clopper_pearson_upper(0, n=10, confidence=0.95) == pytest.approx(1 - 0.05 ** (1 / 10), rel=1e-9)


def test_too_few_scores_raise_naming_n_and_the_minimum():
    assert min_calibration_size(max_rate=0.01, confidence=0.95) == 299
    with pytest.raises(CalibrationError, match=r"n=50 benign scores are too few .* at least n=299"):
        calibrate_threshold(np.linspace(0, 1, 50), max_rate=0.01, confidence=0.95)
    with pytest.raises(CalibrationError, match="at least n=299"):
        calibrate_threshold(np.linspace(0, 1, 298), max_rate=0.01, confidence=0.95)


def test_the_minimum_n_gives_a_threshold_above_every_score():
    scores = np.linspace(0, 0.7, 299)
    result = calibrate_threshold(scores, max_rate=0.01, confidence=0.95)
    assert result.k == 1 and result.flagged == 0
    assert result.threshold == np.nextafter(0.7, 1.0)


def test_ties_at_the_kth_score_flag_fewer_items_not_more():
    scores = np.array([0.9] * 3 + [0.5] * 10 + [0.1] * 987)  # k = 5 lands inside the tie at 0.5
    result = calibrate_threshold(scores, max_rate=0.01, confidence=0.95)
    assert result.k == 5
    assert result.threshold == np.nextafter(0.5, 1.0)
    assert result.flagged == 3


def test_nan_scores_raise_naming_the_count_and_rows():
    with pytest.raises(CalibrationError, match=r"2 of 5 scores are NaN or infinite \(rows 1, 3\); drop or rescore"):
        calibrate_threshold([0.1, math.nan, 0.2, math.inf, 0.3], max_rate=0.01, confidence=0.95)


def test_empty_scores_raise_asking_for_a_sample():
    with pytest.raises(CalibrationError, match=r"no benign scores .*\(at least 299\)"):
        calibrate_threshold([], max_rate=0.01, confidence=0.95)


def test_targets_outside_zero_one_raise():
    with pytest.raises(CalibrationError, match=r"max_rate=1\.5 must be strictly between 0 and 1"):
        calibrate_threshold([0.1] * 500, max_rate=1.5, confidence=0.95)


def test_recall_counts_scores_at_or_above_the_threshold():
    assert recall_at([0.1, 0.5, 0.9], 0.5) == pytest.approx(2 / 3)
    assert math.isnan(recall_at([], 0.5))


def test_split_budget_divides_rate_and_failure_chance():
    rate, confidence = split_budget(max_rate=0.01, confidence=0.95, parts=5)
    assert rate == pytest.approx(0.002)
    assert confidence == pytest.approx(0.99)
