"""The guard: the one object the service (or any product) calls on every batch.

``screen`` decides what may block on the input alone (groups + toxicity), ``review`` runs on
the classifier's answers (rate windows, disparity alerts, final decision). The service may
run the classifier beside ``screen`` and drop the answers of the items it blocked; a blocked
item's label never reaches ``review``. Both take and return lists, so adaptive
batching pays off through the whole path.

Thread safety is the guard's own: a product embeds it without the service, so one
reentrant lock per guard (:attr:`Guard.lock`) protects the state that batches share; the
service's pipeline holds that same lock for a whole batch instead of adding its own. The
class docstring says what it covers and why the other locks in the package are not it.
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass

import numpy as np
from prometheus_client import CollectorRegistry

from fairgate.guardrails.contracts import SEVERITY, Action, ScreenStage, most_severe
from fairgate.guardrails.decision import (
    Decision,
    DomainStatus,
    GroupStatus,
    GuardStatus,
    MonitorStatus,
    Reason,
    Screen,
)
from fairgate.guardrails.domain import DomainReference
from fairgate.guardrails.domain_monitor import DOMAIN_MONITOR, DomainMonitor, off_status
from fairgate.guardrails.encoding import Encoding
from fairgate.guardrails.explain import (
    DEFAULT_MAX_WORDS,
    DEFAULT_TOP_K,
    Explanation,
    ExplanationError,
    occlude,
    unexplained,
)
from fairgate.guardrails.groups import GroupResolver, Lexicon, RequestGroup
from fairgate.guardrails.identity import CounterfactualSwapper
from fairgate.guardrails.local_store import as_monitor_store
from fairgate.guardrails.metrics import STORE_ERRORS, STORE_OPERATIONS, GuardMetrics
from fairgate.guardrails.policy import Policy, PolicyError, RateMonitorPolicy
from fairgate.guardrails.probe import CounterfactualProbe, ProbeClassifier, ProbeGuard, ProbeRecord, disabled_status
from fairgate.guardrails.rates import PendingCheck, RateMonitor
from fairgate.guardrails.reload import PolicyChange, forget_windows, monitor_definition
from fairgate.guardrails.scorers import EncodingScorer, ToxicityScorer, reuses_encoding
from fairgate.guardrails.store import (
    InMemoryWindowStore,
    MonitorStore,
    StoreError,
    StoreReply,
    WindowCounts,
    WindowStore,
)

logger = logging.getLogger(__name__)

Clock = Callable[[], float]
TOXICITY_MONITOR = "toxicity"
# The counterfactual probe's label in fairgate_monitor_duration_seconds (it makes no decision).
PROBE_MONITOR = "counterfactual"


class Guard:
    """Toxicity and per-group output-rate monitors under one policy.

    Every dependency is passed in: the scorer (None only when the policy disables
    toxicity), the Prometheus registry, the clock (seconds; ``time.monotonic`` in one
    process, ``time.time`` when windows live in a store shared across machines), and the
    window store. A plain :class:`WindowStore` keeps the check schedule and alerts in this
    process (``window_scope: worker``); a shared :class:`MonitorStore` (Redis, usually
    behind a :class:`~fairgate.guardrails.failover.FailoverStore`) keeps them for the fleet.
    Each reviewed batch costs one store call for all rate monitors (one round trip with
    Redis), plus one or two when the batch makes a check due.

    **Locking.** :attr:`lock` (reentrant) is the one lock around a batch's shared state:
    the rate monitors' check schedule, alert boards and last results, and the store calls
    that read and update them as one sequence (record -> absorb -> publish -> settle in
    :meth:`review`; snapshot -> adopt in :meth:`status`; :meth:`check`). Without it the
    checks of two batches race on the board (one is evaluated against a board the other
    is about to replace, its publish is refused and the check is lost), and a status read
    can adopt a board half way through a review; with it no check is lost and every
    status sees whole batches (tests/unit/guardrails/test_guard_concurrency.py).
    :meth:`screen` takes no lock: group resolution is pure, and calling the scorer from
    several threads is the scorer's own concern (ONNX Runtime sessions are thread-safe),
    so embedded callers screen in parallel. A caller that needs several calls to act as
    one unit holds :attr:`lock` around them; the service's pipeline does so for a whole
    batch (screen -> classifier -> review) and has no lock of its own. :meth:`probe` does
    not take it: it reads its probe and policy from one snapshot that :meth:`apply_policy`
    swaps in a single assignment, and the probe's own lock guards its sampling and tallies,
    so a probe on a background thread holds no lock a batch needs.

    Not the same concern, and so not merged into this one: each window store keeps a
    small lock of its own (``InMemoryWindowStore``, ``LocalMonitorStore``), because a
    store is a public component that may be used alone or shared by several guards;
    under one guard those locks are never contended. ``FailoverStore``'s lock guards its
    health state (failures, backoff), and a scorer deadline's lock its one in-flight call.
    """

    def __init__(
        self,
        *,
        policy: Policy,
        scorer: ToxicityScorer | None,
        registry: CollectorRegistry,
        clock: Clock = time.monotonic,
        store: WindowStore | MonitorStore | None = None,
        lexicon: Lexicon | None = None,
        rng: random.Random | None = None,
        domain: DomainReference | None = None,
        domain_unavailable: str = "the guard was given no domain reference statistics",
    ) -> None:
        self.policy = policy
        self._scorer = scorer
        self._clock = clock
        self._lexicon = lexicon
        # The counterfactual probe's sampling draws from this, never from the global random.
        self._rng = rng if rng is not None else random.Random()
        self._store: MonitorStore = as_monitor_store(store if store is not None else InMemoryWindowStore())
        # The one lock around the state batches share (class docstring, "Locking").
        self._lock: AbstractContextManager[bool] = threading.RLock()
        # Probed once: a scorer (or a wrapper around one) reads a shared encoding or it does not.
        self._encoding_scorer: EncodingScorer | None = (
            scorer if scorer is not None and reuses_encoding(scorer) else None
        )
        self._toxicity_on = policy.enabled and policy.toxicity.enabled
        self._rates_on = policy.enabled and policy.rates.enabled
        if self._toxicity_on:
            self._check_scorer(scorer)
        self.resolver = GroupResolver(policy=policy.groups, lexicon=lexicon)
        self.metrics = GuardMetrics(registry=registry, groups=policy.label_values)
        self.metrics.policy_info.labels(version=policy.version).set(1)
        self.monitors: tuple[RateMonitor, ...] = tuple(self._new_monitor(m) for m in policy.rates.monitors)
        self._probe: CounterfactualProbe | None = self._new_probe(policy)
        self._probe_view = _ProbeView(self._probe, policy)
        # The domain-shift monitor needs the classifier's reference statistics; without
        # them (a model built before they existed) it is off and says why in the status.
        self._domain_reference = domain
        self._domain_unavailable = domain_unavailable
        self._domain: DomainMonitor | None = self._new_domain(policy)
        # Series that exist from the start, so rate() and alerts see 0 rather than nothing.
        self.metrics.monitor_errors.labels(monitor=TOXICITY_MONITOR)
        self._initialise_series(self.monitors)
        self.metrics.store_degraded.set(0)
        if self._store.scope == "fleet":
            for operation in STORE_OPERATIONS:
                for kind in STORE_ERRORS:
                    self.metrics.store_errors.labels(operation=operation, error=kind)

    def _new_monitor(self, config: RateMonitorPolicy) -> RateMonitor:
        return RateMonitor(
            monitor=config,
            rates=self.policy.rates,
            groups=self.policy.label_values,
            store=self._store,
            clock=self._clock,
        )

    def _new_probe(self, policy: Policy) -> CounterfactualProbe | None:
        """The counterfactual probe of ``policy`` (None when it is off); raises PolicyError for bad kinds."""
        section = policy.counterfactual
        if not (policy.enabled and section.enabled and section.sample > 0):
            return None
        lexicon = self._lexicon if self._lexicon is not None else Lexicon.from_yaml(policy.groups.lexicon)
        return CounterfactualProbe(
            policy=section,
            swapper=CounterfactualSwapper(lexicon=lexicon),
            metrics=self.metrics,
            rng=self._rng,
            label_values=frozenset(policy.label_values),
        )

    def _new_domain(self, policy: Policy) -> DomainMonitor | None:
        """The domain-shift monitor of ``policy`` (None when off or without reference statistics)."""
        if not (policy.enabled and policy.domain.enabled) or self._domain_reference is None:
            return None
        self.metrics.monitor_errors.labels(monitor=DOMAIN_MONITOR)
        try:
            return DomainMonitor(
                reference=self._domain_reference, policy=policy.domain, metrics=self.metrics, clock=self._clock
            )
        except Exception as error:  # degenerate statistics: serve without the monitor, say why
            logger.error("domain-shift monitor off: %s", error)
            self._domain_unavailable = str(error)
            return None

    def _domain_status(self) -> DomainStatus:
        if self._domain is not None:
            return self._domain.status()
        policy = self.policy
        if not policy.enabled:
            why = "the policy is disabled (enabled: false)"
        elif not policy.domain.enabled:
            why = "policy domain.enabled is false"
        else:
            why = self._domain_unavailable
        return off_status(policy.domain, why)

    def _initialise_series(self, monitors: Sequence[RateMonitor]) -> None:
        for monitor in monitors:
            self.metrics.monitor_errors.labels(monitor=monitor.name)
            for group in monitor.groups:
                self.metrics.alert_active.labels(monitor=monitor.name, group=group).set(0)

    # -- policy changes ---------------------------------------------------------------

    def apply_policy(self, policy: Policy, *, store: WindowStore | MonitorStore | None = None) -> PolicyChange:
        """Serve ``policy`` from the next batch on; validate first, so a refused one changes nothing.

        Raises :class:`PolicyError` (naming the key and the fix) when the policy does not fit
        this guard (toxicity categories the scorer lacks, toxicity on without a scorer);
        the old policy then keeps serving. The swap happens under :attr:`lock`, so no batch
        sees half of each policy.

        A rate monitor whose definition did not change (:func:`monitor_definition`: the
        monitor's entry, the window and test settings, the group vocabulary) keeps its
        object, windows, check schedule and alert board, so a reload that only moves a
        toxicity threshold does not throw away an hour of evidence. Changed and new monitors
        start with empty windows; the windows of changed and removed ones are forgotten.

        ``store``: a new window store for every monitor (the service passes one when the
        shared store is namespaced by policy version, so a new version starts new keys);
        then no monitor's windows are kept.
        """
        self._check_scorer(self._scorer, policy)
        with self._lock:
            old = self.policy
            # Built (and so validated) before anything changes; kept, with its figures, when
            # neither its section nor the lexicon changed.
            probe = self._probe if _same_probe(old, policy) else self._new_probe(policy)
            same_domain = old.enabled == policy.enabled and old.domain == policy.domain
            domain = self._domain if same_domain else self._new_domain(policy)
            old_monitors = {m.name: m for m in self.monitors}
            old_definitions = {m.name: monitor_definition(old, m.name) for m in self.monitors}
            new_store = as_monitor_store(store) if store is not None else None
            kept: list[str] = []
            fresh: list[RateMonitor] = []
            self.policy = policy
            if new_store is not None:
                self._store = new_store
            monitors: list[RateMonitor] = []
            for config in policy.rates.monitors:
                previous = old_monitors.get(config.name)
                if (
                    new_store is None
                    and previous is not None
                    and old_definitions[config.name] == monitor_definition(policy, config.name)
                ):
                    monitors.append(previous)
                    kept.append(config.name)
                else:
                    if previous is not None and new_store is None:
                        self._forget(previous)
                    monitor = self._new_monitor(config)
                    monitors.append(monitor)
                    fresh.append(monitor)
            names = {m.name for m in monitors}
            dropped = [name for name in old_monitors if name not in names]
            if new_store is None:
                for name in dropped:
                    self._forget(old_monitors[name])
            self.monitors = tuple(monitors)
            self._toxicity_on = policy.enabled and policy.toxicity.enabled
            self._rates_on = policy.enabled and policy.rates.enabled
            self.resolver = GroupResolver(policy=policy.groups, lexicon=self._lexicon)
            self._probe = probe
            self._probe_view = _ProbeView(probe, policy)  # one assignment: read without the lock
            self._domain = domain
            if domain is None:
                self.metrics.domain_alert.set(0)
            self.metrics.groups = frozenset(policy.label_values)
            if old.version != policy.version:
                self.metrics.policy_info.labels(version=old.version).set(0)
            self.metrics.policy_info.labels(version=policy.version).set(1)
            self._initialise_series(fresh)
            for name in dropped:
                for group in old_monitors[name].groups:
                    self.metrics.alert_active.labels(monitor=name, group=group).set(0)
        logger.info(
            "policy %s -> %s: monitors kept %s, started anew %s, removed %s",
            old.version,
            policy.version,
            kept or "none",
            [m.name for m in fresh] or "none",
            dropped or "none",
        )
        return PolicyChange(
            old_version=old.version,
            new_version=policy.version,
            kept=tuple(kept),
            reset=tuple(m.name for m in fresh),
            removed=tuple(dropped),
        )

    def _forget(self, monitor: RateMonitor, groups: Sequence[str] | None = None) -> None:
        """Empty ``monitor``'s windows and sequential evidence (of ``groups``, default all) in the store."""
        chosen = monitor.groups if groups is None else tuple(groups)
        forget_windows(self._store, [monitor.key(g) for g in chosen], spec=monitor.spec)
        monitor.reset_evidence(None if groups is None else chosen)

    def reset_windows(self, *, monitor: str | None = None, group: str | None = None) -> list[tuple[str, str]]:
        """Empty the windows of one monitor, one group (in every monitor), or one group of one monitor.

        Returns the (monitor, group) windows emptied. Alert boards and check schedules are
        left alone: an active alert clears at a later check, with hysteresis, like any other.
        Raises :class:`KeyError` naming the known monitors or groups when a name is unknown.
        """
        with self._lock:
            known = {m.name: m for m in self.monitors}
            if monitor is not None and monitor not in known:
                raise KeyError(
                    f"no rate monitor {monitor!r}; the policy has {', '.join(sorted(known)) or 'none'}"
                )
            groups = self.policy.label_values
            if group is not None and group not in groups:
                raise KeyError(f"no group {group!r}; the policy counts {', '.join(groups)}")
            emptied: list[tuple[str, str]] = []
            for target in self.monitors:
                if monitor is not None and target.name != monitor:
                    continue
                chosen = target.groups if group is None else (group,)
                self._forget(target, None if group is None else chosen)
                emptied += [(target.name, g) for g in chosen]
        logger.info("reset %d rate windows (monitor %s, group %s)", len(emptied), monitor or "all", group or "all")
        return emptied

    @property
    def probe_active(self) -> bool:
        """Whether :meth:`probe` would measure anything (the policy's probe is on and samples)."""
        probe = self._probe_view.probe
        return probe is not None and probe.active

    @property
    def lock(self) -> AbstractContextManager[bool]:
        """The guard's reentrant lock (class docstring, "Locking").

        Hold it (``with guard.lock: ...``) to make several calls one unit: the calls the
        guard makes under it nest, and status reads and other batches wait until it is
        released.
        """
        return self._lock

    @property
    def shares_encoding(self) -> bool:
        """Whether :meth:`screen` hands its ``encoding=`` to the scorer (an :class:`EncodingScorer`)."""
        return self._encoding_scorer is not None

    @property
    def store(self) -> MonitorStore:
        """Where the rate monitors keep windows, schedule and alerts."""
        return self._store

    @property
    def window_scope(self) -> str:
        return self._store.scope

    def _check_scorer(self, scorer: ToxicityScorer | None, policy: Policy | None = None) -> None:
        policy = policy if policy is not None else self.policy
        if not (policy.enabled and policy.toxicity.enabled):
            return
        if scorer is None:
            raise PolicyError(
                "toxicity.enabled is true but no scorer was given; pass scorer= "
                "(e.g. OnnxToxicityScorer.from_directory(...)) or set toxicity.enabled: false"
            )
        missing = [c for c in policy.toxicity.categories if c not in scorer.categories]
        if missing:
            raise PolicyError(
                f"toxicity.categories: the scorer has no {', '.join(repr(m) for m in missing)} "
                f"(it scores {', '.join(scorer.categories)}); remove them from the policy"
            )

    # -- before inference -------------------------------------------------------------

    def screen(
        self,
        texts: Sequence[str],
        groups: Sequence[RequestGroup] | None = None,
        *,
        stage: ScreenStage = "input",
        encoding: Encoding | None = None,
    ) -> list[Screen]:
        """Resolve groups and score toxicity for a batch; a provisional action per item.

        ``stage`` is ``input`` for request texts and ``output`` for text a model returns.
        ``encoding`` (an :class:`~fairgate.guardrails.encoding.Encoding` of ``texts``) is
        handed to a scorer that can reuse it (:attr:`shares_encoding`); the scorer itself
        checks that it was made the way its model reads text, and re-encodes otherwise.
        """
        if stage not in ("input", "output"):
            raise ValueError(f"stage {stage!r} is not input or output")
        n = len(texts)
        if groups is not None and len(groups) != n:
            raise ValueError(f"got {n} texts but {len(groups)} groups; pass one group (or None) per text")
        self.metrics.batch_size.labels(stage=stage).observe(n)
        if not self.policy.enabled:
            return [Screen(stage=stage) for _ in range(n)]
        resolved = self.resolver.resolve(texts, groups)
        if not (self._toxicity_on and stage in self.policy.toxicity.stages) or n == 0:
            return [Screen(stage=stage, groups=g) for g in resolved]
        started = time.perf_counter()
        try:
            scores = self._score(texts, encoding)
        except Exception:
            # Never log the texts: they are user data.
            logger.exception(
                "toxicity scorer failed on a batch of %d; on_error=%s", n, self.policy.toxicity.on_error
            )
            self.metrics.monitor_errors.labels(monitor=TOXICITY_MONITOR).inc()
            return [self._error_screen(stage, g) for g in resolved]
        finally:
            self.metrics.monitor_duration.labels(monitor=TOXICITY_MONITOR).observe(
                time.perf_counter() - started
            )
        histograms = {
            c: self.metrics.toxicity_score.labels(stage=stage, category=c) for c in self._scorer_categories()
        }
        screens = []
        for item_groups, row in zip(resolved, scores, strict=True):
            for category, score in row.items():
                histograms[category].observe(score)
            screens.append(self._toxicity_screen(stage, item_groups, row))
        return screens

    def _scorer_categories(self) -> list[str]:
        return list(self._scorer.categories) if self._scorer is not None else []

    def _score(self, texts: Sequence[str], encoding: Encoding | None) -> list[dict[str, float]]:
        scorer = self._scorer
        assert scorer is not None
        if encoding is not None and self._encoding_scorer is not None:
            raw = self._encoding_scorer.score(texts, encoding=encoding)
        else:
            raw = scorer.score(texts)
        return _score_rows(raw, len(texts), scorer.categories)

    def _error_screen(self, stage: ScreenStage, groups: tuple[str, ...]) -> Screen:
        action = self.policy.toxicity.on_error
        reasons: tuple[Reason, ...] = ()
        if action != "allow":
            reasons = (
                Reason(
                    monitor=TOXICITY_MONITOR,
                    stage=stage,
                    code="monitor_error",
                    action=action,
                    message=f"toxicity scorer failed; policy toxicity.on_error={action}",
                ),
            )
        return Screen(stage=stage, action=action, reasons=reasons, groups=groups)

    def _toxicity_screen(self, stage: ScreenStage, groups: tuple[str, ...], scores: dict[str, float]) -> Screen:
        return _toxicity_screen(self.policy, stage, groups, scores)

    # -- explanations -----------------------------------------------------------------

    def explain(
        self,
        texts: Sequence[str],
        *,
        categories: Sequence[str] | None = None,
        top_k: int = DEFAULT_TOP_K,
        screens: Sequence[Screen] | None = None,
        max_words: int = DEFAULT_MAX_WORDS,
        scorer: ToxicityScorer | None = None,
    ) -> list[Explanation]:
        """Which words made each text's toxicity scores: occlusion with the guard's own scorer.

        ``categories=None`` explains, per text, the categories that flag or block it under
        this guard's policy (the question a moderator asks of a flagged item); a list
        explains those categories for every text, whatever they score (``[]``: nothing).
        Pass the ``screens`` that :meth:`screen` returned for ``texts`` and the flagged
        categories are read from them instead of scoring the texts again; a text that
        nothing flags then costs nothing, and a batch where nothing flags makes no model
        call. Each explained category carries the action the policy takes at its score.
        The method and its cost are :mod:`fairgate.guardrails.explain`'s.

        ``scorer`` scores the masked texts instead of the guard's own scorer: the same
        guard's fp32 variant, because an int8 model's scores depend on the rows batched
        with it (dynamic quantisation), which blurs contributions (docs/guardrails.md,
        "Explanations"); fp32 contributions are exact. What flags is still the guard's call.

        Like :meth:`screen` it takes no lock (it reads only the policy and calls the
        scorer), and unlike it, it records no metrics: the masked variants of a text are
        not traffic, and counting them would skew the score histograms. A scorer failure
        is raised, not turned into ``on_error``: an explanation is not a decision.
        """
        if screens is not None and len(screens) != len(texts):
            raise ValueError(f"got {len(texts)} texts but {len(screens)} screens; pass the screens of these texts")
        explainer = scorer if scorer is not None else self._scorer
        actions: list[dict[str, Action]]
        if categories is not None:
            wanted = list(dict.fromkeys(categories))
            if wanted and explainer is None:
                raise ExplanationError(
                    "this guard has no toxicity scorer (the policy has toxicity.enabled: false); "
                    "pass scorer= (to this call or to Guard) to explain toxicity categories"
                )
            actions = [{} for _ in texts]
            targets = [wanted for _ in texts]
        elif self._scorer is None or not self._toxicity_on:
            return unexplained(texts)
        else:
            if screens is None:
                scores = self._score(texts, None) if texts else []
                screens = [self._toxicity_screen("input", (), row) for row in scores]
            actions = [
                {r.category: r.action for r in s.reasons if r.monitor == TOXICITY_MONITOR and r.category is not None}
                for s in screens
            ]
            targets = [list(found) for found in actions]
        if explainer is None or not any(targets):
            return unexplained(texts)
        explained = occlude(
            explainer.score, list(explainer.categories), texts, targets, top_k=top_k, max_words=max_words
        )
        # The screen's action where it had one (the decision being explained), else the
        # action the thresholds give the explanation's own score.
        results = []
        for item, acted in zip(explained, actions, strict=True):
            labels = tuple(
                label.model_copy(update={"action": acted.get(label.label) or self._action_at(label.label, label.score)})
                for label in item.labels
            )
            results.append(item.model_copy(update={"labels": labels}))
        return results

    def _action_at(self, category: str, score: float) -> Action:
        """What the policy's thresholds do with ``score`` in ``category`` (allow when it has none)."""
        return self._row_action({category: score})

    # -- the counterfactual probe -----------------------------------------------------

    def probe(
        self,
        texts: Sequence[str],
        screens: Sequence[Screen],
        labels: Sequence[str | None],
        *,
        scorer: ToxicityScorer | None = None,
        classifier: ProbeClassifier | None = None,
    ) -> list[ProbeRecord]:
        """Measure, on a sample of a decided batch, whether another group would have been answered differently.

        Call it after :meth:`review` with the batch's request ``texts``, their ``screens``
        and the classifier's ``labels``; ``classifier`` (labels and a probabilities function)
        adds the classifier's side. The method, its sampling and its cost bound are
        :mod:`fairgate.guardrails.probe`'s: at most one scorer call and one classifier call,
        of at most ``counterfactual.max_variants_per_batch`` rows each. ``scorer`` scores the
        variants instead of the guard's own scorer (the service passes the guard's model
        without the scorer deadline, as for explanations).

        It returns what it measured and changes nothing else: decisions are already made
        and are never revisited. It records the gap and flip metrics but not the toxicity
        score histograms (variants are not traffic). A failure is logged (without text),
        counted in the status, and returns no records; it never raises into the request.

        It never takes :attr:`lock` (the probe has its own small lock for its sampling and
        tallies), so it may run on another thread while the next batches are decided: the
        service runs it on a background thread
        (:class:`~fairgate.guardrails.probe_runner.BackgroundProbe`). A policy reload in
        the meantime leaves this call on the probe and policy it started with. Off the
        request thread, pass a ``scorer`` without a deadline (the service passes the guard's
        model itself): a deadline-wrapped scorer allows one call in flight, so a probe
        scoring through it would make a concurrent screen fail.
        """
        if len(screens) != len(texts) or len(labels) != len(texts):
            raise ValueError(
                f"got {len(texts)} texts, {len(screens)} screens and {len(labels)} labels; pass one of each per item"
            )
        view = self._probe_view  # probe, policy and switch of one policy, swapped in one assignment
        probe = view.probe
        if probe is None or not probe.active or not texts:
            return []
        guard: ProbeGuard | None = None
        toxicity_scorer = scorer if scorer is not None else self._scorer
        if view.toxicity_on and toxicity_scorer is not None:
            guard = ProbeGuard(
                score=lambda rows: self._score_with(toxicity_scorer, rows), action=self._row_action_of(view.policy)
            )
        started = time.perf_counter()
        try:
            return probe.run(texts, labels, guard=guard, classifier=classifier)
        except Exception:
            probe.failed()
            logger.exception("counterfactual probe failed on a batch of %d; the decisions stand", len(texts))
            return []
        finally:
            self.metrics.monitor_duration.labels(monitor=PROBE_MONITOR).observe(time.perf_counter() - started)

    def _score_with(self, scorer: ToxicityScorer, texts: Sequence[str]) -> list[dict[str, float]]:
        """``scorer``'s rows as ``{category: score}``, checked like the screen's (shape, finite)."""
        return _score_rows(scorer.score(texts), len(texts), scorer.categories)

    def _row_action(self, scores: Mapping[str, float]) -> Action:
        """The toxicity action the policy's thresholds give a row of scores."""
        return _toxicity_screen(self.policy, "input", (), dict(scores)).action

    @staticmethod
    def _row_action_of(policy: Policy) -> Callable[[Mapping[str, float]], Action]:
        """:meth:`_row_action` fixed to ``policy`` (a probe off the lock keeps the policy it started with)."""
        return lambda scores: _toxicity_screen(policy, "input", (), dict(scores)).action

    # -- after inference --------------------------------------------------------------

    def review(
        self,
        screens: Sequence[Screen],
        labels: Sequence[str | None],
        *,
        embeddings: np.ndarray | None = None,
    ) -> list[Decision]:
        """Record outcomes per group, run the rate monitors, and decide each item.

        ``labels`` holds the classifier's label per item, None where the screen blocked the
        item (or it was not classified). Items in several groups count in each.
        ``embeddings`` (``[n, d]``, rows of NaN for items not classified) are the
        classifier's pooled embeddings, for the domain-shift monitor; None skips it.
        """
        if len(screens) != len(labels):
            raise ValueError(
                f"got {len(screens)} screens but {len(labels)} labels; pass one label (or None) per screen"
            )
        self.metrics.batch_size.labels(stage="review").observe(len(screens))
        groups = [tuple(self.metrics.group_label(g) for g in s.groups) for s in screens]
        extra: list[list[Reason]] = [[] for _ in screens]
        if self._rates_on and screens and self.monitors:
            with self._lock:
                self._run_monitors(screens, labels, groups, extra)
        domain_scores: list[float | None] = [None] * len(screens)
        if self._domain is not None and embeddings is not None and screens:
            with self._lock:
                domain_scores = self._run_domain(embeddings, len(screens), extra)
        decisions = []
        tally: Counter[tuple[str, str]] = Counter()
        for screen, label, item_groups, more, domain_score in zip(
            screens, labels, groups, extra, domain_scores, strict=True
        ):
            reasons = (*screen.reasons, *more)
            action = most_severe([screen.action, *(r.action for r in more)])
            ordered = tuple(sorted(reasons, key=lambda r: -SEVERITY[r.action]))
            decision = Decision(
                action=action,
                reasons=ordered,
                toxicity=screen.toxicity,
                groups=item_groups,
                label=label,
                domain_score=domain_score,
            )
            tally[(action, decision.reason_code)] += 1
            decisions.append(decision)
        for (decided, reason), count in tally.items():
            self.metrics.decisions.labels(action=decided, reason=reason).inc(count)
        return decisions

    def _run_monitors(
        self,
        screens: Sequence[Screen],
        labels: Sequence[str | None],
        groups: Sequence[tuple[str, ...]],
        extra: list[list[Reason]],
    ) -> None:
        """All rate monitors as one stage: one store call records every monitor's batch."""
        started = time.perf_counter()
        try:
            batches = []
            for monitor in self.monitors:
                items = []
                tally: Counter[tuple[str, str]] = Counter()
                for screen, label, item_groups in zip(screens, labels, groups, strict=True):
                    hit, outcome = _observe(monitor, screen, label)
                    items.append((item_groups, hit))
                    if outcome is not None:
                        for group in item_groups:
                            tally[(group, outcome)] += 1
                for (group, outcome), count in tally.items():
                    self.metrics.outcomes.labels(monitor=monitor.name, group=group, outcome=outcome).inc(count)
                batches.append(monitor.batch(items))
            now = self._clock()
            reply = self._call_store("record", lambda: self._store.record(batches, now=now))
            if reply is None:  # a shared store without a local fallback failed
                for monitor in self.monitors:
                    self._monitor_error(monitor, extra, "its window store failed")
                return
            before = {m.name: _board_view(m) for m in self.monitors}
            pending: list[tuple[RateMonitor, PendingCheck]] = []
            for monitor in self.monitors:
                check = monitor.absorb(reply.monitors[monitor.name])
                if check is not None:
                    pending.append((monitor, check))
            if pending:
                published = self._call_store("publish", lambda: self._store.publish([p.update for _, p in pending]))
                if published is not None:
                    for monitor, check in pending:
                        monitor.settle(check, published.monitors[monitor.name])
            for monitor in self.monitors:
                if _board_changed(before[monitor.name], monitor):
                    self._export(monitor)
            if reply.degraded:
                for monitor in self.monitors:
                    self._monitor_error(
                        monitor, extra, "the shared window store is unavailable (judged on this worker's windows)"
                    )
        except Exception:
            logger.exception(
                "rate monitors failed on a batch of %d; on_error=%s", len(screens), self.policy.rates.on_error
            )
            for monitor in self.monitors:
                self._monitor_error(monitor, extra, "it failed")
            return
        finally:
            elapsed = time.perf_counter() - started
            for monitor in self.monitors:
                self.metrics.monitor_duration.labels(monitor=monitor.name).observe(elapsed)
        action: Action = self.policy.rates.action
        everyone = self.policy.rates.scope == "all"
        for monitor in self.monitors:
            active = monitor.active
            if not active:
                continue
            for item_groups, reasons in zip(groups, extra, strict=True):
                affected = sorted(active) if everyone else sorted(active.intersection(item_groups))
                for group in affected:
                    reasons.append(self._rate_reason(monitor, group, action))

    def _run_domain(self, embeddings: np.ndarray, n: int, extra: list[list[Reason]]) -> list[float | None]:
        """The domain-shift monitor on a batch: each item's score; a failure is logged, never decides."""
        monitor = self._domain
        assert monitor is not None
        started = time.perf_counter()
        try:
            if len(embeddings) != n:
                raise ValueError(f"got {len(embeddings)} embedding rows for {n} items; pass one row (or NaN) per item")
            review = monitor.review(embeddings)
        except Exception:
            logger.exception("the domain monitor failed on a batch of %d; the decisions stand", n)
            self.metrics.monitor_errors.labels(monitor=DOMAIN_MONITOR).inc()
            return [None] * n
        finally:
            self.metrics.monitor_duration.labels(monitor=DOMAIN_MONITOR).observe(time.perf_counter() - started)
        for reasons, reason in zip(extra, review.reasons, strict=True):
            if reason is not None:
                reasons.append(reason)
        return [None if math.isnan(v) else round(float(v), 6) for v in review.scores]

    @property
    def domain(self) -> DomainMonitor | None:
        """The domain-shift monitor, when it runs (policy on and reference statistics given)."""
        return self._domain

    def _call_store(self, operation: str, call: Callable[[], StoreReply]) -> StoreReply | None:
        """One store call, timed and counted; None when a store without fallback raised."""
        started = time.perf_counter()
        try:
            reply = call()
        except StoreError as error:
            logger.error("window store %s failed: %s", operation, error)
            kind = self.metrics.store_error_label(error.kind)
            self.metrics.store_errors.labels(operation=operation, error=kind).inc()
            self.metrics.store_degraded.set(1)
            return None
        finally:
            self.metrics.store_duration.labels(operation=operation).observe(time.perf_counter() - started)
        if reply.error is not None:
            kind = self.metrics.store_error_label(reply.error)
            self.metrics.store_errors.labels(operation=operation, error=kind).inc()
        self.metrics.store_degraded.set(1 if reply.degraded else 0)
        return reply

    def _monitor_error(self, monitor: RateMonitor, extra: list[list[Reason]], why: str) -> None:
        rates = self.policy.rates
        self.metrics.monitor_errors.labels(monitor=monitor.name).inc()
        if rates.on_error == "allow":
            return
        reason = Reason(
            monitor=monitor.name,
            stage="review",
            code="monitor_error",
            action=rates.on_error,
            message=f"rate monitor {monitor.name}: {why}; policy rates.on_error={rates.on_error}",
        )
        for reasons in extra:
            reasons.append(reason)

    def _rate_reason(self, monitor: RateMonitor, group: str, action: Action) -> Reason:
        figures = monitor.last.groups.get(group) if monitor.last else None
        ratio = figures.impact_ratio if figures else float("nan")
        bound = self.policy.rates.impact_ratio.min if self.policy.rates.impact_ratio else None
        reference = monitor.last.reference if monitor.last else None
        how = f"at {self.policy.rates.confidence:.0%} confidence"
        if monitor.method == "sequential" and figures is not None:
            against = figures.evidence_against or reference
            how = f"sequential evidence {figures.evidence:.2f} x threshold vs {against}"
        return Reason(
            monitor=monitor.name,
            stage="review",
            code=f"rate_{monitor.name}",
            action=action,
            group=group,
            value=None if math.isnan(ratio) else ratio,
            threshold=bound,
            message=(
                f"{monitor.name}: group {group} impact ratio {ratio:.3f} vs {reference} "
                f"(bound {bound}) {how}; scope {self.policy.rates.scope}"
            ),
        )

    def _export(self, monitor: RateMonitor) -> None:
        """Gauges from the monitor's board: whichever worker ran the check, every worker exports it."""
        last = monitor.last
        active = monitor.active
        for group in monitor.groups:
            figures = last.groups.get(group) if last is not None else None
            if figures is not None:
                self.metrics.group_rate.labels(monitor=monitor.name, group=group).set(figures.rate)
                self.metrics.impact_ratio.labels(monitor=monitor.name, group=group).set(figures.impact_ratio)
                self.metrics.impact_ratio_bound.labels(monitor=monitor.name, group=group).set(figures.ratio_upper)
                self.metrics.rate_evidence.labels(monitor=monitor.name, group=group).set(figures.evidence)
            self.metrics.alert_active.labels(monitor=monitor.name, group=group).set(1 if group in active else 0)

    # -- reporting --------------------------------------------------------------------

    def check(self) -> None:
        """Run every rate monitor's check now (operators, status endpoints, tests)."""
        with self._lock:
            for monitor in self.monitors:
                monitor.check()
                self._export(monitor)

    def status(self) -> GuardStatus:
        """Windows, rates, ratios and alerts of every rate monitor, as of its last check."""
        with self._lock:
            return self._status()

    def _status(self) -> GuardStatus:
        reply: StoreReply | None = None
        if self.monitors:
            now = self._clock()
            queries = [m.query() for m in self.monitors]
            reply = self._call_store("snapshot", lambda: self._store.snapshot(queries, now=now))
        monitors = []
        for monitor in self.monitors:
            found = reply.monitors.get(monitor.name) if reply is not None else None
            counts = {}
            if found is not None:
                before = _board_view(monitor)
                monitor.adopt(found.board)
                if _board_changed(before, monitor):
                    self._export(monitor)
                counts = dict(found.counts or {})
            last = monitor.last
            groups = []
            for group in monitor.groups:
                figures = last.groups.get(group) if last else None
                c = counts.get(group, WindowCounts(0, 0))
                groups.append(
                    GroupStatus(
                        group=group,
                        n=c.n,
                        positives=c.positives,
                        rate=_finite(c.rate),
                        impact_ratio=_finite(figures.impact_ratio) if figures else None,
                        ratio_upper=_finite(figures.ratio_upper) if figures else None,
                        parity_difference=_finite(figures.parity_difference) if figures else None,
                        status=figures.status if figures else "not_checked",
                        alert=group in monitor.active,
                        evidence=_finite(figures.evidence) if figures else None,
                        evidence_against=figures.evidence_against if figures else None,
                    )
                )
            monitors.append(
                MonitorStatus(
                    name=monitor.name,
                    source=monitor.config.source,
                    outcome=monitor.config.outcome,
                    harm=monitor.config.harm,
                    method=monitor.rates.method,
                    reference=last.reference if last else None,
                    alerts_raised=monitor.alerts_raised,
                    checks=monitor.checks,
                    active=sorted(monitor.active),
                    checked=last is not None,
                    groups=groups,
                )
            )
        return GuardStatus(
            policy_version=self.policy.version,
            enabled=self.policy.enabled,
            toxicity_enabled=self._toxicity_on,
            rates_enabled=self._rates_on,
            window_scope="fleet" if self._store.scope == "fleet" else "worker",
            degraded=(reply is None and bool(self.monitors)) or (reply is not None and reply.degraded),
            monitors=monitors,
            counterfactual=(
                self._probe.status() if self._probe is not None else disabled_status(self.policy.counterfactual)
            ),
            domain=self._domain_status(),
        )


@dataclass(frozen=True, slots=True)
class _ProbeView:
    """What :meth:`Guard.probe` reads of one policy, swapped whole so it needs no lock."""

    probe: CounterfactualProbe | None
    policy: Policy

    @property
    def toxicity_on(self) -> bool:
        return self.policy.enabled and self.policy.toxicity.enabled


def _toxicity_screen(policy: Policy, stage: ScreenStage, groups: tuple[str, ...], scores: dict[str, float]) -> Screen:
    """What ``policy``'s toxicity thresholds do with one row of scores: action and reasons."""
    reasons: list[Reason] = []
    action: Action
    threshold: float
    for category, score in scores.items():
        bounds = policy.toxicity.categories.get(category)
        if bounds is None:
            continue
        if bounds.block is not None and score >= bounds.block:
            action, threshold = "block", bounds.block
        elif bounds.flag is not None and score >= bounds.flag:
            action, threshold = "flag", bounds.flag
        else:
            continue
        reasons.append(
            Reason(
                monitor=TOXICITY_MONITOR,
                stage=stage,
                code=f"toxicity_{category}",
                action=action,
                category=category,
                value=score,
                threshold=threshold,
                message=f"{category} score {score:.3f} >= {action} threshold {threshold}",
            )
        )
    reasons.sort(key=lambda r: (r.action != "block", -(r.value or 0.0)))
    return Screen(
        stage=stage,
        action=most_severe([r.action for r in reasons]),
        reasons=tuple(reasons),
        toxicity=scores,
        groups=groups,
    )


def _same_probe(old: Policy, new: Policy) -> bool:
    """Whether ``new`` probes exactly as ``old`` does (then the probe and its figures are kept)."""
    return (
        old.enabled == new.enabled
        and old.counterfactual == new.counterfactual
        and old.groups.lexicon == new.groups.lexicon
        and old.label_values == new.label_values
    )


def _score_rows(raw: object, n_texts: int, categories: Sequence[str]) -> list[dict[str, float]]:
    """A scorer's output as one ``{category: score}`` per text, refused unless it has one
    finite row per text and one column per category (a broken model must not decide)."""
    array = np.asarray(raw, dtype=np.float64)
    names = list(categories)
    if array.shape != (n_texts, len(names)):
        raise ValueError(f"scorer returned shape {array.shape}, expected {(n_texts, len(names))}")
    if not np.all(np.isfinite(array)):
        raise ValueError("scorer returned non-finite scores")
    return [dict(zip(names, map(float, row), strict=True)) for row in array]


def _board_view(monitor: RateMonitor) -> tuple[object, frozenset[str]]:
    """What the gauges show of a monitor's board: its last check and its active set."""
    return monitor.last, monitor.active


def _board_changed(before: tuple[object, frozenset[str]], monitor: RateMonitor) -> bool:
    return monitor.last is not before[0] or monitor.active != before[1]


def _finite(value: float) -> float | None:
    return None if value is None or math.isnan(value) or math.isinf(value) else value


def _observe(monitor: RateMonitor, screen: Screen, label: str | None) -> tuple[bool | None, str | None]:
    """Whether the item counts as the monitored outcome, and the outcome label for metrics."""
    config = monitor.config
    if config.source == "label":
        if label is None:
            return None, None
        return label == config.outcome, label
    if config.outcome == "block":
        return screen.action == "block", screen.action
    return screen.action in ("flag", "block"), screen.action
