"""The simulation behind ``calibrate_threshold``'s promise: does it hold on known distributions?

Each seed draws n synthetic benign scores from a distribution whose survival function
``P(score >= t)`` is known in closed form, calibrates on them with the real
:func:`~fairgate.guardrails.calibration.calibrate_threshold`, and computes the *true*
false-positive rate at the chosen threshold from the formula, with no sampling noise.
The share of seeds whose true rate is within the target must be at least the confidence.
``categories > 1`` checks the joint (Bonferroni) form: independent categories, each
calibrated with :func:`~fairgate.guardrails.calibration.split_budget`, and the true rate of
"any category fires" ``1 - prod(1 - rate_j)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from fairgate.guardrails.calibration import binomial_cdf, calibrate_threshold, min_calibration_size, split_budget

__all__ = ["DISTRIBUTIONS", "CalibrationSimulation", "ScoreDistribution", "required_n", "simulate_calibration"]

_Sampler = Callable[[np.random.Generator, int], npt.NDArray[np.float64]]


@dataclass(frozen=True, kw_only=True)
class ScoreDistribution:
    """A synthetic benign score distribution on [0, 1] with a closed-form ``survival(t) = P(S >= t)``."""

    name: str
    description: str
    sample: _Sampler
    survival: Callable[[float], float]


def _normal_upper(z: float) -> float:
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def _logit(t: float) -> float:
    return math.log(t) - math.log1p(-t)


def _logit_normal(mu: float, sigma: float) -> tuple[_Sampler, Callable[[float], float]]:
    """sigmoid(N(mu, sigma)): what a classifier's sigmoid of a roughly normal logit looks like."""

    def sample(rng: np.random.Generator, n: int) -> npt.NDArray[np.float64]:
        z = rng.normal(mu, sigma, size=n)
        out: npt.NDArray[np.float64] = 1.0 / (1.0 + np.exp(-z))
        return out

    def survival(t: float) -> float:
        if t <= 0.0:
            return 1.0
        if t >= 1.0:
            return 0.0
        return _normal_upper((_logit(t) - mu) / sigma)

    return sample, survival


def _mixture(weight: float, first: tuple[float, float], second: tuple[float, float]) -> ScoreDistribution:
    sample_a, survival_a = _logit_normal(*first)
    sample_b, survival_b = _logit_normal(*second)

    def sample(rng: np.random.Generator, n: int) -> npt.NDArray[np.float64]:
        from_b = rng.random(n) < weight
        return np.where(from_b, sample_b(rng, n), sample_a(rng, n))

    return ScoreDistribution(
        name="heavy-tail",
        description=f"{1 - weight:g} sigmoid(N{first}) + {weight:g} sigmoid(N{second}): a borderline minority",
        sample=sample,
        survival=lambda t: (1 - weight) * survival_a(t) + weight * survival_b(t),
    )


def _kumaraswamy(a: float, b: float) -> ScoreDistribution:
    """Beta-like on [0, 1] with a closed-form CDF ``1 - (1 - x^a)^b`` (no incomplete beta needed)."""

    def sample(rng: np.random.Generator, n: int) -> npt.NDArray[np.float64]:
        u = rng.random(n)
        out: npt.NDArray[np.float64] = (1.0 - (1.0 - u) ** (1.0 / b)) ** (1.0 / a)
        return out

    def survival(t: float) -> float:
        if t <= 0.0:
            return 1.0
        return 0.0 if t > 1.0 else float((1.0 - t**a) ** b)

    return ScoreDistribution(
        name="beta-like",
        description=f"Kumaraswamy(a={a:g}, b={b:g}): beta-shaped, mass near 0, long right tail",
        sample=sample,
        survival=survival,
    )


def _rounded(mu: float, sigma: float, steps: int) -> ScoreDistribution:
    """Logit-normal scores floored to a grid of ``1/steps``: many ties, a step survival function."""
    sample_x, survival_x = _logit_normal(mu, sigma)

    def sample(rng: np.random.Generator, n: int) -> npt.NDArray[np.float64]:
        out: npt.NDArray[np.float64] = np.floor(sample_x(rng, n) * steps) / steps
        return out

    def survival(t: float) -> float:
        # The smallest grid value j/steps >= t, computed as sampling computes grid values.
        j = max(0, math.ceil(t * steps) - 1)
        while j / steps < t:
            j += 1
        return survival_x(j / steps)

    return ScoreDistribution(
        name="tied",
        description=f"sigmoid(N({mu:g}, {sigma:g})) floored to multiples of 1/{steps}: heavy ties",
        sample=sample,
        survival=survival,
    )


def _plain_logit_normal() -> ScoreDistribution:
    sample, survival = _logit_normal(-3.0, 1.2)
    return ScoreDistribution(
        name="logit-normal",
        description="sigmoid(N(-3, 1.2)): a guard's scores on clean benign text",
        sample=sample,
        survival=survival,
    )


def _distributions() -> dict[str, ScoreDistribution]:
    items = (
        _plain_logit_normal(),
        _mixture(0.1, (-4.0, 1.0), (0.0, 2.5)),
        _kumaraswamy(0.5, 3.0),
        _rounded(-3.0, 1.2, 100),
    )
    return {d.name: d for d in items}


DISTRIBUTIONS: tuple[str, ...] = ("logit-normal", "heavy-tail", "beta-like", "tied")


@dataclass(frozen=True, kw_only=True)
class CalibrationSimulation:
    """How often the calibrated threshold kept its promise over ``seeds`` draws.

    ``coverage`` is the share of seeds whose true rate was ``<= max_rate``; the promise is
    ``coverage >= confidence`` up to the noise of a finite number of seeds.
    ``failure_bound`` is the proven bound on the failure chance (per category when
    ``categories > 1``, times ``categories`` for the union); for continuous scores and
    one category it is the exact failure chance, so ``coverage`` scatters around
    ``1 - failure_bound``. ``p_value`` is the chance of at least this many failing seeds
    if the failure chance were exactly ``1 - confidence``: below 0.001 the promise is broken,
    not unlucky.
    """

    distribution: str
    description: str
    n: int
    max_rate: float
    confidence: float
    categories: int
    seeds: int
    covered: int
    coverage: float
    failure_bound: float
    true_rate_mean: float
    true_rate_median: float
    true_rate_max: float
    empirical_rate_mean: float
    threshold_mean: float
    p_value: float

    @property
    def holds(self) -> bool:
        """Whether the failing seeds are consistent with the promise (``p_value >= 0.001``)."""
        return self.p_value >= 0.001


def simulate_calibration(
    *,
    distribution: str,
    n: int,
    max_rate: float,
    confidence: float,
    seeds: int = 1000,
    seed: int = 0,
    categories: int = 1,
) -> CalibrationSimulation:
    """Calibrate on ``seeds`` synthetic samples of size n and measure each threshold's true rate.

    Raises :class:`~fairgate.guardrails.calibration.CalibrationError` (from the calibration
    itself) when n is too small for the targets, and ``KeyError`` naming the choices for an
    unknown distribution.
    """
    table = _distributions()
    if distribution not in table:
        raise KeyError(f"unknown distribution {distribution!r}; use one of {', '.join(DISTRIBUTIONS)}")
    if seeds < 1:
        raise ValueError(f"seeds={seeds} must be >= 1")
    dist = table[distribution]
    part_rate, part_confidence = split_budget(max_rate=max_rate, confidence=confidence, parts=categories)
    rng = np.random.default_rng(seed)
    true_rates = np.empty(seeds)
    empirical = np.empty(seeds)
    thresholds = np.empty(seeds)
    failure = 0.0
    for s in range(seeds):
        fired_none = 1.0
        flagged_any = np.zeros(n, dtype=bool)
        for _ in range(categories):
            scores = dist.sample(rng, n)
            result = calibrate_threshold(scores, max_rate=part_rate, confidence=part_confidence)
            fired_none *= 1.0 - dist.survival(result.threshold)
            flagged_any |= scores >= result.threshold
            failure = result.failure_bound
            thresholds[s] = result.threshold
        true_rates[s] = 1.0 - fired_none
        empirical[s] = float(flagged_any.mean())
    covered = int(np.count_nonzero(true_rates <= max_rate))
    return CalibrationSimulation(
        distribution=dist.name,
        description=dist.description,
        n=n,
        max_rate=max_rate,
        confidence=confidence,
        categories=categories,
        seeds=seeds,
        covered=covered,
        coverage=covered / seeds,
        failure_bound=min(1.0, failure * categories),
        true_rate_mean=float(true_rates.mean()),
        true_rate_median=float(np.median(true_rates)),
        true_rate_max=float(true_rates.max()),
        empirical_rate_mean=float(empirical.mean()),
        threshold_mean=float(thresholds.mean()),
        p_value=1.0 - binomial_cdf(seeds - covered - 1, n=seeds, p=1.0 - confidence),
    )


def required_n(*, max_rate: float, confidence: float, categories: int = 1) -> int:
    """The smallest n the simulation (and calibration) accepts for these targets."""
    part_rate, part_confidence = split_budget(max_rate=max_rate, confidence=confidence, parts=categories)
    return min_calibration_size(max_rate=part_rate, confidence=part_confidence)
