"""``fairgate simulate-rates``: the rate monitor on synthetic streams (registered by service/cli.py)."""

from __future__ import annotations

import argparse
import json
import logging
from typing import Any


def _floats(text: str) -> list[float]:
    try:
        return [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of numbers, e.g. 0.3,0.2") from None


def register(subparsers: Any, build_subparsers: Any) -> None:
    """Add ``simulate-rates`` to the ``fairgate`` command."""
    del build_subparsers  # nothing to build
    parser = subparsers.add_parser(
        "simulate-rates",
        help="run the output-rate monitor on synthetic per-group streams",
        description=(
            "How much traffic until the rate monitor catches a disparity, and how often it "
            "raises a false alarm. Each request gets a group (by --shares) and the monitored "
            "outcome with its group's rate (--rates); the policy's window, bounds, "
            "min_samples, confidence and hysteresis apply. Both methods (window, sequential) "
            "run side by side on the same stream unless --method picks one."
        ),
    )
    parser.add_argument("--rates", type=_floats, required=True, help="outcome rate per group, e.g. 0.3,0.2")
    parser.add_argument("--shares", type=_floats, default=None, help="traffic share per group (default equal)")
    parser.add_argument("--n", type=int, default=100_000, help="number of requests (default 100000)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--policy", default=None, help="policy YAML (default: the bundled default policy)")
    parser.add_argument("--groups", default=None, help="group names, comma-separated (default: from the policy)")
    parser.add_argument("--monitor", default=None, help="rate monitor of the policy (default: the first label monitor)")
    parser.add_argument("--batch", type=int, default=1, help="requests per recorded batch (default 1)")
    parser.add_argument(
        "--method",
        choices=("both", "window", "sequential"),
        default="both",
        help="rate test to run: both side by side (default), or one; the policy's rates.method is listed first",
    )
    parser.add_argument(
        "--then", type=_floats, default=None, help="rates after the change (with --change-at), e.g. 0.3,0.2"
    )
    parser.add_argument(
        "--change-at",
        type=int,
        default=None,
        help="switch to --then after this many requests; reports the detection delay after it",
    )
    parser.add_argument(
        "--runs",
        type=int,
        default=1,
        help="repeat with seeds seed..seed+runs-1 and add a 'repeats' summary (default 1)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from fairgate.guardrails.policy import PolicyError, load_policy
    from fairgate.guardrails.simulate import METHODS, simulate_methods, summarise_runs

    if not getattr(args, "verbose", False):
        # Alerts are the result here, reported below; one log line per alert is noise.
        logging.getLogger("fairgate.guardrails.rates").setLevel(logging.ERROR)
    if args.runs < 1:
        print(f"fairgate simulate-rates: --runs {args.runs} must be >= 1")
        return 2
    try:
        policy = load_policy(args.policy)
        if args.method == "both":
            methods = [policy.rates.method, *(m for m in METHODS if m != policy.rates.method)]
        else:
            methods = [args.method]
        runs = [
            simulate_methods(
                rates=args.rates,
                shares=args.shares,
                n=args.n,
                seed=args.seed + offset,
                policy=policy,
                groups=[g.strip() for g in args.groups.split(",")] if args.groups else None,
                monitor=args.monitor,
                batch=args.batch,
                methods=methods,
                then=args.then,
                change_at=args.change_at,
            )
            for offset in range(args.runs)
        ]
    except (PolicyError, ValueError) as error:
        print(f"fairgate simulate-rates: {error}")
        return 2
    by_method: dict[str, dict[str, Any]] = {}
    summaries: dict[str, dict[str, Any]] = {}
    for method in methods:
        block = runs[0][method].to_dict()
        if args.runs > 1:
            summaries[method] = block["repeats"] = summarise_runs([run[method] for run in runs])
        by_method[method] = block
    # The top level is the first method's first run (the policy's method), as before methods existed.
    data = {**by_method[methods[0]], "methods": by_method}
    if args.json:
        print(json.dumps(data, indent=None, sort_keys=True))
        return 0
    for method in methods:
        _print_text(runs[0][method], summaries.get(method), args)
    return 0


def _print_text(result: Any, summary: dict[str, Any] | None, args: argparse.Namespace) -> None:
    """One method's figures as text: the first run, then the summary over runs."""
    data = result.to_dict()
    window = ", ".join(f"{k}={v}" for k, v in data["window"].items())
    print(
        f"[{result.method}] {result.n} requests, monitor {result.monitor} ({result.harm}), window {window}, "
        f"impact ratio >= {result.impact_ratio_min}, confidence {result.confidence}, "
        f"min_samples {result.min_samples}, seed {result.seed}"
    )
    delay = (
        f"  detection delay after {result.change_at}: {result.detection_delay}" if result.change_at is not None else ""
    )
    print(
        f"checks: {result.checks}  alerts: {result.alerts}  false alarms: {result.false_alarms}  "
        f"first alert at request: {result.first_alert}{delay}"
    )
    for group in result.groups:
        observed = f"{group.observed_rate:.3f}" if group.observed_rate is not None else "-"
        final = f"{group.final_impact_ratio:.3f}" if group.final_impact_ratio is not None else "-"
        print(
            f"  {group.group:<12} rate {group.rate:.3f} (observed {observed}) share {group.share:.2f} "
            f"true ratio {group.true_impact_ratio:.3f} requests {group.requests} alerts {group.alerts} "
            f"first {group.first_alert} under-alert {group.requests_under_alert} "
            f"final ratio {final} ({group.final_status})"
        )
    if summary is not None:
        print(
            f"over {summary['runs']} runs (seeds {args.seed}..{args.seed + args.runs - 1}): "
            f"detected in {summary['detected_runs']}, first alert median {summary['first_alert_median']}, "
            f"p90 {summary['first_alert_p90']}, max {summary['first_alert_max']}; "
            f"alerts {summary['alerts_total']}, false alarms {summary['false_alarms_total']} "
            f"in {summary['requests_total']} requests"
        )
        if "delay_median" in summary:
            print(
                f"  after the change at {summary['change_at']}: caught in "
                f"{round(summary['delay_caught_share'] * summary['runs'])}/{summary['runs']} runs, delay median "
                f"{summary['delay_median']}, p90 {summary['delay_p90']}, max {summary['delay_max']}"
            )
