"""Run the output-rate monitor on synthetic streams: how fast it catches a disparity, how
often it cries wolf.

The simulation drives the real :class:`RateMonitor` (same windows, tests, cadence and
hysteresis as in serving) with a seeded stream: each request belongs to one group drawn by
traffic share and has the monitored outcome with that group's rate. Several methods
(``window``, ``sequential``) run side by side on the same stream, each with its own
monitor, so their figures differ only by the method. ``then``/``change_at`` switch the
rates after ``change_at`` requests (a disparity that starts late); the detection delay is
counted from there.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from fairgate.guardrails.policy import Policy, RateMonitorPolicy, RatesPolicy
from fairgate.guardrails.rates import RateMonitor
from fairgate.guardrails.store import InMemoryWindowStore

METHODS: tuple[str, ...] = ("window", "sequential")


@dataclass
class GroupResult:
    group: str
    rate: float
    share: float
    true_impact_ratio: float
    breaches_bound: bool
    then_rate: float | None = None  # the rate after the change (``then``), if any
    then_impact_ratio: float | None = None
    then_breaches_bound: bool | None = None
    requests: int = 0
    positives: int = 0
    alerts: int = 0
    false_alarms: int = 0
    first_alert: int | None = None
    requests_under_alert: int = 0
    final_impact_ratio: float | None = None
    final_status: str = "not_checked"

    @property
    def observed_rate(self) -> float | None:
        return self.positives / self.requests if self.requests else None


@dataclass
class SimulationResult:
    """What ``fairgate simulate-rates --json`` prints (``to_dict``)."""

    n: int
    seed: int
    policy_version: str
    monitor: str
    harm: str
    window: dict[str, Any]
    impact_ratio_min: float | None
    parity_difference_max: float | None
    confidence: float
    min_samples: int
    method: str = "window"
    change_at: int | None = None
    checks: int = 0
    alerts: int = 0
    false_alarms: int = 0
    first_alert: int | None = None
    detection_delay: int | None = None  # requests after change_at until a breaching group is under alert
    groups: list[GroupResult] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["groups"] = {}
        for group in self.groups:
            block = asdict(group)
            block["observed_rate"] = group.observed_rate
            data["groups"][group.group] = block
        return data


def true_impact_ratios(
    rates: Sequence[float], names: Sequence[str], *, harm: str, reference: str
) -> dict[str, tuple[float, float]]:
    """The true (impact ratio, parity difference) per group from the given rates."""
    by_name = dict(zip(names, rates, strict=True))
    if reference == "highest":
        ref = max(by_name, key=by_name.__getitem__) if harm == "low_rate" else min(by_name, key=by_name.__getitem__)
    else:
        ref = reference
    out = {}
    for name, rate in by_name.items():
        r = by_name[ref]
        if harm == "low_rate":
            ratio = rate / r if r > 0 else math.nan
            diff = r - rate
        else:
            ratio = r / rate if rate > 0 else (1.0 if r == 0 else math.nan)
            diff = rate - r
        out[name] = (ratio, diff)
    return out


def simulate_rates(
    *,
    rates: Sequence[float],
    shares: Sequence[float] | None = None,
    n: int = 100_000,
    seed: int = 0,
    policy: Policy | None = None,
    groups: Sequence[str] | None = None,
    monitor: str | None = None,
    batch: int = 1,
    requests_per_second: float = 10.0,
    method: str | None = None,
    then: Sequence[float] | None = None,
    change_at: int | None = None,
) -> SimulationResult:
    """Simulate ``n`` requests through one rate monitor of ``policy`` (default policy if None).

    Group names default to the first ``len(rates)`` names of the policy's allowed list.
    The clock advances ``1 / requests_per_second`` per request (time windows). ``method``
    overrides the policy's ``rates.method``; ``then`` are the rates after request
    ``change_at``.
    """
    policy = policy if policy is not None else Policy.default()
    chosen = method if method is not None else policy.rates.method
    return simulate_methods(
        rates=rates,
        shares=shares,
        n=n,
        seed=seed,
        policy=policy,
        groups=groups,
        monitor=monitor,
        batch=batch,
        requests_per_second=requests_per_second,
        methods=(chosen,),
        then=then,
        change_at=change_at,
    )[chosen]


def simulate_methods(
    *,
    rates: Sequence[float],
    shares: Sequence[float] | None = None,
    n: int = 100_000,
    seed: int = 0,
    policy: Policy | None = None,
    groups: Sequence[str] | None = None,
    monitor: str | None = None,
    batch: int = 1,
    requests_per_second: float = 10.0,
    methods: Sequence[str] = METHODS,
    then: Sequence[float] | None = None,
    change_at: int | None = None,
) -> dict[str, SimulationResult]:
    """:func:`simulate_rates` for every method in ``methods``, on one and the same stream."""
    policy = policy if policy is not None else Policy.default()
    k = len(rates)
    if k < 2:
        raise ValueError(f"need at least two groups' rates, got {list(rates)}; pass e.g. --rates 0.3,0.2")
    if any(not 0.0 <= r <= 1.0 for r in rates):
        raise ValueError(f"rates must be in 0..1, got {list(rates)}")
    shares = list(shares) if shares is not None else [1.0 / k] * k
    if len(shares) != k or any(s < 0 for s in shares) or sum(shares) <= 0:
        raise ValueError(f"need {k} non-negative shares (one per rate), got {list(shares)}")
    total = float(sum(shares))
    shares = [s / total for s in shares]
    names = list(groups) if groups is not None else list(policy.groups.allowed[:k])
    if len(names) != k or len(set(names)) != k:
        names = [f"group{i + 1}" for i in range(k)]
    if n < 1 or batch < 1:
        raise ValueError(f"n ({n}) and batch ({batch}) must be >= 1")
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise ValueError(f"unknown method {', '.join(unknown) or '(none)'}; use window, sequential or both")
    if (then is None) != (change_at is None):
        raise ValueError("--then and --change-at go together; pass both (e.g. --then 0.3,0.2 --change-at 20000)")
    if then is not None:
        if len(then) != k or any(not 0.0 <= r <= 1.0 for r in then):
            raise ValueError(f"need {k} rates in 0..1 after the change (one per group), got {list(then)}")
        if change_at is None or not 0 <= change_at < n:
            raise ValueError(f"change_at {change_at} must be in 0..n-1 (n = {n})")
    config = _pick_monitor(policy.rates, monitor)
    rates_policy = policy.rates
    if rates_policy.reference != "highest" and rates_policy.reference not in names:
        rates_policy = rates_policy.model_copy(update={"reference": "highest"})
    ratio_min = rates_policy.impact_ratio.min if rates_policy.impact_ratio else None
    diff_max = rates_policy.parity_difference.max if rates_policy.parity_difference else None

    def breaches(figures: tuple[float, float]) -> bool:
        return (ratio_min is not None and figures[0] < ratio_min) or (diff_max is not None and figures[1] > diff_max)

    truth = true_impact_ratios(rates, names, harm=config.harm, reference=rates_policy.reference)
    truth_then = true_impact_ratios(then, names, harm=config.harm, reference=rates_policy.reference) if then else None
    now = [0.0]
    step = 1.0 / requests_per_second
    runs: dict[str, tuple[RateMonitor, SimulationResult, dict[str, GroupResult]]] = {}
    for method in methods:
        results = {
            name: GroupResult(
                group=name,
                rate=rate,
                share=share,
                true_impact_ratio=truth[name][0],
                breaches_bound=breaches(truth[name]),
                then_rate=then[i] if then else None,
                then_impact_ratio=truth_then[name][0] if truth_then else None,
                then_breaches_bound=breaches(truth_then[name]) if truth_then else None,
            )
            for i, (name, rate, share) in enumerate(zip(names, rates, shares, strict=True))
        }
        rate_monitor = RateMonitor(
            monitor=config,
            rates=rates_policy.model_copy(update={"method": method}),
            groups=names,
            store=InMemoryWindowStore(),
            clock=lambda: now[0],
        )
        sim = SimulationResult(
            n=n,
            seed=seed,
            policy_version=policy.version,
            monitor=config.name,
            harm=config.harm,
            window=rates_policy.window.model_dump(exclude_none=True),
            impact_ratio_min=ratio_min,
            parity_difference_max=diff_max,
            confidence=rates_policy.confidence,
            min_samples=rates_policy.min_samples,
            method=method,
            change_at=change_at,
            groups=list(results.values()),
        )
        runs[method] = (rate_monitor, sim, results)
    rng = random.Random(seed)
    cumulative = []
    acc = 0.0
    for share in shares:
        acc += share
        cumulative.append(acc)
    pending: list[tuple[tuple[str, ...], bool]] = []
    current = list(rates)
    for index in range(1, n + 1):
        if then is not None and index == (change_at or 0) + 1:
            current = list(then)
        u = rng.random()
        g = next((i for i, c in enumerate(cumulative) if u < c), k - 1)
        name = names[g]
        hit = rng.random() < current[g]
        for rate_monitor, _, results in runs.values():
            group = results[name]
            group.requests += 1
            group.positives += hit
            if name in rate_monitor.active:
                group.requests_under_alert += 1
        now[0] += step
        pending.append(((name,), hit))
        if len(pending) < batch and index < n:
            continue
        after = change_at is not None and index > change_at
        for rate_monitor, sim, results in runs.values():
            check = rate_monitor.record(pending)
            if check is not None:
                sim.checks += 1
                for raised in check.raised:
                    result = results[raised]
                    result.alerts += 1
                    sim.alerts += 1
                    breaching = result.then_breaches_bound if after else result.breaches_bound
                    if not breaching:
                        result.false_alarms += 1
                        sim.false_alarms += 1
                    if result.first_alert is None:
                        result.first_alert = index
                    if sim.first_alert is None:
                        sim.first_alert = index
            if (
                after
                and sim.detection_delay is None
                and change_at is not None
                and any(results[a].then_breaches_bound for a in rate_monitor.active)
            ):
                sim.detection_delay = index - change_at
        pending = []
    for rate_monitor, _, results in runs.values():
        last = rate_monitor.last  # the last scheduled check: no extra test, no extra alpha
        if last is not None:
            for name, figures in last.groups.items():
                results[name].final_impact_ratio = None if math.isnan(figures.impact_ratio) else figures.impact_ratio
                results[name].final_status = figures.status
    return {method: sim for method, (_, sim, _) in runs.items()}


def _pick_monitor(rates: RatesPolicy, name: str | None) -> RateMonitorPolicy:
    if name is None:
        label_monitors = [m for m in rates.monitors if m.source == "label"]
        if label_monitors:
            return label_monitors[0]
        if rates.monitors:
            return rates.monitors[0]
        return RateMonitorPolicy(name="simulated", source="label", outcome="positive", harm="high_rate")
    for monitor in rates.monitors:
        if monitor.name == name:
            return monitor
    known = ", ".join(m.name for m in rates.monitors) or "(none)"
    raise ValueError(f"policy has no rate monitor {name!r}; use one of {known}")


def _quantile(values: Sequence[int], q: float) -> int | None:
    """The ``q`` quantile of sorted ``values`` (the smallest value with at least ``q`` of them at or below)."""
    if not values:
        return None
    return values[min(len(values) - 1, max(0, math.ceil(q * len(values)) - 1))]


def summarise_runs(results: Sequence[SimulationResult]) -> dict[str, Any]:
    """Across seeds: the spread of the first alert (and of the detection delay after a change),
    the share of runs that caught it, and the total of alerts and false alarms.

    Quantiles are over the runs that caught it; ``caught_share`` says how many did.
    """
    firsts = sorted(r.first_alert for r in results if r.first_alert is not None)
    requests = sum(r.n for r in results)
    false_alarms = sum(r.false_alarms for r in results)
    summary: dict[str, Any] = {
        "runs": len(results),
        "seeds": [r.seed for r in results],
        "method": results[0].method if results else None,
        "first_alert": [r.first_alert for r in results],
        "detected_runs": len(firsts),
        "caught_share": len(firsts) / len(results) if results else None,
        "first_alert_median": _quantile(firsts, 0.5),
        "first_alert_p90": _quantile(firsts, 0.9),
        "first_alert_max": firsts[-1] if firsts else None,
        "alerts_total": sum(r.alerts for r in results),
        "false_alarms_total": false_alarms,
        "false_alarms_per_100k": 100_000 * false_alarms / requests if requests else None,
        "requests_total": requests,
    }
    if results and results[0].change_at is not None:
        delays = sorted(r.detection_delay for r in results if r.detection_delay is not None)
        summary.update(
            {
                "change_at": results[0].change_at,
                "detection_delay": [r.detection_delay for r in results],
                "delay_caught_share": len(delays) / len(results),
                "delay_median": _quantile(delays, 0.5),
                "delay_p90": _quantile(delays, 0.9),
                "delay_max": delays[-1] if delays else None,
            }
        )
    return summary
