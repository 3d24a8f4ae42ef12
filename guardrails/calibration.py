"""Thresholds with a stated false-positive guarantee, from a sample of benign scores.

A guard's scores move with the domain, so a threshold that blocks 1% of benign text in
one product may block 10% in another. ``calibrate_threshold`` turns the user's own benign
sample into a threshold with a distribution-free promise: for i.i.d. texts like the
sample, the *true* rate of ``score >= threshold`` exceeds ``max_rate`` with probability at
most ``1 - confidence`` (over the draw of the sample). It needs only numpy and the
standard library (the binomial tail is computed here in log space): scipy is not a
serving dependency.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = [
    "METHOD",
    "CalibratedThreshold",
    "CalibrationError",
    "binomial_cdf",
    "calibrate_threshold",
    "clopper_pearson_upper",
    "min_calibration_size",
    "order_statistic_rank",
    "recall_at",
    "split_budget",
]

METHOD = "order-statistic binomial bound (threshold just above the k-th largest benign score)"

_ScoresLike = Sequence[float] | npt.NDArray[np.floating] | npt.NDArray[np.integer]


class CalibrationError(ValueError):
    """Calibration cannot give the promised guarantee; the message names the value and the fix."""


@dataclass(frozen=True, kw_only=True)
class CalibratedThreshold:
    """A threshold and the evidence behind it.

    ``k`` is the rank of the order statistic: the threshold sits just above the k-th
    largest benign score, so at most ``k - 1`` calibration scores reach it (``flagged``,
    fewer when scores tie at the k-th). ``failure_bound`` is ``P(Binom(n, max_rate) <= k-1)``,
    the proven bound on the chance that the true rate exceeds ``max_rate``
    (``<= 1 - confidence``). ``rate_upper_bound`` is the one-sided Clopper-Pearson upper
    limit, at ``confidence``, of the rate given ``flagged`` of ``n``; by the choice of k it
    never exceeds ``max_rate``.
    """

    threshold: float
    max_rate: float
    confidence: float
    n: int
    k: int
    flagged: int
    empirical_rate: float
    rate_upper_bound: float
    failure_bound: float
    method: str = METHOD


def _check_level(*, max_rate: float, confidence: float) -> None:
    if not 0.0 < max_rate < 1.0 or math.isnan(max_rate):
        raise CalibrationError(f"max_rate={max_rate} must be strictly between 0 and 1, e.g. 0.01")
    if not 0.0 < confidence < 1.0 or math.isnan(confidence):
        raise CalibrationError(f"confidence={confidence} must be strictly between 0 and 1, e.g. 0.95")


def _log_comb(n: int, upto: int) -> npt.NDArray[np.float64]:
    """``log C(n, i)`` for ``i = 0..upto``, as a running sum of log ratios (no lgamma per term)."""
    i = np.arange(upto, dtype=np.float64)
    return np.concatenate(([0.0], np.cumsum(np.log(n - i) - np.log1p(i))))


def _log_terms(log_comb: npt.NDArray[np.float64], n: int, p: float) -> npt.NDArray[np.float64]:
    """``log P(Binom(n, p) = i)`` for ``i = 0..len(log_comb)-1``, for 0 < p < 1."""
    i = np.arange(log_comb.size, dtype=np.float64)
    terms: npt.NDArray[np.float64] = log_comb + i * math.log(p) + (n - i) * math.log1p(-p)
    return terms


def _cdf_from_terms(terms: npt.NDArray[np.float64]) -> float:
    top = float(terms.max())
    return min(1.0, math.exp(top) * float(np.exp(terms - top).sum()))


def binomial_cdf(x: int, *, n: int, p: float) -> float:
    """``P(Binom(n, p) <= x)``, summed in log space so large n neither under- nor overflows."""
    if n < 0:
        raise CalibrationError(f"n={n} must be >= 0")
    if x < 0:
        return 0.0
    if x >= n or p <= 0.0:
        return 1.0
    if p >= 1.0:
        return 0.0
    return _cdf_from_terms(_log_terms(_log_comb(n, x), n, p))


def order_statistic_rank(*, n: int, max_rate: float, confidence: float) -> int:
    """The largest ``k`` with ``P(Binom(n, max_rate) <= k - 1) <= 1 - confidence``; 0 if none.

    Computed once for all k: the log CDF is a running log-sum-exp of the terms.
    """
    _check_level(max_rate=max_rate, confidence=confidence)
    if n <= 0:
        return 0
    target = math.log1p(-confidence)
    # The answer is rarely far above the mean n * max_rate: look there first, all of 0..n if not.
    spread = math.sqrt(n * max_rate * (1.0 - max_rate))
    window = min(n, math.ceil(n * max_rate + 12.0 * spread + 12.0))
    for upto in (window, n) if window < n else (n,):
        log_cdf = np.logaddexp.accumulate(_log_terms(_log_comb(n, upto), n, max_rate))
        # k - 1 ranges over the x with log CDF(x) <= log(1 - confidence): a prefix of 0..upto.
        k = int(np.searchsorted(log_cdf, target, side="right"))
        if k <= upto:  # the CDF crossed the level inside 0..upto
            break
    return min(k, n)  # CDF(n) = 1 > 1 - confidence, so k <= n


def min_calibration_size(*, max_rate: float, confidence: float) -> int:
    """The smallest n for which any threshold carries the guarantee (k = 1 exists).

    k = 1 needs ``(1 - max_rate)^n <= 1 - confidence``: ``n >= log(1-confidence) / log(1-max_rate)``.
    """
    _check_level(max_rate=max_rate, confidence=confidence)
    n = max(1, math.ceil(math.log1p(-confidence) / math.log1p(-max_rate)))
    while n > 1 and (n - 1) * math.log1p(-max_rate) <= math.log1p(-confidence):
        n -= 1  # guard the ceil against rounding on either side
    while n * math.log1p(-max_rate) > math.log1p(-confidence):
        n += 1
    return n


def clopper_pearson_upper(flagged: int, *, n: int, confidence: float) -> float:
    """One-sided Clopper-Pearson upper limit of a rate: the p with ``P(Binom(n, p) <= flagged) = 1 - confidence``."""
    if not 0 <= flagged <= n or n <= 0:
        raise CalibrationError(f"flagged={flagged} must be between 0 and n={n}, with n >= 1")
    if flagged == n:
        return 1.0
    log_comb = _log_comb(n, flagged)  # the same for every p: compute once
    target = math.log1p(-confidence)
    low, high = 0.0, 1.0
    p = min(0.5, (flagged + 1) / n)
    for _ in range(200):  # Newton on log CDF(p) - log(1 - confidence), kept inside a bracket
        terms = _log_terms(log_comb, n, p)
        top = float(terms.max())
        log_cdf = top + math.log(float(np.exp(terms - top).sum()))
        gap = log_cdf - target
        if gap > 0.0:
            low = p  # the CDF is still above 1 - confidence: the limit lies higher
        else:
            high = p
        if high - low <= 1e-12 * high:
            break
        # d/dp P(Binom(n, p) <= x) = -(n - x) C(n, x) p^x (1 - p)^(n - x - 1)
        log_density = (
            math.log(n - flagged) + float(log_comb[flagged]) + flagged * math.log(p) + (n - flagged - 1) * math.log1p(-p)
        )
        candidate = p + gap / math.exp(log_density - log_cdf)
        tolerance = 0.5e-12 * high
        if abs(candidate - p) < tolerance:  # converged from one side: step across to close the bracket
            candidate = p + (tolerance if gap > 0.0 else -tolerance)
        if not low < candidate < high:
            candidate = 0.5 * (low + high)
        p = candidate
    return high  # the conservative side of the bracket


def _clean_scores(scores: _ScoresLike, *, what: str) -> npt.NDArray[np.float64]:
    values = np.asarray(scores, dtype=np.float64)
    if values.ndim != 1:
        raise CalibrationError(f"{what} must be one score per text (1-D), got shape {values.shape}; pass one column")
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        rows = ", ".join(str(int(i)) for i in bad[:5]) + (", ..." if bad.size > 5 else "")
        raise CalibrationError(
            f"{what}: {bad.size} of {values.size} scores are NaN or infinite (rows {rows}); "
            "drop or rescore those texts"
        )
    return values


def calibrate_threshold(benign_scores: _ScoresLike, *, max_rate: float, confidence: float) -> CalibratedThreshold:
    """The lowest order-statistic threshold whose true benign rate is ``<= max_rate`` with probability ``>= confidence``.

    Construction: sort the n scores descending, take the largest k with
    ``P(Binom(n, max_rate) <= k-1) <= 1 - confidence`` and nudge the k-th largest score S_(k)
    up by one float (``np.nextafter``), so ``score >= threshold`` means ``score > S_(k)``.
    Proof: let q be the smallest x with ``P(S > x) <= max_rate``. The true rate P(S > S_(k))
    exceeds max_rate only if S_(k) < q, i.e. if at most k-1 of the n scores are >= q; each
    is, independently, with probability P(S >= q) >= max_rate, so this happens with
    probability <= P(Binom(n, max_rate) <= k-1) <= 1 - confidence. Ties need no care: they
    only make fewer calibration scores reach the threshold (the bound is exact for continuous scores).

    Raises :class:`CalibrationError` for empty input, NaN/infinite scores, or when n is
    below :func:`min_calibration_size` (no threshold, not even one above every score, is
    proven; a silent "blocks nothing seen" would be a threshold without the promise).
    """
    _check_level(max_rate=max_rate, confidence=confidence)
    values = _clean_scores(benign_scores, what="benign scores")
    n = int(values.size)
    if n == 0:
        raise CalibrationError(
            "no benign scores to calibrate on; pass a sample of benign texts like your traffic "
            f"(at least {min_calibration_size(max_rate=max_rate, confidence=confidence)})"
        )
    k = order_statistic_rank(n=n, max_rate=max_rate, confidence=confidence)
    if k == 0:
        needed = min_calibration_size(max_rate=max_rate, confidence=confidence)
        raise CalibrationError(
            f"n={n} benign scores are too few to bound the rate by {max_rate:g} at "
            f"{confidence:g} confidence: it needs at least n={needed} "
            f"(log(1-confidence)/log(1-max_rate)); add benign texts, or raise the rate or lower the confidence"
        )
    ordered = np.sort(values)[::-1]
    threshold = float(np.nextafter(ordered[k - 1], np.inf))
    flagged = int(np.count_nonzero(values >= threshold))
    return CalibratedThreshold(
        threshold=threshold,
        max_rate=max_rate,
        confidence=confidence,
        n=n,
        k=k,
        flagged=flagged,
        empirical_rate=flagged / n,
        rate_upper_bound=clopper_pearson_upper(flagged, n=n, confidence=confidence),
        failure_bound=binomial_cdf(k - 1, n=n, p=max_rate),
    )


def recall_at(toxic_scores: _ScoresLike, threshold: float) -> float:
    """Share of toxic scores at or above ``threshold``; NaN when there are none (undefined, not 0)."""
    values = _clean_scores(toxic_scores, what="toxic scores")
    if values.size == 0:
        return math.nan
    return float(np.count_nonzero(values >= threshold)) / float(values.size)


def split_budget(*, max_rate: float, confidence: float, parts: int) -> tuple[float, float]:
    """Per-part ``(max_rate, confidence)`` so that the guarantee holds for the union of the parts.

    Bonferroni twice: if every part's rate is <= max_rate/parts, the rate of "any part fires"
    is <= max_rate; and if every part fails with probability <= (1-confidence)/parts, all
    hold at once with probability >= confidence. Splitting only the rate would leave each
    part's 5% failure chance to add up.
    """
    _check_level(max_rate=max_rate, confidence=confidence)
    if parts < 1:
        raise CalibrationError(f"parts={parts} must be >= 1 (the number of categories)")
    return max_rate / parts, 1.0 - (1.0 - confidence) / parts
