"""The domain-shift monitor: is the traffic still the domain the classifier was fine-tuned on?

Every classified item gets a score (:meth:`DomainReference.score`, one matrix product per
batch) relative to the build-time ``quantile`` of in-domain validation scores: above 1 it is
out of domain. A window (policy ``domain.window``) keeps whether each item was; a check
runs ``checks_per_window`` times per window length, like the rate monitors' schedule.

The test is the rate monitors' (:mod:`fairgate.guardrails._stats`): the share ``p`` of
out-of-domain items is compared with ``p0``, the exact (Clopper-Pearson) upper limit at
``confidence`` of the share among the ``n`` validation items. ``p0`` rather than ``1 - quantile`` because
the threshold is itself estimated from ``n`` items: with 500 of them, the true
exceedance of the empirical 0.99 quantile (the 495th of 500) is Beta(6, 495)
distributed, mean 0.012 and standard deviation 0.005, and testing against 0.01 would
alarm on in-domain traffic whenever it came out high. ``p0`` is that Beta's ``confidence``
quantile, so the build's true exceedance is at most ``p0`` with probability ``confidence``
over its validation sample (a Wilson limit there under-covered: 5-7% of simulated builds
had a true exceedance above it). An alert is raised when the window's Wilson lower limit
at ``alpha / checks_per_window`` (``alpha = 1 - confidence``, Bonferroni over the checks of
one window length) is above ``p0``: while in-domain traffic has ``p <= p0``, the chance of
a false alarm in any stretch of one window length is at most ``alpha`` (for the builds,
a share ``confidence`` of them, whose validation sample did not under-estimate ``p0``). It is cleared when
the window's share itself falls back to ``p0`` or below; the gap between a lower limit
(raise) and the point estimate (clear) is the hysteresis.

Windows and alert state are this worker's (an in-process window store): each worker
tests its own traffic, so a fleet's false-alarm budget is per worker.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from fairgate.guardrails._stats import wilson, z_one_sided
from fairgate.guardrails.calibration import clopper_pearson_upper
from fairgate.guardrails.decision import DomainStatus, Reason
from fairgate.guardrails.domain import DomainReference, Threshold
from fairgate.guardrails.metrics import GuardMetrics
from fairgate.guardrails.policy import DomainPolicy
from fairgate.guardrails.store import InMemoryWindowStore, WindowCounts, WindowSpec, WindowStore, window_key

__all__ = ["DOMAIN_MONITOR", "DomainCheck", "DomainMonitor", "DomainReview", "off_status"]

logger = logging.getLogger(__name__)

Clock = Callable[[], float]
DOMAIN_MONITOR = "domain"
_KEY = window_key(DOMAIN_MONITOR, "all")


@dataclass(frozen=True, slots=True)
class DomainCheck:
    """One check: the window's counts, its share's lower limit, the bound, and the outcome."""

    n: int
    out_of_domain: int
    share: float
    share_lower: float
    expected: float
    status: str  # "ok" | "alert" | "insufficient_samples"
    raised: bool
    cleared: bool


@dataclass(frozen=True, slots=True)
class DomainReview:
    """One batch: each row's relative score (NaN: not scored) and the reason to add, if any."""

    scores: np.ndarray
    reasons: tuple[Reason | None, ...]


class DomainMonitor:
    """Scores, window, test and alert state of the domain-shift monitor in one process.

    Dependencies are passed in: the model's :class:`DomainReference` (for the variant being
    served), the policy section, the guard's metrics, the clock and the window store
    (in-process by default). Not thread-safe on its own: the guard calls it under its lock.
    """

    def __init__(
        self,
        *,
        reference: DomainReference,
        policy: DomainPolicy,
        metrics: GuardMetrics,
        clock: Clock = time.monotonic,
        store: WindowStore | None = None,
    ) -> None:
        self.reference = reference
        self.policy = policy
        self._metrics = metrics
        self._clock = clock
        self._store: WindowStore = store if store is not None else InMemoryWindowStore()
        self.threshold: Threshold = reference.threshold(policy.quantile)
        if not self.threshold.value > 0:
            raise ValueError(
                f"the domain threshold at quantile {policy.quantile} is {self.threshold.value}; "
                "the model's validation scores are degenerate, rebuild its domain statistics"
            )
        self.expected = clopper_pearson_upper(self.threshold.exceed, n=self.threshold.n, confidence=policy.confidence)
        self._z = z_one_sided((1.0 - policy.confidence) / policy.checks_per_window)
        self._spec = WindowSpec(size=policy.window.size, seconds=policy.window.seconds)
        size, seconds = policy.window.size, policy.window.seconds
        self._every_n = max(1, math.ceil(size / policy.checks_per_window)) if size is not None else None
        self._every_s = float(seconds) / policy.checks_per_window if size is None and seconds is not None else None
        self._recorded = 0
        self._slot: int | None = None
        self.active = False
        self.alerts_raised = 0
        self.checks = 0
        self.last: DomainCheck | None = None
        metrics.domain_alert.set(0)
        metrics.domain_expected.set(self.expected)
        # The series exists from the start (NaN: nothing checked yet), so traffic never adds one.
        metrics.domain_share.set(math.nan)

    def scores(self, embeddings: np.ndarray) -> np.ndarray:
        """Relative scores ``[n]`` (distance over the threshold); NaN for rows that are not finite."""
        x = np.asarray(embeddings, dtype=np.float64)
        out = np.full(len(x), np.nan)
        rows = np.all(np.isfinite(x), axis=1) if x.ndim == 2 else np.zeros(len(x), dtype=bool)
        if rows.any():
            out[rows] = self.reference.score(x[rows]) / self.threshold.value
        return out

    def review(self, embeddings: np.ndarray) -> DomainReview:
        """Score a batch (rows of NaN: items not classified), record it, check when due.

        Returns each row's score and, with ``action: flag`` while the alert is active, a
        flag reason for the rows that are out of domain.
        """
        scores = self.scores(embeddings)
        seen = scores[~np.isnan(scores)]
        for value in seen:
            self._metrics.domain_score.observe(float(value))
        if len(seen):
            now = self._clock()
            self._store.add({_KEY: [1 if v > 1.0 else 0 for v in seen]}, now=now, spec=self._spec)
            if self._due(len(seen), now):
                self.check(now)
        reasons: list[Reason | None] = [None] * len(scores)
        if self.active and self.policy.action == "flag":
            reasons = [self._reason(float(v)) if v > 1.0 else None for v in scores]
        return DomainReview(scores=scores, reasons=tuple(reasons))

    def _due(self, added: int, now: float) -> bool:
        before, self._recorded = self._recorded, self._recorded + added
        if self._every_n is not None:
            return self._recorded // self._every_n > before // self._every_n
        assert self._every_s is not None
        slot = math.floor(now / self._every_s)
        due = self._slot is not None and slot != self._slot
        self._slot = slot
        return due

    def counts(self, now: float | None = None) -> WindowCounts:
        at = self._clock() if now is None else now
        return self._store.counts([_KEY], now=at, spec=self._spec)[_KEY]

    def check(self, now: float | None = None) -> DomainCheck:
        """Test the window now; raise or clear the alert; export the gauges."""
        counts = self.counts(now)
        lower, _ = wilson(counts.positives, counts.n, self._z)
        raised = cleared = False
        if counts.n < self.policy.min_samples:
            status = "alert" if self.active else "insufficient_samples"
        else:
            if not self.active and lower > self.expected:
                self.active, raised = True, True
                self.alerts_raised += 1
                logger.warning(
                    "domain monitor: alert raised: %d of %d items (%.1f%%, lower limit %.1f%%) above the "
                    "%.3g quantile of in-domain scores, expected at most %.1f%%",
                    counts.positives, counts.n, 100 * counts.rate, 100 * lower, self.policy.quantile,
                    100 * self.expected,
                )
            elif self.active and counts.rate <= self.expected:
                self.active, cleared = False, True
                logger.info("domain monitor: alert cleared: share %.1f%% <= %.1f%%", 100 * counts.rate,
                            100 * self.expected)
            status = "alert" if self.active else "ok"
        self.checks += 1
        self.last = DomainCheck(
            n=counts.n,
            out_of_domain=counts.positives,
            share=counts.rate,
            share_lower=lower if counts.n else float("nan"),
            expected=self.expected,
            status=status,
            raised=raised,
            cleared=cleared,
        )
        self._metrics.domain_share.set(counts.rate)
        self._metrics.domain_alert.set(1 if self.active else 0)
        return self.last

    def _reason(self, score: float) -> Reason:
        last = self.last
        share = last.share if last is not None else float("nan")
        return Reason(
            monitor=DOMAIN_MONITOR,
            stage="review",
            code="domain_shift",
            action="flag",
            value=round(score, 6),
            threshold=1.0,
            message=(
                f"domain: item scores {score:.2f}x the {self.policy.quantile:g} quantile of in-domain scores "
                f"while {share:.1%} of the window is out of domain (expected at most {self.expected:.1%})"
            ),
        )

    def status(self) -> DomainStatus:
        counts = self.counts()
        last = self.last
        return DomainStatus(
            enabled=True,
            quantile=self.policy.quantile,
            threshold=self.threshold.value,
            expected=self.expected,
            n=counts.n,
            out_of_domain=counts.positives,
            share=None if counts.n == 0 else counts.rate,
            share_lower=None if last is None or math.isnan(last.share_lower) else last.share_lower,
            status=last.status if last is not None else "not_checked",
            alert=self.active,
            alerts_raised=self.alerts_raised,
            checks=self.checks,
            action=self.policy.action,
        )


def off_status(policy: DomainPolicy, reason: str) -> DomainStatus:
    """The status of a domain monitor that is not running, and why."""
    return DomainStatus(enabled=False, reason=reason, quantile=policy.quantile, status="off", action=policy.action)
