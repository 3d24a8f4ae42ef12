"""Generate the fairgate Grafana dashboard from code.

The committed ``deploy/grafana/dashboards/fairgate.json`` is this module's output, and a
test fails when the two differ, so change the dashboard here and regenerate::

    .venv/bin/python deploy/grafana/dashboard.py            # rewrite the JSON
    .venv/bin/python deploy/grafana/dashboard.py --check    # exit 1 if it is stale

Built with ``grafana-foundation-sdk`` (the maintained dashboards-as-code library) rather
than hand-written JSON, so panel options are typed and the JSON stays reviewable.

Every query is written for the metric names of docs/CONTRACTS.md section 4, BentoML's
own ``bentoml_service_*`` metrics, and the recording rules in
``deploy/prometheus/rules/fairgate-recording.yml``. Fleet-wide fairness figures come
from the recording rules (computed from counters, so they are correct across workers
and replicas); the guard's in-process gauges are shown per instance for comparison.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
OUTPUT = HERE / "dashboards" / "fairgate.json"

DASHBOARD_UID = "fairgate-overview"
DATASOURCE_VAR = "datasource"
# The policy's four-fifths bound, drawn as the threshold line of the impact-ratio panel.
# It must match `fairgate:policy_impact_ratio_min` in the recording rules (a test checks).
IMPACT_RATIO_MIN = 0.8
# Selectors shared by the panels. `$instance` and `$group` are dashboard variables;
# "All" expands to the regex `.*`.
INSTANCE = 'instance=~"$instance"'
GROUP = 'group=~"$group"'
CLASSIFY_ENDPOINTS = 'endpoint=~"/classify.*"'


def _ds() -> Any:
    from grafana_foundation_sdk.models.dashboard import DataSourceRef

    return DataSourceRef(type_val="prometheus", uid="${" + DATASOURCE_VAR + "}")


def _query(expr: str, legend: str, ref_id: str, *, instant: bool = False, fmt: str = "") -> Any:
    from grafana_foundation_sdk.builders.prometheus import Dataquery
    from grafana_foundation_sdk.models.prometheus import PromQueryFormat

    query = Dataquery().expr(expr).legend_format(legend).ref_id(ref_id).datasource(_ds())
    query = query.instant() if instant else query.range()
    if fmt:
        query = query.format(PromQueryFormat(fmt))
    return query


def _timeseries(
    title: str,
    description: str,
    targets: Sequence[tuple[str, str]],
    *,
    unit: str,
    stacked: bool = False,
    minimum: float | None = 0,
    maximum: float | None = None,
    threshold: float | None = None,
) -> Any:
    from grafana_foundation_sdk.builders.common import (
        GraphThresholdsStyleConfig,
        StackingConfig,
        VizLegendOptions,
    )
    from grafana_foundation_sdk.builders.dashboard import ThresholdsConfig
    from grafana_foundation_sdk.builders.timeseries import Panel
    from grafana_foundation_sdk.models.common import (
        GraphTresholdsStyleMode,
        LegendDisplayMode,
        LegendPlacement,
        StackingMode,
    )
    from grafana_foundation_sdk.models.dashboard import Threshold, ThresholdsMode

    panel = (
        Panel()
        .title(title)
        .description(description)
        .datasource(_ds())
        .unit(unit)
        .legend(
            VizLegendOptions().display_mode(LegendDisplayMode.TABLE).placement(LegendPlacement.BOTTOM).show_legend(True)
        )
    )
    if minimum is not None:
        panel = panel.min(minimum)
    if maximum is not None:
        panel = panel.max(maximum)
    if stacked:
        panel = panel.stacking(StackingConfig().mode(StackingMode.NORMAL)).fill_opacity(40)
    if threshold is not None:
        panel = panel.thresholds(
            ThresholdsConfig()
            .mode(ThresholdsMode.ABSOLUTE)
            .steps([Threshold(value=None, color="red"), Threshold(value=threshold, color="green")])
        ).thresholds_style(GraphThresholdsStyleConfig().mode(GraphTresholdsStyleMode.DASHED))
    for index, (expr, legend) in enumerate(targets):
        panel = panel.with_target(_query(expr, legend, chr(ord("A") + index)))
    return panel


def _heatmap(title: str, description: str, expr: str, *, repeat: str) -> Any:
    from grafana_foundation_sdk.builders.heatmap import Panel

    return (
        Panel()
        .title(title)
        .description(description)
        .datasource(_ds())
        .repeat(repeat)
        .repeat_direction("h")
        .calculate(False)
        .with_target(_query(expr, "{{le}}", "A", fmt="heatmap"))
    )


def _table(title: str, description: str, targets: Sequence[tuple[str, str]]) -> Any:
    from grafana_foundation_sdk.builders.table import Panel

    panel = Panel().title(title).description(description).datasource(_ds())
    for index, (expr, legend) in enumerate(targets):
        panel = panel.with_target(_query(expr, legend, chr(ord("A") + index), instant=True, fmt="table"))
    return panel


def _state_timeline(title: str, description: str, expr: str, legend: str) -> Any:
    from grafana_foundation_sdk.builders.dashboard import ThresholdsConfig
    from grafana_foundation_sdk.builders.statetimeline import Panel
    from grafana_foundation_sdk.models.dashboard import Threshold, ThresholdsMode

    return (
        Panel()
        .title(title)
        .description(description)
        .datasource(_ds())
        .min(0)
        .max(1)
        .thresholds(
            ThresholdsConfig()
            .mode(ThresholdsMode.ABSOLUTE)
            .steps([Threshold(value=None, color="green"), Threshold(value=1, color="red")])
        )
        .with_target(_query(expr, legend, "A"))
    )


def _stat(title: str, description: str, expr: str, *, unit: str, red_above: float) -> Any:
    from grafana_foundation_sdk.builders.dashboard import ThresholdsConfig
    from grafana_foundation_sdk.builders.stat import Panel
    from grafana_foundation_sdk.models.dashboard import Threshold, ThresholdsMode

    return (
        Panel()
        .title(title)
        .description(description)
        .datasource(_ds())
        .unit(unit)
        .thresholds(
            ThresholdsConfig()
            .mode(ThresholdsMode.ABSOLUTE)
            .steps([Threshold(value=None, color="green"), Threshold(value=red_above, color="red")])
        )
        .with_target(_query(expr, "", "A"))
    )


def _variables() -> list[Any]:
    from grafana_foundation_sdk.builders.dashboard import DatasourceVariable, QueryVariable
    from grafana_foundation_sdk.models.dashboard import (
        VariableOption,
        VariableRefresh,
        VariableSort,
    )

    def query_var(name: str, label: str, query: str) -> Any:
        return (
            QueryVariable(name)
            .label(label)
            .datasource(_ds())
            .query(query)
            .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
            .sort(VariableSort.ALPHABETICAL_ASC)
            .multi(True)
            .include_all(True)
            .all_value(".*")
            .current(VariableOption(text=["All"], value=["$__all"], selected=True))
        )

    return [
        DatasourceVariable(DATASOURCE_VAR).label("Data source").type("prometheus"),
        query_var("instance", "Instance", 'label_values(up{job="fairgate"}, instance)'),
        query_var("group", "Group", "label_values(fairgate_outcomes_total, group)"),
        query_var("category", "Toxicity category", "label_values(fairgate_toxicity_score_bucket, category)"),
    ]


def build_dashboard() -> Any:
    """The dashboard as a foundation-SDK builder (call ``.build()`` for the model)."""
    from grafana_foundation_sdk.builders.dashboard import Dashboard, Row, TimePicker
    from grafana_foundation_sdk.models.dashboard import DashboardCursorSync

    quantile = (
        "histogram_quantile({q}, sum by (le) (rate(bentoml_service_request_duration_seconds_bucket"
        "{{" + INSTANCE + ", " + CLASSIFY_ENDPOINTS + "}}[$__rate_interval])))"
    )
    dashboard = (
        Dashboard("fairgate: guarded classifier")
        .uid(DASHBOARD_UID)
        .description(
            "Traffic, guard decisions, toxicity scores and per-group fairness of a fairgate "
            "service. Generated by deploy/grafana/dashboard.py; do not edit the JSON by hand."
        )
        .tags(["fairgate", "generated"])
        .editable()
        .tooltip(DashboardCursorSync.CROSSHAIR)
        .refresh("30s")
        .time("now-1h", "now")
        .timezone("utc")
        .timepicker(TimePicker().refresh_intervals(["10s", "30s", "1m", "5m", "15m"]))
        .variables(_variables())
        # ---- traffic -------------------------------------------------------------------
        .with_row(Row("Traffic"))
        .with_panel(
            _timeseries(
                "Request rate by endpoint and status",
                "HTTP requests per second that the service answered, from BentoML's "
                "bentoml_service_request_total, per endpoint and HTTP status code.",
                [
                    (
                        "sum by (endpoint, http_response_code) (rate(bentoml_service_request_total"
                        "{" + INSTANCE + ', endpoint!~"/metrics|/healthz|/livez|/readyz"}'
                        "[$__rate_interval]))",
                        "{{endpoint}} {{http_response_code}}",
                    )
                ],
                unit="reqps",
                stacked=True,
            ).span(12)
        )
        .with_panel(
            _timeseries(
                "Classify latency percentiles",
                "p50, p95 and p99 of the end-to-end request duration of /classify and "
                "/classify_batch (BentoML's histogram, aggregated over every worker and "
                "instance selected). Includes batching delay, guard and model.",
                [
                    (quantile.format(q="0.5"), "p50"),
                    (quantile.format(q="0.95"), "p95"),
                    (quantile.format(q="0.99"), "p99"),
                ],
                unit="s",
            ).span(12)
        )
        .with_panel(
            _timeseries(
                "Stage latency p99: inference and monitors",
                "p99 of one ONNX inference call per model, and of one monitor call per "
                "monitor; both are per batch, not per request.",
                [
                    (
                        "histogram_quantile(0.99, sum by (le, model) (rate("
                        "fairgate_inference_duration_seconds_bucket{" + INSTANCE + "}[$__rate_interval])))",
                        "inference {{model}}",
                    ),
                    (
                        "histogram_quantile(0.99, sum by (le, monitor) (rate("
                        "fairgate_monitor_duration_seconds_bucket{" + INSTANCE + "}[$__rate_interval])))",
                        "monitor {{monitor}}",
                    ),
                ],
                unit="s",
            ).span(12)
        )
        .with_panel(
            _timeseries(
                "Mean batch size by stage",
                "Average number of items per batch at each stage (adaptive batching at work): "
                "rate of fairgate_batch_size_sum over rate of fairgate_batch_size_count.",
                [
                    (
                        "sum by (stage) (rate(fairgate_batch_size_sum{" + INSTANCE + "}[$__rate_interval]))"
                        " / sum by (stage) (rate(fairgate_batch_size_count{" + INSTANCE + "}[$__rate_interval]))",
                        "{{stage}}",
                    )
                ],
                unit="short",
            ).span(12)
        )
        # ---- decisions -----------------------------------------------------------------
        .with_row(Row("Guard decisions"))
        .with_panel(
            _timeseries(
                "Decisions by action and reason",
                "Items per second by the guard's final action (allow, flag, block) and the "
                "reason that decided it (none, toxicity_<category>, rate_<monitor>, "
                "monitor_error).",
                [
                    (
                        "sum by (action, reason) (rate(fairgate_decisions_total{" + INSTANCE + "}[$__rate_interval]))",
                        "{{action}} / {{reason}}",
                    )
                ],
                unit="short",
                stacked=True,
            ).span(16)
        )
        .with_panel(
            _stat(
                "Block ratio (5m, fleet)",
                "Share of all decisions over the last 5 minutes that were blocks, across every "
                "instance (recording rule fairgate:decisions_blocked:ratio_rate5m). The "
                "FairgateBlockRateHigh alert fires above its bound.",
                "fairgate:decisions_blocked:ratio_rate5m",
                unit="percentunit",
                red_above=0.2,
            ).span(8)
        )
        .with_panel(
            _timeseries(
                "Monitor errors",
                "Errors per second raised inside each monitor (a failing scorer, a broken "
                "store). The policy's on_error decides what happens to the items.",
                [
                    (
                        "sum by (monitor) (rate(fairgate_monitor_errors_total{" + INSTANCE + "}[$__rate_interval]))",
                        "{{monitor}}",
                    )
                ],
                unit="short",
            ).span(24)
        )
        # ---- toxicity ------------------------------------------------------------------
        .with_row(Row("Toxicity scores"))
        .with_panel(
            _timeseries(
                "Toxicity score quantiles by category",
                "Median and p95 of the guard's score per category and stage, from the "
                "fairgate_toxicity_score histogram.",
                [
                    (
                        "histogram_quantile(0.5, sum by (le, stage, category) (rate(fairgate_toxicity_score_bucket"
                        "{" + INSTANCE + ', category=~"$category"}[$__rate_interval])))',
                        "p50 {{stage}} {{category}}",
                    ),
                    (
                        "histogram_quantile(0.95, sum by (le, stage, category) (rate(fairgate_toxicity_score_bucket"
                        "{" + INSTANCE + ', category=~"$category"}[$__rate_interval])))',
                        "p95 {{stage}} {{category}}",
                    ),
                ],
                unit="percentunit",
                maximum=1,
            ).span(24)
        )
        .with_panel(
            _heatmap(
                "Toxicity score distribution: $category",
                "How the guard's scores for one category spread over [0, 1] through time "
                "(count of scored texts per histogram bucket). One panel per category.",
                "sum by (le) (increase(fairgate_toxicity_score_bucket{"
                + INSTANCE
                + ', category=~"$category"}[$__rate_interval]))',
                repeat="category",
            ).span(8)
        )
        # ---- fairness ------------------------------------------------------------------
        .with_row(Row("Per-group fairness (fleet-wide, from recording rules)"))
        .with_panel(
            _timeseries(
                "Classifier outcome rate per group (1h)",
                "For each rate monitor of the policy that watches a classifier label (source: "
                "label): the share of each group's classified items that got that label over "
                "the last hour, summed over every instance and worker (recording rule "
                "fairgate:group_outcome_rate:ratio_rate1h, from fairgate_outcomes_total and "
                "the policy mirror). Blocked items have no label and do not count.",
                [
                    (
                        "fairgate:group_outcome_rate:ratio_rate1h{" + GROUP + "}"
                        ' and on (monitor) fairgate:policy_monitor{source="label"}',
                        "{{monitor}} {{group}}",
                    )
                ],
                unit="percentunit",
                maximum=1,
            ).span(12)
        )
        .with_panel(
            _timeseries(
                "Impact ratio per group vs the four-fifths bound",
                "Each group's rate of the monitored outcome divided by the highest group's "
                "rate (1h and 5m windows, fleet-wide). Below the dashed line (the policy's "
                "bound) for long enough, FairgateImpactRatioLow fires.",
                [
                    (
                        "fairgate:impact_ratio:ratio_rate1h{" + GROUP + "}",
                        "1h {{monitor}} {{group}}",
                    ),
                    (
                        "fairgate:impact_ratio:ratio_rate5m{" + GROUP + "}",
                        "5m {{monitor}} {{group}}",
                    ),
                    ("fairgate:policy_impact_ratio_min", "bound"),
                ],
                unit="percentunit",
                maximum=1.05,
                threshold=IMPACT_RATIO_MIN,
            ).span(12)
        )
        .with_panel(
            _timeseries(
                "Guard's own flag and block rate per group (1h)",
                "For the guard's own rate monitors (source: guard in the policy): the share "
                "of each group's items that the guard flagged (flag counts flagged and blocked "
                "items) or blocked, fleet-wide over the last hour. A guard that flags one "
                "group's texts more often than another's is biased itself; compare the lines.",
                [
                    (
                        "fairgate:group_outcome_rate:ratio_rate1h{" + GROUP + "}"
                        ' and on (monitor) fairgate:policy_monitor{source="guard"}',
                        "{{monitor}} {{group}}",
                    )
                ],
                unit="percentunit",
                maximum=1,
            ).span(12)
        )
        .with_panel(
            _timeseries(
                "Guard's in-process view: impact ratio per instance",
                "The guard's own gauge fairgate_impact_ratio, computed on each worker's "
                "window (its share of the traffic only). NaN while a group has too few "
                "samples. Compare with the fleet-wide figure on the left.",
                [
                    (
                        "fairgate_impact_ratio{" + INSTANCE + ", " + GROUP + "}",
                        "{{instance}} {{monitor}} {{group}}",
                    )
                ],
                unit="percentunit",
                threshold=IMPACT_RATIO_MIN,
            ).span(12)
        )
        .with_panel(
            _timeseries(
                "Why a rate alert fired: impact ratio confidence bound (window method)",
                "fairgate_impact_ratio_bound: the upper confidence limit of each group's impact "
                "ratio at the guard's last check, per instance. With rates.method: window an "
                "alert is raised when this bound (not just the point ratio) falls below the "
                "dashed line, the policy's impact_ratio.min; it clears when the point ratio is "
                "back at min + hysteresis.",
                [
                    (
                        "fairgate_impact_ratio_bound{" + INSTANCE + ", " + GROUP + "}",
                        "{{instance}} {{monitor}} {{group}}",
                    )
                ],
                unit="percentunit",
                maximum=1.05,
                threshold=IMPACT_RATIO_MIN,
            ).span(12)
        )
        .with_panel(
            _timeseries(
                "Why a rate alert fired: sequential evidence (alert at 1)",
                "fairgate_rate_evidence: with rates.method: sequential, each group's e-detector "
                "(the evidence that its rate breaches the policy's bound against some other "
                "group, updated after every batch) divided by its alarm threshold, per instance. "
                "An alert is raised when it reaches 1 and the detector then starts again; a "
                "line that climbs towards 1 is a disparity building up. NaN with the window method.",
                [
                    (
                        "fairgate_rate_evidence{" + INSTANCE + ", " + GROUP + "}",
                        "{{instance}} {{monitor}} {{group}}",
                    )
                ],
                unit="none",
                threshold=1.0,
            ).span(12)
        )
        # ---- the counterfactual probe -------------------------------------------------
        .with_row(Row("Counterfactual probe: would another group get the same answer?"))
        .with_panel(
            _timeseries(
                "Counterfactual gap per kind and model (1h)",
                "On the probe's sample of items whose text names a group, the text is written "
                "again for every other group of the same kind and scored with it: the gap is "
                "max - min score over those versions (guard: toxicity; classifier: the largest "
                "spread of a label's probability). Mean over the last hour, fleet-wide "
                "(fairgate:counterfactual_gap:mean_rate1h), and p95 from the histogram. 0 is "
                "a model that ignores which group is named.",
                [
                    ("fairgate:counterfactual_gap:mean_rate1h", "mean {{kind}} {{model}}"),
                    (
                        "histogram_quantile(0.95, sum by (le, kind, model) (rate("
                        "fairgate_counterfactual_gap_bucket{" + INSTANCE + "}[1h])))",
                        "p95 {{kind}} {{model}}",
                    ),
                ],
                unit="short",
                maximum=1,
            ).span(8)
        )
        .with_panel(
            _timeseries(
                "Counterfactual flip rate per kind and model (1h)",
                "Share of the group-swapped variants whose guard action or classifier label "
                "differs from the original text's, over the last hour across every instance "
                "(fairgate:counterfactual_flips:ratio_rate1h). FairgateCounterfactualFlipRateHigh "
                "fires above the bound line (5%) once 200 variants an hour are scored.",
                [
                    ("fairgate:counterfactual_flips:ratio_rate1h", "{{kind}} {{model}}"),
                    ("vector(0.05)", "alert bound"),
                ],
                unit="percentunit",
                maximum=1,
            ).span(8)
        )
        .with_panel(
            _timeseries(
                "Counterfactual flips by swapped-in group (1h)",
                "Flips in the last hour per kind, model and the group swapped in "
                "(fairgate_counterfactual_flips_total; groups outside the policy's allowed list "
                "count as other), and the variants scored per kind "
                "(fairgate:counterfactual_variants:increase1h, the flip rate's sample size). "
                "The probe runs after the answer on a low-priority thread; batches it had to "
                "leave out because it fell behind (fairgate_counterfactual_dropped_batches_total) "
                "mean it sampled less than counterfactual.sample.",
                [
                    (
                        "sum by (kind, model, group) (increase(fairgate_counterfactual_flips_total{"
                        + INSTANCE
                        + "}[1h])) > 0",
                        "flips {{kind}} {{model}} -> {{group}}",
                    ),
                    ("fairgate:counterfactual_variants:increase1h", "variants {{kind}} {{model}}"),
                    (
                        "sum(increase(fairgate_counterfactual_dropped_batches_total{" + INSTANCE + "}[1h]))",
                        "batches left unprobed",
                    ),
                ],
                unit="short",
            ).span(8)
        )
        # ---- the domain-shift monitor -------------------------------------------------
        .with_row(Row("Domain shift: is the traffic still the classifier's training domain?"))
        .with_panel(
            _timeseries(
                "Out-of-domain share",
                "Share of classified items scoring above the build-time quantile (policy "
                "domain.quantile, 0.99 by default) of the classifier's in-domain validation "
                "scores: fleet-wide over the last hour (fairgate:domain_out_of_domain:ratio_rate1h), "
                "and each instance's window at its last check (fairgate_domain_out_of_domain_share) "
                "with the share it is tested against (fairgate_domain_expected_share). In-domain "
                "traffic stays near 1 - quantile.",
                [
                    ("fairgate:domain_out_of_domain:ratio_rate1h", "fleet (1h)"),
                    (
                        "max by (instance) (fairgate_domain_out_of_domain_share{" + INSTANCE + "})",
                        "window {{instance}}",
                    ),
                    ("max(fairgate_domain_expected_share{" + INSTANCE + "})", "expected (bound)"),
                ],
                unit="percentunit",
                maximum=1,
            ).span(8)
        )
        .with_panel(
            _timeseries(
                "Domain score quantiles",
                "Per classified item, the Mahalanobis distance of its pooled embedding from the "
                "nearest training class mean, over the build-time quantile (fairgate_domain_score): "
                "above 1 is out of domain. Median and p99 over every instance.",
                [
                    (
                        "histogram_quantile(0.5, sum by (le) (rate(fairgate_domain_score_bucket{"
                        + INSTANCE
                        + "}[$__rate_interval])))",
                        "p50",
                    ),
                    (
                        "histogram_quantile(0.99, sum by (le) (rate(fairgate_domain_score_bucket{"
                        + INSTANCE
                        + "}[$__rate_interval])))",
                        "p99",
                    ),
                    ("vector(1)", "out-of-domain line"),
                ],
                unit="short",
            ).span(8)
        )
        .with_panel(
            _state_timeline(
                "Domain-shift alert",
                "The domain monitor's alert (fairgate_domain_alert_active: 1 while the window's "
                "share clears the expected share at the policy's confidence, with hysteresis), "
                "any instance. FairgateDomainShift fires after 15 minutes of it.",
                "max(fairgate_domain_alert_active{" + INSTANCE + "})",
                "domain alert",
            ).span(8)
        )
        # ---- the edge: what was refused before any decision ----------------------------
        .with_row(Row("Edge: shedding, queue and keys"))
        .with_panel(
            _timeseries(
                "Shed requests by reason",
                "Requests answered without a decision, per second (fairgate_shed_total): "
                "concurrency (past FAIRGATE_MAX_CONCURRENCY in flight), queue (batch queue "
                "full), deadline (no answer within FAIRGATE_REQUEST_TIMEOUT_S), body (refused "
                "by the body checks: 400/413/415).",
                [
                    (
                        "sum by (reason) (rate(fairgate_shed_total{" + INSTANCE + "}[$__rate_interval]))",
                        "{{reason}}",
                    )
                ],
                unit="reqps",
                stacked=True,
            ).span(8)
        )
        .with_panel(
            _timeseries(
                "Shed share of classify requests (fleet)",
                "fairgate:shed:ratio_rate5m: shed requests over every /classify and "
                "/classify_batch request, over 5 minutes and every instance. The "
                "FairgateSheddingHigh alert fires above 5% for 10 minutes: add replicas or "
                "workers, or raise the limits if the machine has room.",
                [("fairgate:shed:ratio_rate5m", "shed share")],
                unit="percentunit",
                maximum=1,
            ).span(8)
        )
        .with_panel(
            _timeseries(
                "Batch queue depth and auth failures",
                "Items waiting in the batch queues (fairgate_queue_items, per instance, summed "
                "over workers) and refused API keys per second (fairgate_auth_failures_total: "
                "missing, invalid, admin_disabled).",
                [
                    ("sum by (instance) (fairgate_queue_items{" + INSTANCE + "})", "queue {{instance}}"),
                    (
                        "sum by (reason) (rate(fairgate_auth_failures_total{" + INSTANCE + "}[$__rate_interval]))",
                        "auth {{reason}}",
                    ),
                ],
                unit="short",
            ).span(8)
        )
        # ---- alerts and versions -------------------------------------------------------
        .with_row(Row("Alerts and versions"))
        .with_panel(
            _table(
                "Prometheus alerts (pending and firing)",
                "Every fairgate alerting rule that is pending or firing now, from Prometheus's "
                "ALERTS series. Empty when all is well.",
                [('ALERTS{alertname=~"Fairgate.+"}', "{{alertname}} {{alertstate}}")],
            ).span(12)
        )
        .with_panel(
            _state_timeline(
                "Guard alert state per monitor and group",
                "The guard's own alert (fairgate_alert_active: 1 while a rate monitor acts on "
                "a group, with hysteresis), per monitor and group, any instance.",
                "max by (monitor, group) (fairgate_alert_active{" + INSTANCE + ", " + GROUP + "})",
                "{{monitor}} {{group}}",
            ).span(12)
        )
        .with_panel(
            _table(
                "Model and policy versions",
                "Which model tags and variants (int8 or fp32) and which policy version each "
                "instance runs (fairgate_model_info, fairgate_policy_info). Two rows for one "
                "role mean a rollout is in progress.",
                [
                    ("fairgate_model_info{" + INSTANCE + "}", "{{role}} {{tag}} {{variant}}"),
                    ("fairgate_policy_info{" + INSTANCE + "}", "policy {{version}}"),
                ],
            ).span(24)
        )
    )
    return dashboard


def render() -> str:
    """The dashboard JSON exactly as committed (stable key order, trailing newline)."""
    from grafana_foundation_sdk.cog.encoder import JSONEncoder

    model = build_dashboard().build()
    # Stable, unique panel ids in layout order (Grafana needs them unique for links,
    # repeats and alert annotations; the SDK leaves them unset).
    for number, panel in enumerate(model.panels or [], start=1):
        panel.id_val = number
    data = json.loads(json.dumps(model, cls=JSONEncoder))
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=OUTPUT)
    parser.add_argument("--check", action="store_true", help="exit 1 if --output is stale")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = args.output.read_text(encoding="utf-8") if args.output.exists() else ""
        if current != text:
            print(f"{args.output} is stale: run python deploy/grafana/dashboard.py", file=sys.stderr)
            return 1
        print(f"{args.output} is up to date")
        return 0
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text, encoding="utf-8")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
