"""The live counterfactual probe: would the answer have been the same for another group?

On a random sample of a batch's items, every item whose text names a group of one of the
policy's kinds (the identity lexicon's axes: religion, gender, ...) is written again once
per other group of that kind, with the same swapper the guard's training-time augmentation
uses (:class:`~fairgate.guardrails.identity.CounterfactualSwapper`: one module knows what a
mention is and how another group's term is written in its place). The originals and their
variants are scored together, one call per model per batch, and the probe records per
(item, kind):

* the **counterfactual gap**: max - min over the original and its variants of the guard's
  toxicity score (the ``toxicity`` category; the highest category score for a scorer
  without it), and of the classifier's probabilities (the largest spread of any label's);
* the **flips**: the variants whose guard action (the policy's thresholds on their scores)
  or classifier label differs from the original's in the same call.

Why the original is scored again with its variants rather than taken from the screen: a
dynamically quantised model's scores depend on the rows batched with it, so a gap between
rows of different calls would partly be batching noise; within one call it is not.

It is a measurement and nothing else: it runs after the decision, returns records that
carry no text, and never changes an action, a reason or a label. Its cost is bounded by
``counterfactual.max_variants_per_batch``: the rows scored per model per batch, the
originals included; a probe that does not fit is skipped and counted (``skipped``).
Sampling draws from the random source passed in (one draw per item of a batch while
``sample`` > 0), so tests make it deterministic with a seeded ``random.Random``.

The running figures (``status``) are this process's, since the guard started or the
probe's policy changed; the Prometheus metrics add up over workers and replicas.

The probe keeps a small lock of its own around its sampling and its tallies, and holds
no lock while the models score: a probe scores up to ``max_variants_per_batch`` rows per
model, which costs several requests' worth of model time, and the service runs it on a
background thread (:class:`~fairgate.guardrails.probe_runner.BackgroundProbe`) so that no
request waits for it.
"""

from __future__ import annotations

import logging
import random
import threading
from collections import Counter
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from fairgate.guardrails.contracts import Action
from fairgate.guardrails.decision import (
    CounterfactualKindStatus,
    CounterfactualModelStatus,
    CounterfactualStatus,
    GroupCount,
)
from fairgate.guardrails.identity import Counterfactual, CounterfactualSwapper
from fairgate.guardrails.metrics import GuardMetrics
from fairgate.guardrails.policy import CounterfactualPolicy, PolicyError

__all__ = [
    "UNFAVOURED_MIN_GAP",
    "CounterfactualProbe",
    "ProbeClassifier",
    "ProbeGuard",
    "ProbeModelResult",
    "ProbeRecord",
]

logger = logging.getLogger(__name__)

ProbeModelName = Literal["guard", "classifier"]
MODELS: tuple[ProbeModelName, ...] = ("guard", "classifier")
# A probe whose guard gap is at least this counts its most toxic version's group as the
# unfavoured side in the status; below it the difference is within the identity set's
# fairness target (README, "mean counterfactual gap <= 0.05") and names nobody.
UNFAVOURED_MIN_GAP = 0.05
# Groups listed per kind in the status, most often unfavoured first.
UNFAVOURED_SHOWN = 5


@dataclass(frozen=True, slots=True)
class ProbeGuard:
    """The guard as the probe calls it: scores per row, and the action the policy takes on them.

    ``score`` returns one ``{category: score}`` per text; ``action`` what the toxicity
    thresholds do with such a row. :meth:`fairgate.guardrails.Guard.probe` builds it.
    """

    score: Callable[[Sequence[str]], list[dict[str, float]]]
    action: Callable[[Mapping[str, float]], Action]


@dataclass(frozen=True, slots=True)
class ProbeClassifier:
    """The classifier as the probe calls it: ``predict(texts)`` -> probabilities ``[n, labels]``."""

    labels: tuple[str, ...]
    predict: Callable[[Sequence[str]], np.ndarray]


@dataclass(frozen=True, slots=True, kw_only=True)
class ProbeModelResult:
    """One model's view of one probe: row 0 is the original, then one row per target group."""

    model: ProbeModelName
    scores: tuple[float, ...]  # guard: toxicity per row; classifier: the original label's probability
    outcomes: tuple[str, ...]  # guard: action per row; classifier: label per row
    gap: float
    flips: tuple[str, ...]  # target groups whose outcome differs from the original's


@dataclass(frozen=True, slots=True, kw_only=True)
class ProbeRecord:
    """One probed (item, kind). No text: the variants are rebuilt from the lexicon, never kept."""

    item: int
    kind: str
    source_groups: tuple[str, ...]
    target_groups: tuple[str, ...]
    guard: ProbeModelResult | None
    classifier: ProbeModelResult | None


@dataclass(slots=True)
class _Plan:
    item: int
    kind: str
    source_groups: tuple[str, ...]
    target_groups: tuple[str, ...]
    original_row: int
    rows: list[int]  # rows of the variants, in target order


@dataclass(slots=True)
class _ModelTally:
    probes: int = 0
    variants: int = 0
    gap_sum: float = 0.0
    gap_max: float = 0.0
    flips: int = 0


@dataclass(slots=True)
class _KindTally:
    items: int = 0
    skipped: int = 0
    models: dict[ProbeModelName, _ModelTally] = field(default_factory=lambda: {m: _ModelTally() for m in MODELS})
    unfavoured: Counter[str] = field(default_factory=Counter)


class CounterfactualProbe:
    """Samples items, writes their counterfactual variants, scores them once per model, records the gaps.

    Built by :class:`~fairgate.guardrails.Guard` from the policy's ``counterfactual``
    section; everything is passed in: the swapper (the guard's lexicon), the metrics (the
    guard's registry), ``rng``, the random source of the sampling, and ``label_values``, the
    group label values of the policy. Thread-safe: the sampling draws and the tallies are
    behind the probe's own lock, which is never held while a model scores, so a probe in
    flight on one thread never holds up a status read or a batch on another.

    Raises :class:`PolicyError` naming the key and the fix when a kind is not an axis of
    the lexicon, has a single group, or needs more rows than ``max_variants_per_batch``.
    """

    def __init__(
        self,
        *,
        policy: CounterfactualPolicy,
        swapper: CounterfactualSwapper,
        metrics: GuardMetrics,
        rng: random.Random,
        label_values: Collection[str],
    ) -> None:
        self.policy = policy
        self._swapper = swapper
        self._metrics = metrics
        self._rng = rng
        axes = {axis: tuple(groups) for axis, groups in swapper.lexicon.terms.items()}
        self.kinds: tuple[str, ...] = _chosen_kinds(policy, axes)
        self._groups = {kind: axes[kind] for kind in self.kinds}
        self._tallies = {kind: _KindTally() for kind in self.kinds}
        self._sampled = 0
        self._errors = 0
        self._lock = threading.Lock()  # the rng draws and the tallies; never held while scoring
        # Series that exist from the start, so rate() and the alert see 0 rather than nothing.
        # ``label_values``: the policy's group label values (the metrics' own may still be the
        # previous policy's while a reload builds this probe).
        for kind in self.kinds:
            for model in MODELS:
                metrics.counterfactual_variants.labels(kind=kind, model=model)
                for group in sorted({g if g in label_values else "other" for g in self._groups[kind]}):
                    metrics.counterfactual_flips.labels(kind=kind, model=model, group=group)

    @property
    def active(self) -> bool:
        return self.policy.enabled and self.policy.sample > 0

    def run(
        self,
        texts: Sequence[str],
        labels: Sequence[str | None],
        *,
        guard: ProbeGuard | None,
        classifier: ProbeClassifier | None,
    ) -> list[ProbeRecord]:
        """Probe a sample of ``texts`` (the batch's request texts); one record per probed (item, kind).

        ``labels`` are the classifier's labels of the batch (None where the item was blocked
        or not classified): only labelled items are probed on the classifier, as only they
        reached it. ``guard`` or ``classifier`` None leaves that model out. A model failure
        raises; the guard logs it and the decision stands.
        """
        if len(labels) != len(texts):
            raise ValueError(f"got {len(texts)} texts but {len(labels)} labels; pass one label (or None) per text")
        if not self.active or not texts or (guard is None and classifier is None):
            return []
        with self._lock:  # only the draws: the swaps and the scoring run outside the lock
            chosen = self._draw(len(texts))
        rows, plans, skipped = self._plan(texts, chosen)
        if skipped:
            with self._lock:
                for kind in skipped:
                    self._tallies[kind].skipped += 1
        if not plans:
            return []
        guard_results = self._run_guard(guard, rows, plans) if guard is not None else {}
        classifier_results = self._run_classifier(classifier, rows, plans, labels) if classifier is not None else {}
        records = [
            ProbeRecord(
                item=plan.item,
                kind=plan.kind,
                source_groups=plan.source_groups,
                target_groups=plan.target_groups,
                guard=guard_results.get(k),
                classifier=classifier_results.get(k),
            )
            for k, plan in enumerate(plans)
        ]
        with self._lock:
            for record in records:
                self._record(record)
        return records

    def failed(self) -> None:
        """Count a failed probe (the guard logs it; the status shows the count)."""
        with self._lock:
            self._errors += 1

    # -- planning ---------------------------------------------------------------------

    def _draw(self, n: int) -> list[int]:
        """The items of a batch of ``n`` drawn by the sample (one draw per item; under the lock)."""
        sample = self.policy.sample
        chosen = [item for item in range(n) if self._rng.random() < sample]  # never depends on the text
        self._sampled += len(chosen)
        return chosen

    def _plan(self, texts: Sequence[str], chosen: Sequence[int]) -> tuple[list[str], list[_Plan], list[str]]:
        """The drawn items' rows (originals and variants) within the budget, what each probe reads,
        and the kind of every probe skipped for the budget (pure: no state is touched)."""
        budget = self.policy.max_variants_per_batch
        rows: list[str] = []
        plans: list[_Plan] = []
        skipped: list[str] = []
        for item in chosen:
            text = texts[item]
            by_kind: dict[str, list[Counterfactual]] = {}
            for variant in self._swapper.counterfactuals(text, axes=self.kinds):
                by_kind.setdefault(variant.axis, []).append(variant)
            original: int | None = None
            for kind in self.kinds:
                variants = by_kind.get(kind)
                if not variants:
                    continue
                need = len(variants) + (1 if original is None else 0)
                if len(rows) + need > budget:
                    skipped.append(kind)
                    continue
                if original is None:
                    original = len(rows)
                    rows.append(text)
                first = len(rows)
                rows.extend(v.text for v in variants)
                plans.append(
                    _Plan(
                        item=item,
                        kind=kind,
                        source_groups=variants[0].source_groups,
                        target_groups=tuple(v.target_group for v in variants),
                        original_row=original,
                        rows=list(range(first, len(rows))),
                    )
                )
        return rows, plans, skipped

    # -- scoring ----------------------------------------------------------------------

    def _run_guard(self, guard: ProbeGuard, rows: list[str], plans: list[_Plan]) -> dict[int, ProbeModelResult]:
        scored = guard.score(rows)
        if len(scored) != len(rows):
            raise ValueError(f"the guard scored {len(scored)} rows of {len(rows)}")
        values = [_toxicity(row) for row in scored]
        actions = [guard.action(row) for row in scored]
        results = {}
        for k, plan in enumerate(plans):
            order = [plan.original_row, *plan.rows]
            scores = tuple(values[r] for r in order)
            outcomes = tuple(actions[r] for r in order)
            results[k] = _result("guard", scores, outcomes, max(scores) - min(scores), plan.target_groups)
        return results

    def _run_classifier(
        self, classifier: ProbeClassifier, rows: list[str], plans: list[_Plan], labels: Sequence[str | None]
    ) -> dict[int, ProbeModelResult]:
        chosen = [k for k, plan in enumerate(plans) if labels[plan.item] is not None]
        if not chosen:
            return {}
        needed = sorted({r for k in chosen for r in (plans[k].original_row, *plans[k].rows)})
        position = {r: n for n, r in enumerate(needed)}
        probabilities = np.asarray(classifier.predict([rows[r] for r in needed]), dtype=np.float64)
        if probabilities.shape != (len(needed), len(classifier.labels)):
            raise ValueError(
                f"the classifier returned shape {probabilities.shape}, expected {(len(needed), len(classifier.labels))}"
            )
        if not np.all(np.isfinite(probabilities)):  # as the guard's rows: a NaN gap would poison the figures
            raise ValueError(f"the classifier returned non-finite probabilities for {len(needed)} rows")
        names = classifier.labels
        results = {}
        for k in chosen:
            plan = plans[k]
            block = probabilities[[position[r] for r in (plan.original_row, *plan.rows)]]
            predicted = block.argmax(axis=1)
            outcomes = tuple(names[int(p)] for p in predicted)
            scores = tuple(float(v) for v in block[:, int(predicted[0])])
            gap = float((block.max(axis=0) - block.min(axis=0)).max())
            results[k] = _result("classifier", scores, outcomes, gap, plan.target_groups)
        return results

    # -- recording --------------------------------------------------------------------

    def _record(self, record: ProbeRecord) -> None:
        metrics = self._metrics
        tally = self._tallies[record.kind]
        tally.items += 1
        for result in (record.guard, record.classifier):
            if result is None:
                continue
            model = tally.models[result.model]
            model.probes += 1
            model.variants += len(record.target_groups)
            model.gap_sum += result.gap
            model.gap_max = max(model.gap_max, result.gap)
            model.flips += len(result.flips)
            metrics.counterfactual_gap.labels(kind=record.kind, model=result.model).observe(result.gap)
            metrics.counterfactual_variants.labels(kind=record.kind, model=result.model).inc(len(record.target_groups))
            for group in result.flips:
                metrics.counterfactual_flips.labels(
                    kind=record.kind, model=result.model, group=metrics.group_label(group)
                ).inc()
        guard = record.guard
        if guard is not None and guard.gap >= UNFAVOURED_MIN_GAP:
            top = int(np.argmax(guard.scores))
            for group in record.source_groups if top == 0 else (record.target_groups[top - 1],):
                tally.unfavoured[group] += 1

    def status(self) -> CounterfactualStatus:
        """Per kind: items probed, mean and largest gap, flips and flip rate per model, unfavoured groups."""
        with self._lock:
            return self._status()

    def _status(self) -> CounterfactualStatus:
        kinds = []
        for kind, tally in self._tallies.items():
            models = [
                CounterfactualModelStatus(
                    model=name,
                    probes=t.probes,
                    variants=t.variants,
                    mean_gap=t.gap_sum / t.probes if t.probes else None,
                    max_gap=t.gap_max if t.probes else None,
                    flips=t.flips,
                    flip_rate=t.flips / t.variants if t.variants else None,
                )
                for name, t in tally.models.items()
            ]
            unfavoured = [GroupCount(group=g, count=c) for g, c in tally.unfavoured.most_common(UNFAVOURED_SHOWN)]
            kinds.append(
                CounterfactualKindStatus(
                    kind=kind, items=tally.items, skipped=tally.skipped, models=models, unfavoured=unfavoured
                )
            )
        return CounterfactualStatus(
            enabled=self.active,
            sample=self.policy.sample,
            max_variants_per_batch=self.policy.max_variants_per_batch,
            sampled=self._sampled,
            errors=self._errors,
            kinds=kinds,
        )


def disabled_status(policy: CounterfactualPolicy) -> CounterfactualStatus:
    """The status of a guard whose probe is off (the policy's figures, nothing probed)."""
    return CounterfactualStatus(
        enabled=False,
        sample=policy.sample,
        max_variants_per_batch=policy.max_variants_per_batch,
        sampled=0,
        errors=0,
        kinds=[],
    )


def _result(
    model: ProbeModelName, scores: tuple[float, ...], outcomes: tuple[str, ...], gap: float, targets: tuple[str, ...]
) -> ProbeModelResult:
    flips = tuple(group for group, outcome in zip(targets, outcomes[1:], strict=True) if outcome != outcomes[0])
    return ProbeModelResult(model=model, scores=scores, outcomes=outcomes, gap=float(gap), flips=flips)


def _toxicity(row: Mapping[str, float]) -> float:
    """The figure the guard's gap is taken on: ``toxicity``, else the highest category."""
    value = row.get("toxicity")
    return float(value) if value is not None else max(map(float, row.values()), default=0.0)


def _chosen_kinds(policy: CounterfactualPolicy, axes: Mapping[str, tuple[str, ...]]) -> tuple[str, ...]:
    """The policy's kinds checked against the lexicon (None: every axis with two groups or more)."""
    if policy.kinds is None:
        kinds = tuple(axis for axis, groups in axes.items() if len(groups) >= 2)
    else:
        kinds = policy.kinds
        unknown = [k for k in kinds if k not in axes]
        if unknown:
            raise PolicyError(
                f"counterfactual.kinds: {', '.join(map(repr, unknown))} is not a kind of the identity lexicon; "
                f"use some of {', '.join(axes)} (its axes) or remove the key for all of them"
            )
        single = [k for k in kinds if len(axes[k]) < 2]
        if single:
            raise PolicyError(
                f"counterfactual.kinds: {', '.join(map(repr, single))} has a single group in the identity "
                "lexicon, so there is no other group to swap in; remove it from counterfactual.kinds"
            )
    budget = policy.max_variants_per_batch
    for kind in kinds:
        need = len(axes[kind])  # the text and one variant per other group of the kind
        if need > budget:
            raise PolicyError(
                f"counterfactual.max_variants_per_batch = {budget} is below the {need} rows one probe of kind "
                f"{kind!r} scores (the text and a variant per other group); raise it to at least {need} "
                f"or remove {kind!r} from counterfactual.kinds"
            )
    return kinds
