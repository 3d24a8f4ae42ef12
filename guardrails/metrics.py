"""Every fairgate metric (docs/CONTRACTS.md section 4), registered in the registry passed in.

The service records inference time, batch sizes and model info through the same object
(``guard.metrics``) so each name is registered exactly once per registry. Gauges set
``multiprocess_mode`` because BentoML runs several workers in Prometheus multiprocess mode:
rates and ratios report the most recent worker's view (``mostrecent``), alert state the
worst (``max``: any worker alerting shows as alerting), info gauges ``max``.

The ``fairgate_store_*`` metrics describe the round trips to a shared window store
(Redis); their labels are bounded by code: ``operation`` is one of :data:`STORE_OPERATIONS`
and ``error`` one of :data:`STORE_ERRORS`.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

SCORE_BUCKETS = (0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)
MONITOR_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
INFERENCE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
STORE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25)
STORE_OPERATIONS = ("record", "publish", "snapshot")
STORE_ERRORS = ("timeout", "connection", "response")
# Counterfactual gaps (0..1): fine steps below 0.1, where a fair model's gaps live.
GAP_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0)
# Domain scores are relative to the build-time quantile: 1 is the out-of-domain line.
DOMAIN_BUCKETS = (0.25, 0.5, 0.75, 0.9, 1.0, 1.1, 1.25, 1.5, 2.0, 3.0, 5.0, 10.0)


class GuardMetrics:
    """The metric objects, plus ``group_label`` that keeps group label values bounded."""

    def __init__(self, *, registry: CollectorRegistry, groups: Iterable[str]) -> None:
        self.groups = frozenset(groups)
        self.decisions = Counter(
            "fairgate_decisions",
            "Decisions per item by action and primary reason.",
            ["action", "reason"],
            registry=registry,
        )
        self.toxicity_score = Histogram(
            "fairgate_toxicity_score",
            "Toxicity score per item by stage and category (0..1).",
            ["stage", "category"],
            buckets=SCORE_BUCKETS,
            registry=registry,
        )
        self.outcomes = Counter(
            "fairgate_outcomes",
            "Outcomes recorded per rate monitor, group and outcome value.",
            ["monitor", "group", "outcome"],
            registry=registry,
        )
        self.group_rate = Gauge(
            "fairgate_group_rate",
            "Rate of the monitored outcome in the group's window at the last check (NaN: empty).",
            ["monitor", "group"],
            registry=registry,
            multiprocess_mode="mostrecent",
        )
        self.impact_ratio = Gauge(
            "fairgate_impact_ratio",
            "Impact ratio of the group against the reference at the last check (NaN: not computable).",
            ["monitor", "group"],
            registry=registry,
            multiprocess_mode="mostrecent",
        )
        # The evidence an alert acts on, so a dashboard shows why it fired: the window
        # method's confidence bound (alert when below rates.impact_ratio.min), the
        # sequential method's e-detector over its alarm threshold (alert at >= 1).
        self.impact_ratio_bound = Gauge(
            "fairgate_impact_ratio_bound",
            "Upper confidence limit of the group's impact ratio at the last check (NaN: not computable).",
            ["monitor", "group"],
            registry=registry,
            multiprocess_mode="mostrecent",
        )
        self.rate_evidence = Gauge(
            "fairgate_rate_evidence",
            "Sequential rate test: the group's e-detector over its alarm threshold at the last check "
            "(alert at >= 1; NaN with rates.method window).",
            ["monitor", "group"],
            registry=registry,
            multiprocess_mode="mostrecent",
        )
        self.alert_active = Gauge(
            "fairgate_alert_active",
            "1 while the rate monitor's alert for the group is active.",
            ["monitor", "group"],
            registry=registry,
            multiprocess_mode="max",
        )
        self.monitor_errors = Counter(
            "fairgate_monitor_errors",
            "Monitor failures (the policy's on_error decided the items).",
            ["monitor"],
            registry=registry,
        )
        self.monitor_duration = Histogram(
            "fairgate_monitor_duration_seconds",
            "Time a monitor spent on one batch.",
            ["monitor"],
            buckets=MONITOR_BUCKETS,
            registry=registry,
        )
        self.inference_duration = Histogram(
            "fairgate_inference_duration_seconds",
            "Model inference time per batch (recorded by the caller of the model).",
            ["model"],
            buckets=INFERENCE_BUCKETS,
            registry=registry,
        )
        self.batch_size = Histogram(
            "fairgate_batch_size",
            "Items per batch by stage.",
            ["stage"],
            buckets=BATCH_BUCKETS,
            registry=registry,
        )
        self.model_info = Gauge(
            "fairgate_model_info",
            "1 for each model in use, by role, store tag and ONNX variant.",
            ["role", "tag", "variant"],
            registry=registry,
            multiprocess_mode="max",
        )
        self.policy_info = Gauge(
            "fairgate_policy_info",
            "1 for the policy version in force.",
            ["version"],
            registry=registry,
            multiprocess_mode="max",
        )

        self.store_errors = Counter(
            "fairgate_store_errors",
            "Failed round trips to the shared window store, by operation and error kind.",
            ["operation", "error"],
            registry=registry,
        )
        self.store_duration = Histogram(
            "fairgate_store_duration_seconds",
            "Time of one call to the window store (one round trip to a shared store).",
            ["operation"],
            buckets=STORE_BUCKETS,
            registry=registry,
        )
        self.store_degraded = Gauge(
            "fairgate_store_degraded",
            "1 while the shared window store is unavailable and this worker judges on its own windows.",
            registry=registry,
            multiprocess_mode="max",
        )

        # The live counterfactual probe (guardrails/probe.py). ``kind`` is a lexicon axis of
        # the policy's counterfactual.kinds, ``model`` guard or classifier, ``group`` a group
        # label value: all bounded by configuration.
        self.counterfactual_gap = Histogram(
            "fairgate_counterfactual_gap",
            "Counterfactual gap per probed item: max - min score over the text and its group-swapped variants.",
            ["kind", "model"],
            buckets=GAP_BUCKETS,
            registry=registry,
        )
        self.counterfactual_flips = Counter(
            "fairgate_counterfactual_flips",
            "Group-swapped variants whose guard action or classifier label differs from the original's.",
            ["kind", "model", "group"],
            registry=registry,
        )
        self.counterfactual_variants = Counter(
            "fairgate_counterfactual_variants",
            "Group-swapped variants scored by the counterfactual probe (the flip rate's denominator).",
            ["kind", "model"],
            registry=registry,
        )
        self.counterfactual_dropped = Counter(
            "fairgate_counterfactual_dropped_batches",
            "Decided batches the counterfactual probe left unprobed: its background queue was full.",
            registry=registry,
        )

        # The domain-shift monitor (guardrails/domain_monitor.py); no labels: one per worker.
        self.domain_score = Histogram(
            "fairgate_domain_score",
            "Per classified item: Mahalanobis distance from the training domain over the build-time "
            "quantile of in-domain scores (above 1: out of domain).",
            buckets=DOMAIN_BUCKETS,
            registry=registry,
        )
        self.domain_share = Gauge(
            "fairgate_domain_out_of_domain_share",
            "Share of the domain window's items above the build-time quantile at the last check (NaN: empty).",
            registry=registry,
            multiprocess_mode="mostrecent",
        )
        self.domain_expected = Gauge(
            "fairgate_domain_expected_share",
            "The share the domain window is tested against: in-domain validation share, upper confidence limit.",
            registry=registry,
            multiprocess_mode="mostrecent",
        )
        self.domain_alert = Gauge(
            "fairgate_domain_alert_active",
            "1 while the domain-shift alert is active.",
            registry=registry,
            multiprocess_mode="max",
        )

    def store_error_label(self, kind: str) -> str:
        """An ``error`` label value from the bounded list (anything else counts as ``response``)."""
        return kind if kind in STORE_ERRORS else "response"

    def group_label(self, group: str) -> str:
        """A group label value from the bounded vocabulary; anything else becomes ``other``."""
        return group if group in self.groups else "other"

    def set_model_info(self, *, role: str, tag: str, variant: str) -> None:
        """Convenience for the service: mark a loaded model."""
        self.model_info.labels(role=role, tag=tag, variant=variant).set(1)
