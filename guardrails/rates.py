"""The output-rate monitor: per-group windows of one outcome, disparity tests, alerts.

Repeated checking: a check runs ``checks_per_window`` times per window length (every
``size / checks_per_window`` recorded outcomes, or every ``seconds / checks_per_window``
seconds for time windows) and each check tests every compared pair at
``alpha / (checks_per_window * pairs)`` with ``alpha = 1 - confidence`` (Bonferroni over the
checks of one window length and over the pairs). By the union bound, while every true
disparity is within the bounds, the chance of any false alarm in any stretch of one
window length of traffic is at most ``alpha``; so the expected number of false alarms
over ``T`` outcomes is at most ``alpha * T / size``. At equal rates (far inside the
bound) it is much lower than that; see docs/guardrails.md for measured figures.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from fairgate.guardrails._stats import difference_lower, ratio_upper, z_one_sided
from fairgate.guardrails.policy import RateMonitorPolicy, RatesPolicy
from fairgate.guardrails.store import WindowCounts, WindowSpec, WindowStore

logger = logging.getLogger(__name__)

Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class GroupResult:
    """One group's figures at one check. NaN means "cannot be computed yet", never 0."""

    group: str
    n: int
    positives: int
    rate: float
    impact_ratio: float
    ratio_upper: float
    parity_difference: float
    difference_lower: float
    status: str  # "reference" | "ok" | "alert" | "insufficient_samples" | "no_reference"


@dataclass(slots=True)
class CheckResult:
    """The outcome of one check of one monitor."""

    monitor: str
    reference: str | None
    z: float
    groups: dict[str, GroupResult]
    raised: list[str] = field(default_factory=list)
    cleared: list[str] = field(default_factory=list)


class RateMonitor:
    """Windows, tests and alert state for one monitored outcome over a fixed set of groups.

    ``groups`` is the bounded vocabulary (allowed + other + none): windows and metrics
    exist only for these names.
    """

    def __init__(
        self,
        *,
        monitor: RateMonitorPolicy,
        rates: RatesPolicy,
        groups: Sequence[str],
        store: WindowStore,
        clock: Clock,
    ) -> None:
        self.name = monitor.name
        self.config = monitor
        self.rates = rates
        self._store = store
        self._clock = clock
        self._groups = tuple(groups)
        self._compared = tuple(g for g in self._groups if g not in set(rates.exclude))
        self._spec = WindowSpec(size=rates.window.size, seconds=rates.window.seconds)
        self._alpha = 1.0 - rates.confidence
        if rates.window.size is not None:
            self._every_n: int | None = max(1, math.ceil(rates.window.size / rates.checks_per_window))
            self._every_s: float | None = None
        else:
            self._every_n = None
            self._every_s = float(rates.window.seconds or 0.0) / rates.checks_per_window
        self._since_check = 0
        self._next_check_at: float | None = None
        self._active: set[str] = set()
        self.alerts_raised = 0
        self.last: CheckResult | None = None

    def key(self, group: str) -> str:
        return f"{self.name}/{group}"

    @property
    def groups(self) -> tuple[str, ...]:
        return self._groups

    @property
    def active(self) -> frozenset[str]:
        """Groups whose alert is on now."""
        return frozenset(self._active)

    def record(self, items: Sequence[tuple[Sequence[str], bool | None]]) -> CheckResult | None:
        """Record one batch of ``(groups, hit)`` (``hit`` None: not observed) and check if due.

        Returns the check's result when a check ran.
        """
        events: dict[str, list[int]] = {}
        observed = 0
        for groups, hit in items:
            if hit is None:
                continue
            observed += 1
            for group in groups:
                events.setdefault(self.key(group), []).append(1 if hit else 0)
        now = self._clock()
        if events:
            self._store.add(events, now=now, spec=self._spec)
        self._since_check += observed
        if self._due(now):
            return self.check(now)
        return None

    def _due(self, now: float) -> bool:
        if self._every_n is not None:
            return self._since_check >= self._every_n
        if self._next_check_at is None:
            self._next_check_at = now + (self._every_s or 0.0)
            return False
        return now >= self._next_check_at

    def counts(self, now: float | None = None) -> dict[str, WindowCounts]:
        at = self._clock() if now is None else now
        raw = self._store.counts([self.key(g) for g in self._groups], now=at, spec=self._spec)
        return {g: raw[self.key(g)] for g in self._groups}

    def check(self, now: float | None = None) -> CheckResult:
        """Test every compared group against the reference and update the alert state."""
        at = self._clock() if now is None else now
        self._since_check = 0
        if self._every_s is not None:
            self._next_check_at = at + self._every_s
        counts = self.counts(at)
        rates = self.rates
        eligible = [g for g in self._compared if counts[g].n >= rates.min_samples]
        reference = self._reference(eligible, counts)
        if rates.reference == "highest":
            pairs = len(eligible) * (len(eligible) - 1)
        else:
            pairs = max(0, len(eligible) - 1)
        z = z_one_sided(self._alpha / (rates.checks_per_window * max(1, pairs)))
        result = CheckResult(monitor=self.name, reference=reference, z=z, groups={})
        for group in self._groups:
            result.groups[group] = self._assess(group, counts, eligible, reference, z, result)
        self.last = result
        if result.raised:
            logger.warning("rate monitor %s: alert raised for %s", self.name, ", ".join(result.raised))
        if result.cleared:
            logger.info("rate monitor %s: alert cleared for %s", self.name, ", ".join(result.cleared))
        return result

    def _reference(self, eligible: Sequence[str], counts: dict[str, WindowCounts]) -> str | None:
        if self.rates.reference != "highest":
            return self.rates.reference if self.rates.reference in eligible else None
        if len(eligible) < 2:
            return None
        # The comparison is against the most favoured group: the highest rate of a
        # favourable outcome, the lowest rate of an adverse one.
        if self.config.harm == "low_rate":
            return max(eligible, key=lambda g: (counts[g].rate, g))
        return min(eligible, key=lambda g: (counts[g].rate, g))

    def _assess(
        self,
        group: str,
        counts: dict[str, WindowCounts],
        eligible: Sequence[str],
        reference: str | None,
        z: float,
        result: CheckResult,
    ) -> GroupResult:
        c = counts[group]
        nan = float("nan")
        if group == reference:
            self._clear(group, result)
            return GroupResult(group, c.n, c.positives, c.rate, 1.0, 1.0, 0.0, 0.0, "reference")
        if group not in eligible or reference is None:
            self._clear(group, result)
            status = "insufficient_samples" if group not in eligible else "no_reference"
            return GroupResult(group, c.n, c.positives, c.rate, nan, nan, nan, nan, status)
        r = counts[reference]
        if self.config.harm == "low_rate":  # disadvantaged when its rate is low
            ratio = c.rate / r.rate if r.rate > 0 else nan
            upper = ratio_upper(c.positives, c.n, r.positives, r.n, z) if r.positives > 0 else math.inf
            diff = r.rate - c.rate
            lower = difference_lower(r.positives, r.n, c.positives, c.n, z)
        else:  # adverse outcome: disadvantaged when its rate is high
            ratio = r.rate / c.rate if c.rate > 0 else nan
            upper = ratio_upper(r.positives, r.n, c.positives, c.n, z) if c.positives > 0 else math.inf
            diff = c.rate - r.rate
            lower = difference_lower(c.positives, c.n, r.positives, r.n, z)
        ratio_bound = self.rates.impact_ratio.min if self.rates.impact_ratio else None
        diff_bound = self.rates.parity_difference.max if self.rates.parity_difference else None
        evidence = (ratio_bound is not None and upper < ratio_bound) or (
            diff_bound is not None and lower > diff_bound
        )
        hysteresis = self.rates.hysteresis
        recovered = (
            ratio_bound is None or (not math.isnan(ratio) and ratio >= ratio_bound + hysteresis)
        ) and (diff_bound is None or diff <= diff_bound - hysteresis)
        if group not in self._active and evidence:
            self._active.add(group)
            self.alerts_raised += 1
            result.raised.append(group)
        elif group in self._active and recovered:
            self._clear(group, result)
        status = "alert" if group in self._active else "ok"
        return GroupResult(group, c.n, c.positives, c.rate, ratio, upper, diff, lower, status)

    def _clear(self, group: str, result: CheckResult) -> None:
        if group in self._active:
            self._active.discard(group)
            result.cleared.append(group)
