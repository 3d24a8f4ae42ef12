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

With ``rates.method: sequential`` the windows, schedule, figures and clearing stay as
above, but an alert is raised by the e-detectors of :mod:`fairgate.guardrails.sequential`,
updated after every batch, instead of by the scheduled Wilson test (its guarantee is in
that module's docstring). The detectors are kept by the store, next to the windows, so
with the shared (Redis) store every worker and replica feeds one detector per pair.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from fairgate.guardrails._stats import difference_lower, ratio_upper, z_one_sided
from fairgate.guardrails.local_store import as_monitor_store
from fairgate.guardrails.policy import RateMonitorPolicy, RatesPolicy
from fairgate.guardrails.sequential import Alarm, SequentialSetup, SequentialSpec
from fairgate.guardrails.store import (
    AlertBoard,
    BoardUpdate,
    CheckSchedule,
    MonitorBatch,
    MonitorQuery,
    MonitorReply,
    MonitorStore,
    WindowCounts,
    WindowSpec,
    WindowStore,
    window_key,
)

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
    evidence: float = float("nan")  # sequential: e-detector / alarm threshold (alert at >= 1); NaN for window
    evidence_against: str | None = None  # sequential: the group of the strongest comparison


@dataclass(slots=True)
class CheckResult:
    """The outcome of one check of one monitor."""

    monitor: str
    reference: str | None
    z: float
    groups: dict[str, GroupResult]
    raised: list[str] = field(default_factory=list)
    cleared: list[str] = field(default_factory=list)
    alarms: list[str] = field(default_factory=list)  # sequential alarms this check consumed (not encoded)


@dataclass(frozen=True, slots=True)
class PendingCheck:
    """A check computed from a store's counts, and the board update that makes it take effect."""

    result: CheckResult
    update: BoardUpdate


class RateMonitor:
    """Windows, tests and alert state for one monitored outcome over a fixed set of groups.

    ``groups`` is the bounded vocabulary (allowed + other + none): windows and metrics
    exist only for these names. The windows, the check schedule and the alert board live
    in ``store`` (a plain :class:`WindowStore` gets a :class:`LocalMonitorStore` around it),
    so with a shared store every worker records into and alerts from the same state; this
    object keeps only its latest copy of the board. The e-detectors of ``method: sequential``
    live in the store too (updated by ``record``, read with the counts of a check).

    One batch is ``batch`` -> the store's ``record`` -> ``absorb`` (which returns a check to
    publish when this batch made one due) -> the store's ``publish`` -> ``settle``; the
    guard runs these for all monitors with one store call per step. ``record`` does the
    same for this monitor alone.
    """

    def __init__(
        self,
        *,
        monitor: RateMonitorPolicy,
        rates: RatesPolicy,
        groups: Sequence[str],
        store: WindowStore | MonitorStore,
        clock: Clock,
    ) -> None:
        self.name = monitor.name
        self.config = monitor
        self.rates = rates
        self._store: MonitorStore = as_monitor_store(store)
        self._clock = clock
        self._groups = tuple(groups)
        self._compared = tuple(g for g in self._groups if g not in set(rates.exclude))
        self._spec = WindowSpec(size=rates.window.size, seconds=rates.window.seconds)
        self._alpha = 1.0 - rates.confidence
        if rates.window.size is not None:
            self._schedule = CheckSchedule(every_n=max(1, math.ceil(rates.window.size / rates.checks_per_window)))
        else:
            self._schedule = CheckSchedule(every_s=float(rates.window.seconds or 0.0) / rates.checks_per_window)
        self._board = AlertBoard()
        self._last: CheckResult | None = None
        self._last_text: str | None = None
        self._last_epoch = -1  # the board epoch whose last check we hold
        self._setup: SequentialSetup | None = None
        if rates.method == "sequential":
            self._setup = SequentialSetup(groups=self._compared, spec=sequential_spec(monitor, rates))

    def key(self, group: str) -> str:
        return window_key(self.name, group)

    @property
    def groups(self) -> tuple[str, ...]:
        return self._groups

    @property
    def spec(self) -> WindowSpec:
        return self._spec

    @property
    def schedule(self) -> CheckSchedule:
        return self._schedule

    @property
    def active(self) -> frozenset[str]:
        """Groups whose alert is on now (as of the latest board this process saw)."""
        return self._board.active

    @property
    def alerts_raised(self) -> int:
        """Alerts raised over the board's life (fleet-wide with a shared store)."""
        return self._board.raised

    @property
    def checks(self) -> int:
        """Checks published to the board so far (fleet-wide with a shared store)."""
        return self._board.epoch

    @property
    def last(self) -> CheckResult | None:
        """The last published check's figures (whichever process ran it)."""
        return self._last

    @property
    def method(self) -> str:
        return self.rates.method

    @property
    def sequential(self) -> SequentialSetup | None:
        """The e-detector setup of ``method: sequential`` (None for ``window``); the store keeps its state."""
        return self._setup

    def reset_evidence(self, groups: Sequence[str] | None = None) -> None:
        """Forget the sequential evidence of pairs involving ``groups`` (all when None): admin resets."""
        if self._setup is not None:
            self._store.reset_evidence(self.name, self._setup, groups)

    # -- one batch, in steps ------------------------------------------------------------

    def query(self, *, evidence: bool = False) -> MonitorQuery:
        """Read the windows and board (``evidence``: also the e-detector's evidence and pending alarms)."""
        return MonitorQuery(
            monitor=self.name,
            groups=self._groups,
            spec=self._spec,
            known_epoch=self._known_epoch(),
            sequential=self._setup if evidence else None,
        )

    def batch(self, items: Sequence[tuple[Sequence[str], bool | None]]) -> MonitorBatch:
        """The store's input for one batch of ``(groups, hit)`` (``hit`` None: not observed)."""
        events: dict[str, list[int]] = {}
        observed = 0
        for groups, hit in items:
            if hit is None:
                continue
            observed += 1
            for group in groups:
                events.setdefault(group, []).append(1 if hit else 0)
        return MonitorBatch(
            monitor=self.name,
            groups=self._groups,
            spec=self._spec,
            known_epoch=self._known_epoch(),
            sequential=self._setup,  # the store feeds the batch to the e-detector
            events=events,
            observed=observed,
            schedule=self._schedule,
        )

    def _known_epoch(self) -> int:
        return self._last_epoch

    def adopt(self, board: AlertBoard) -> bool:
        """Take the store's board; True when the last check's figures changed.

        A store leaves ``board.last`` out when the epoch is the one we said we know; a
        board back at epoch 0 (a new or flushed store) has no last check.
        """
        changed = False
        if board.last is not None:
            if board.last != self._last_text:
                self._last_text, self._last, changed = board.last, decode_check(board.last), True
            self._last_epoch = board.epoch
        elif board.epoch == 0:
            if self._last_text is not None:
                self._last_text, self._last, changed = None, None, True
            self._last_epoch = 0
        self._board = AlertBoard(active=board.active, raised=board.raised, epoch=board.epoch)
        return changed

    def absorb(self, reply: MonitorReply) -> PendingCheck | None:
        """Take a ``record`` reply; when it made a check due, the check and the update to publish.

        With ``method: sequential`` the store has fed the batch to the e-detectors, and an
        alarm for a group not yet alerting (``reply.urgent``, whichever worker's batch raised
        it) makes a check due at once (reading the windows for its figures when the schedule
        did not).
        """
        self.adopt(reply.board)
        if reply.due and reply.counts is not None:
            return self.evaluate(reply.counts, evidence=reply.evidence, alarms=reply.alarms)
        if not reply.urgent:
            return None
        snapshot = self._store.snapshot([self.query(evidence=True)], now=self._clock()).monitors[self.name]
        self.adopt(snapshot.board)
        return self.evaluate(snapshot.counts or {}, evidence=snapshot.evidence, alarms=snapshot.alarms)

    def settle(self, pending: PendingCheck, reply: MonitorReply) -> CheckResult | None:
        """Take the ``publish`` reply: the check if it won, None if another check got there first."""
        check = pending.result
        if reply.accepted:
            self._last, self._last_text, self._last_epoch = check, pending.update.last, reply.board.epoch
            if check.raised:
                logger.warning("rate monitor %s: alert raised for %s", self.name, ", ".join(check.raised))
            if check.cleared:
                logger.info("rate monitor %s: alert cleared for %s", self.name, ", ".join(check.cleared))
        self.adopt(reply.board)
        return check if reply.accepted else None

    # -- the whole step for this monitor alone -------------------------------------------

    def record(self, items: Sequence[tuple[Sequence[str], bool | None]]) -> CheckResult | None:
        """Record one batch of ``(groups, hit)`` (``hit`` None: not observed) and check if due.

        Returns the check's result when a check ran and was published.
        """
        now = self._clock()
        reply = self._store.record([self.batch(items)], now=now).monitors[self.name]
        pending = self.absorb(reply)
        if pending is None:
            return None
        return self.settle(pending, self._store.publish([pending.update]).monitors[self.name])

    def counts(self, now: float | None = None) -> dict[str, WindowCounts]:
        at = self._clock() if now is None else now
        raw = self._store.counts([self.key(g) for g in self._groups], now=at, spec=self._spec)
        return {g: raw[self.key(g)] for g in self._groups}

    def check(self, now: float | None = None) -> CheckResult:
        """Test every compared group against the reference now and publish the alert state."""
        at = self._clock() if now is None else now
        reply = self._store.snapshot([self.query(evidence=True)], now=at).monitors[self.name]
        self.adopt(reply.board)
        assert reply.counts is not None, "a snapshot always carries counts"
        pending = self.evaluate(reply.counts, evidence=reply.evidence, alarms=reply.alarms)
        self.settle(pending, self._store.publish([pending.update]).monitors[self.name])
        return pending.result

    # -- the test -----------------------------------------------------------------------

    def evaluate(
        self,
        counts: Mapping[str, WindowCounts],
        *,
        evidence: Mapping[str, tuple[float, str | None]] | None = None,
        alarms: Mapping[str, Alarm] | None = None,
    ) -> PendingCheck:
        """Test every compared group against the reference, from the board's alert state.

        ``evidence`` and ``alarms`` (sequential): the store's e-detector evidence per group and
        its pending alarms, which raise their groups' alerts; the update names them as consumed.
        Pure: the new state takes effect only when the returned update is published.
        """
        alarms = dict(alarms or {})
        counts = {g: counts.get(g, WindowCounts(0, 0)) for g in self._groups}
        rates = self.rates
        eligible = [g for g in self._compared if counts[g].n >= rates.min_samples]
        reference = self._reference(eligible, counts)
        if rates.reference == "highest":
            pairs = len(eligible) * (len(eligible) - 1)
        else:
            pairs = max(0, len(eligible) - 1)
        z = z_one_sided(self._alpha / (rates.checks_per_window * max(1, pairs)))
        result = CheckResult(monitor=self.name, reference=reference, z=z, groups={}, alarms=sorted(alarms))
        active = set(self._board.active)
        evidence = evidence if evidence is not None and self._setup is not None else {}
        for group in self._groups:
            assessed = self._assess(group, counts, eligible, reference, z, result, active, alarms)
            if group in evidence:
                value, against = evidence[group]
                alarm = alarms.get(group)
                if alarm is not None and alarm.evidence >= value:
                    value, against = alarm.evidence, alarm.other
                assessed = _with_evidence(assessed, value, against)
            result.groups[group] = assessed
        update = BoardUpdate(
            monitor=self.name,
            expected_epoch=self._board.epoch,
            active=frozenset(active),
            newly_raised=len(result.raised),
            last=encode_check(result),
            consumed=frozenset(alarms),
            sequential=self._setup,
        )
        return PendingCheck(result=result, update=update)

    def _reference(self, eligible: Sequence[str], counts: Mapping[str, WindowCounts]) -> str | None:
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
        counts: Mapping[str, WindowCounts],
        eligible: Sequence[str],
        reference: str | None,
        z: float,
        result: CheckResult,
        active: set[str],
        alarms: Mapping[str, Alarm],
    ) -> GroupResult:
        c = counts[group]
        nan = float("nan")
        alarm = self._setup is not None and group in alarms
        if alarm and group not in active:
            # Sequential: the e-detector's alarm raises whatever the window shows yet.
            active.add(group)
            result.raised.append(group)
        if group == reference:
            if not alarm:
                _clear(group, result, active)
            status = "alert" if group in active else "reference"
            return GroupResult(group, c.n, c.positives, c.rate, 1.0, 1.0, 0.0, 0.0, status)
        if group not in eligible or reference is None:
            # Too few samples shows no recovery: a window alert never gets here (it needs the
            # samples to be raised), but a sequential alarm can come first and must stand.
            if not alarm and self._setup is None:
                _clear(group, result, active)
            status = "insufficient_samples" if group not in eligible else "no_reference"
            return GroupResult(group, c.n, c.positives, c.rate, nan, nan, nan, nan, "alert" if alarm else status)
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
        if self._setup is not None:
            evidence = alarm  # raised above; the window's bound is shown, not acted on
        else:
            evidence = (ratio_bound is not None and upper < ratio_bound) or (
                diff_bound is not None and lower > diff_bound
            )
        hysteresis = self.rates.hysteresis
        recovered = (
            ratio_bound is None or (not math.isnan(ratio) and ratio >= ratio_bound + hysteresis)
        ) and (diff_bound is None or diff <= diff_bound - hysteresis)
        if group not in active and evidence:
            active.add(group)
            result.raised.append(group)
        elif group in active and recovered and not alarm:
            _clear(group, result, active)
        status = "alert" if group in active else "ok"
        return GroupResult(group, c.n, c.positives, c.rate, ratio, upper, diff, lower, status)


def sequential_spec(monitor: RateMonitorPolicy, rates: RatesPolicy) -> SequentialSpec:
    """The e-detector settings of one monitor under ``rates``."""
    return SequentialSpec(
        harm=monitor.harm,
        ratio_min=rates.impact_ratio.min if rates.impact_ratio else None,
        difference_max=rates.parity_difference.max if rates.parity_difference else None,
        arl=rates.sequential.arl,
        start_every=rates.sequential.start_every,
        confidence=rates.confidence,
        reference=None if rates.reference == "highest" else rates.reference,
    )


def _with_evidence(result: GroupResult, evidence: float, against: str | None) -> GroupResult:
    return GroupResult(
        result.group, result.n, result.positives, result.rate, result.impact_ratio, result.ratio_upper,
        result.parity_difference, result.difference_lower, result.status, evidence, against,
    )


def _clear(group: str, result: CheckResult, active: set[str]) -> None:
    if group in active:
        active.discard(group)
        result.cleared.append(group)


def encode_check(result: CheckResult) -> str:
    """A check as compact JSON for the alert board (NaN and infinity kept: only we read it)."""
    return json.dumps(
        {
            "monitor": result.monitor,
            "reference": result.reference,
            "z": result.z,
            "groups": [
                [g.group, g.n, g.positives, g.rate, g.impact_ratio, g.ratio_upper, g.parity_difference,
                 g.difference_lower, g.status, g.evidence, g.evidence_against]
                for g in result.groups.values()
            ],
            "raised": result.raised,
            "cleared": result.cleared,
        },
        separators=(",", ":"),
    )


def decode_check(text: str) -> CheckResult:
    """The inverse of :func:`encode_check`."""
    data = json.loads(text)
    groups = {
        str(row[0]): GroupResult(
            group=str(row[0]),
            n=int(row[1]),
            positives=int(row[2]),
            rate=float(row[3]),
            impact_ratio=float(row[4]),
            ratio_upper=float(row[5]),
            parity_difference=float(row[6]),
            difference_lower=float(row[7]),
            status=str(row[8]),
            evidence=float(row[9]) if len(row) > 9 else float("nan"),
            evidence_against=str(row[10]) if len(row) > 10 and row[10] is not None else None,
        )
        for row in data["groups"]
    }
    return CheckResult(
        monitor=data["monitor"],
        reference=data["reference"],
        z=float(data["z"]),
        groups=groups,
        raised=list(data["raised"]),
        cleared=list(data["cleared"]),
    )
