"""``python -m loadtests.bench`` (``make bench``): floor, fairgate and the usual stack, one run.

Every phase sees the same texts (SST-2 dev sentences when ``../shared/data`` is present,
else the bundled reviews), is bounded by time and by request count, and everything the
benchmark starts is stopped before it returns, also on error or Ctrl-C. The result is
one printed table and ``bench.json`` at the repository root.

1. floor: the classifier's and the guard's ONNX Runtime sessions, in this process, on
   batches (no HTTP, no guardrails); the best texts/s over a few batch sizes.
2. fairgate: ``bentoml serve fairgate.service.service:Fairgate`` on a free port with guardrails on;
   saturation requests/s in a closed loop, then p50/p95/p99 in an open loop at half
   that rate (latency from the scheduled send time, so queueing counts).
3. usual stack: ``loadtests.usual_stack.service:UsualStack`` (transformers pipeline +
   Detoxify ``original``, PyTorch); saturation requests/s in the same closed loop.

With ``--redis`` (``make bench REDIS=1``) phase 2 runs a second time with the rate windows in
Redis (``FAIRGATE_REDIS_URL``; a private redis-server, or the URL given), at the same
half-load rate as the run without, and ``redis_comparison`` holds the ratio of the
saturation rates and the p99 difference (targets: >= 0.9, <= 5 ms). One pair of phases is
one draw of a noisy machine: ``--redis-rounds N`` (``make bench REDIS=1 REDIS_ROUNDS=4``)
runs N pairs in a balanced order (L R R L R L L R ..., so each mode sits at every position)
and judges the targets on the pooled half-load latencies and the mean saturation.

With ``--compare-guard-tag A,B`` and/or ``--compare-classifier-tag A,B`` (``make bench
COMPARE_GUARD=A,B``) a ``compare`` phase first runs both model variants on the floor in
alternating rounds, so both see the same machine, and reports CPU ms per text of each
and the ratios B / A (loadtests/_compare.py).

With ``--compare-policy A.yaml,B.yaml`` a ``compare_policy`` phase first serves both policies
at once and alternates closed-loop saturation rounds between them, reporting req/s of each
and the ratio B / A (loadtests/_policy_compare.py). ``--compare-probe [SAMPLE]`` writes the
pair itself: the base policy with the counterfactual probe off (A) and on at SAMPLE (B,
default 0.05); the probe's target is B / A >= 0.90. ``--compare-server-env a:KEY=VALUE``
(repeatable, ``make bench COMPARE_SERVER_ENV="a:K=V b:K=V"``) sets one server's environment
only: old models and settings against new ones, say, judged on saturation in one run.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import os
import platform
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from types import FrameType
from typing import Any

from loadtests._drivers import PhaseResult, arrival_offsets, run_closed_loop, run_open_loop
from loadtests._http import HttpSender, encode_bodies, post_json
from loadtests._report import SCHEMA, check_report, format_table, headline
from loadtests._stats import percentile
from loadtests._texts import REPO_ROOT, TextCorpus, load_corpus, make_items

logger = logging.getLogger("loadtests.bench")

FAIRGATE_TARGET = "fairgate.service.service:Fairgate"
USUAL_TARGET = "loadtests.usual_stack.service:UsualStack"


class BenchError(RuntimeError):
    """A phase could not run (missing model, server failed to start, smoke check failed)."""


class Deadline:
    """The whole run's time budget; phases ask it how long they may still take."""

    def __init__(self, budget_s: float, clock: Any = time.monotonic) -> None:
        self._clock = clock
        self._end = clock() + budget_s

    def left(self) -> float:
        return self._end - self._clock()

    def bounded(self, wanted_s: float, reserve_s: float = 0.0) -> float:
        """``wanted_s`` or what is left after ``reserve_s``, whichever is smaller (>= 0)."""
        return max(0.0, min(wanted_s, self.left() - reserve_s))


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m loadtests.bench", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--classifier-tag", default=os.environ.get("FAIRGATE_CLASSIFIER_TAG", "fairgate-classifier")
    )
    parser.add_argument("--guard-tag", default=os.environ.get("FAIRGATE_GUARD_TAG", "fairgate-toxicity"))
    parser.add_argument(
        "--policy", default=os.environ.get("FAIRGATE_POLICY"), help="policy YAML for the service"
    )
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of each measured load phase")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds of load before each measurement")
    parser.add_argument("--concurrency", type=int, default=64, help="closed-loop users at saturation")
    parser.add_argument(
        "--half-load", type=float, default=0.5, help="open-loop rate as a fraction of saturation"
    )
    parser.add_argument("--arrival", choices=("uniform", "poisson"), default="uniform")
    parser.add_argument(
        "--open-rate",
        type=float,
        default=None,
        help="open-loop rate in req/s instead of --half-load x saturation",
    )
    parser.add_argument(
        "--floor-batches",
        default="8,32,32/8",
        help="floor variants: batch sizes, SIZE/BUCKET for length-sorted sub-batches; the best counts",
    )
    parser.add_argument(
        "--floor-threads",
        default="1,0",
        help="ONNX Runtime intra-op threads to try for the floor, comma-separated (0: ONNX Runtime's default)",
    )
    parser.add_argument("--floor-duration", type=float, default=5.0, help="seconds per floor variant")
    parser.add_argument("--max-requests", type=int, default=200_000, help="cap on requests per phase")
    parser.add_argument(
        "--min-completions",
        type=int,
        default=192,
        help="saturation goes on past --duration until this many answers were measured",
    )
    parser.add_argument(
        "--max-phase", type=float, default=120.0, help="hard cap on one saturation phase, seconds"
    )
    parser.add_argument("--timeout", type=float, default=60.0, help="per-request timeout, seconds")
    parser.add_argument(
        "--drain",
        type=float,
        default=5.0,
        help="seconds a closed loop waits for in-flight answers after its window, then cancels them",
    )
    parser.add_argument(
        "--service-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment for the fairgate server (e.g. FAIRGATE_MAX_BATCH_SIZE=16); repeatable",
    )
    parser.add_argument(
        "--fairgate-target",
        default=FAIRGATE_TARGET,
        help="MODULE:CLASS to serve as fairgate (to measure a variant of the service)",
    )
    parser.add_argument("--budget", type=float, default=540.0, help="whole-run time budget, seconds")
    parser.add_argument(
        "--start-timeout", type=float, default=180.0, help="seconds for a server to become ready"
    )
    parser.add_argument("--skip", action="append", default=[], choices=("floor", "fairgate", "usual"))
    parser.add_argument(
        "--redis",
        nargs="?",
        const="auto",
        default=None,
        metavar="URL",
        help="also run fairgate with its windows in Redis: a private redis-server from PATH, or this URL",
    )
    parser.add_argument(
        "--redis-rounds",
        type=int,
        default=1,
        metavar="N",
        help="with --redis: N pairs of phases without/with Redis in the order L R R L R L L R ..., pooled "
        "(default 1; an even N puts each mode at every position equally often)",
    )
    compare = parser.add_argument_group(
        "model comparison (both variants in alternating rounds of the floor, in this run)"
    )
    compare.add_argument("--compare-guard-tag", default=None, metavar="A,B", help="two guard tags to compare")
    compare.add_argument(
        "--compare-classifier-tag", default=None, metavar="A,B", help="two classifier tags to compare"
    )
    compare.add_argument("--compare-rounds", type=int, default=6, help="rounds per variant (alternating)")
    compare.add_argument("--compare-round-s", type=float, default=3.0, help="seconds per round")
    compare.add_argument("--compare-batch", type=int, default=32, help="batch size of the comparison")
    compare.add_argument(
        "--compare-threads", type=int, default=1, help="ONNX Runtime intra-op threads (0: its default)"
    )
    policies = parser.add_argument_group(
        "policy comparison (two servers, alternating saturation rounds, in this run)"
    )
    pair = policies.add_mutually_exclusive_group()
    pair.add_argument("--compare-policy", default=None, metavar="A.yaml,B.yaml", help="two policy files to compare")
    pair.add_argument(
        "--compare-probe",
        nargs="?",
        type=float,
        const=0.05,
        default=None,
        metavar="SAMPLE",
        help="compare the base policy (--policy or the default) with the counterfactual probe off (A) "
        "and on at SAMPLE (B, default 0.05)",
    )
    policies.add_argument(
        "--compare-server-env",
        action="append",
        default=[],
        metavar="SIDE:KEY=VALUE",
        help="a setting of server A or B only (repeatable), e.g. a:FAIRGATE_INTRA_OP_THREADS=1 "
        "b:FAIRGATE_GUARD_TAG=fairgate-toxicity:new; alone, both serve the base policy",
    )
    policies.add_argument(
        "--compare-open-rate",
        default=None,
        metavar="REQ_S|half",
        help="after the saturation rounds, alternate open-loop rounds on A and B at this rate and pool each "
        "side's latencies (p50/p95/p99); 'half': --half-load x the lower side's saturation",
    )
    policies.add_argument("--compare-policy-rounds", type=int, default=4, help="rounds per policy (alternating)")
    policies.add_argument(
        "--compare-policy-round-s", type=float, default=20.0, help="measured seconds per round, after its warm-up"
    )
    policies.add_argument(
        "--compare-policy-warmup", type=float, default=3.0, help="seconds of load before each round's window"
    )
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench.json")
    parser.add_argument("--log-dir", type=Path, default=None, help="server logs (default: a temp dir)")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    if args.redis_rounds < 1:
        parser.error(f"--redis-rounds {args.redis_rounds}: give 1 or more pairs of phases")
    if args.redis_rounds > 1 and args.redis is None:
        parser.error("--redis-rounds needs --redis (the rounds compare fairgate without and with Redis)")
    if args.compare_open_rate is not None:
        if not comparing_policies(args):
            parser.error(
                "--compare-open-rate needs a comparison to run it in: --compare-server-env, --compare-probe "
                "or --compare-policy"
            )
        try:  # checked now, not after the saturation rounds it follows
            parse_open_rate(args.compare_open_rate)
        except BenchError as error:
            parser.error(str(error))
    return args


def resolve_model(tag: str) -> tuple[str, Path]:
    """The exact store tag and directory of a model, so the floor and the service use the same one."""
    import bentoml

    try:
        model = bentoml.models.get(tag)
    except bentoml.exceptions.NotFound as error:
        raise BenchError(
            f"model {tag!r} is not in the BentoML store ({os.environ.get('BENTOML_HOME', '~/bentoml')}); "
            "run `make models` (fairgate build classifier/guard --if-missing) first"
        ) from error
    return str(model.tag), Path(model.path)


# ---------------------------------------------------------------- phases


def _floor_variants(spec: str) -> list[tuple[int, int | None]]:
    """``"8,32,32/8"`` -> batch 8, batch 32, batch 32 in length-sorted sub-batches of 8."""
    variants: list[tuple[int, int | None]] = []
    for token in (t.strip() for t in spec.split(",") if t.strip()):
        size, _, bucket = token.partition("/")
        variants.append((int(size), int(bucket) if bucket else None))
    return variants


def _thread_counts(spec: str) -> list[int | None]:
    """``"1,0"`` -> [1, None]: 0 means ONNX Runtime's own default."""
    return [int(t) or None for t in (x.strip() for x in str(spec).split(",")) if t]


def phase_floor(
    args: argparse.Namespace, corpus: TextCorpus, classifier_dir: Path, guard_dir: Path, deadline: Deadline
) -> dict[str, Any]:
    from loadtests._floor import load_pair, measure_floor

    sweep = []
    for threads in _thread_counts(args.floor_threads):
        # Each thread setting gets its own sessions, as the service would create them.
        classifier, guard = load_pair(classifier_dir, guard_dir, variant="int8", intra_op_threads=threads)
        for batch_size, bucket in _floor_variants(args.floor_batches):
            seconds = deadline.bounded(args.floor_duration, reserve_s=240.0)
            if seconds <= 0:
                break
            result = measure_floor(
                classifier,
                guard,
                corpus.benign,
                batch_size=batch_size,
                bucket_size=bucket,
                duration_s=seconds,
                intra_op_threads=threads,
            )
            logger.info(
                "floor %s, %s thread(s): %.1f texts/s, %.2f CPU ms/text",
                result.variant,
                threads or "default",
                result.texts_per_s,
                result.cpu_ms_per_text,
            )
            sweep.append(result.model_dump())
        del classifier, guard
    if not sweep:
        raise BenchError("no time left for the floor phase")
    best = max(sweep, key=lambda r: r["texts_per_s"])
    return {**best, "sweep": sweep}


def comparing(args: argparse.Namespace) -> bool:
    return args.compare_guard_tag is not None or args.compare_classifier_tag is not None


def phase_compare(args: argparse.Namespace, corpus: TextCorpus, deadline: Deadline) -> dict[str, Any]:
    """Variant A against variant B on the floor, alternating rounds (loadtests/_compare.py)."""
    from loadtests._compare import compare_variants, parse_pair
    from loadtests._floor import load_pair, measure_floor

    try:
        classifiers = parse_pair(args.compare_classifier_tag, args.classifier_tag)
        guards = parse_pair(args.compare_guard_tag, args.guard_tag)
    except ValueError as error:
        raise BenchError(str(error)) from error
    resolved = {
        label: (resolve_model(classifiers[i]), resolve_model(guards[i])) for i, label in enumerate(("a", "b"))
    }
    tags = {label: (c[0], g[0]) for label, (c, g) in resolved.items()}
    wanted = 2 * args.compare_rounds * args.compare_round_s
    round_s = args.compare_round_s * deadline.bounded(wanted, reserve_s=240.0) / wanted
    if round_s <= 0:
        raise BenchError("no time left for the comparison phase")

    def load(label: str) -> tuple[Any, Any]:
        (_, classifier_dir), (_, guard_dir) = resolved[label]
        return load_pair(classifier_dir, guard_dir, variant="int8", intra_op_threads=args.compare_threads or None)

    result = compare_variants(
        load, tags, corpus.benign, measure=measure_floor, rounds=args.compare_rounds, round_s=round_s,
        batch_size=args.compare_batch,
    )
    logger.info(
        "compare: A %.2f CPU ms/text, B %.2f CPU ms/text (B/A %.3f); throughput B/A %.3f",
        result.a.cpu_ms_per_text or float("nan"),
        result.b.cpu_ms_per_text or float("nan"),
        result.cpu_ms_per_text_ratio or float("nan"),
        result.throughput_ratio or float("nan"),
    )
    return result.model_dump()


def comparing_policies(args: argparse.Namespace) -> bool:
    return args.compare_policy is not None or args.compare_probe is not None or bool(args.compare_server_env)


def _policy_pair(args: argparse.Namespace, log_dir: Path) -> tuple[Path | None, Path | None]:
    """The two policy files of ``compare_policy``: given, written for ``--compare-probe``,
    or the base policy twice (``None``: the bundled default) when only the servers' settings differ."""
    from loadtests._policy_compare import parse_policy_pair, write_probe_policies

    try:
        if args.compare_policy is not None:
            return parse_policy_pair(args.compare_policy)
        if args.compare_probe is not None:
            return write_probe_policies(
                Path(args.policy) if args.policy else None, args.compare_probe, log_dir / "compare_policies"
            )
    except ValueError as error:  # PolicyError is a ValueError too
        raise BenchError(str(error)) from error
    base = Path(args.policy) if args.policy else None
    return base, base


def side_env(specs: list[str]) -> dict[str, dict[str, str]]:
    """``--compare-server-env`` values (``a:KEY=VALUE``) as each side's extra environment."""
    sides: dict[str, dict[str, str]] = {"a": {}, "b": {}}
    for spec in specs:
        side, _, pair = spec.partition(":")
        key, sep, value = pair.partition("=")
        if side.lower() not in sides or not sep or not key:
            raise BenchError(f"--compare-server-env {spec!r} is not a:KEY=VALUE or b:KEY=VALUE")
        sides[side.lower()][key] = value
    return sides


def phase_compare_policy(
    args: argparse.Namespace,
    items: list[dict[str, str]],
    tags: dict[str, str],
    log_dir: Path,
    deadline: Deadline,
) -> dict[str, Any]:
    """Policy A against policy B: both served at once, saturation rounds alternating."""
    from contextlib import ExitStack

    from loadtests._policy_compare import PROBE_TARGET, PolicyRound, alternate_rounds
    from loadtests._server import BentoServer

    paths = dict(zip(("a", "b"), _policy_pair(args, log_dir), strict=True))
    sides = side_env(args.compare_server_env)
    reserve = 0.0 if {"floor", "fairgate", "usual"} <= set(args.skip) else 240.0
    bodies = encode_bodies(items)
    with ExitStack() as stack:
        servers = {}
        for label, path in paths.items():
            extra = {"FAIRGATE_CLASSIFIER_TAG": tags["classifier"], "FAIRGATE_GUARD_TAG": tags["guard"]}
            for pair in args.service_env:
                key, sep, value = pair.partition("=")
                if not sep or not key:
                    raise BenchError(f"--service-env {pair!r} is not KEY=VALUE")
                extra[key] = value
            if path is not None:
                extra["FAIRGATE_POLICY"] = str(path)
            extra.update(sides[label])
            server = BentoServer(
                target=args.fairgate_target,
                env=_server_env(extra),
                log_path=log_dir / f"fairgate_policy_{label}.log",
                cwd=REPO_ROOT,
                start_timeout_s=min(args.start_timeout, max(deadline.left() - 60, 10)),
            )
            stack.callback(server.stop)
            servers[label] = server.start()  # both load their models at once
        for server in servers.values():
            server.wait_ready()
            asyncio.run(_smoke(server.url, items[0], "action"))
        phases = 2 if args.compare_open_rate is not None else 1  # saturation rounds, then open-loop rounds
        wanted = phases * 2 * args.compare_policy_rounds * (args.compare_policy_warmup + args.compare_policy_round_s)
        scale = deadline.bounded(wanted, reserve_s=reserve) / wanted
        round_s = args.compare_policy_round_s * scale
        if round_s < 2.0:
            raise BenchError("no time left for the policy comparison phase")
        warm = args.compare_policy_warmup * scale

        def measure(label: str) -> PolicyRound:
            server = servers[label]
            cpu = server.cpu_seconds()
            result = asyncio.run(
                _closed_round(server.url, bodies, args=args, warmup_s=warm, seconds=round_s)
            )
            cpu = None if cpu is None else (server.cpu_seconds() or 0.0) - cpu
            start, end = result.window()
            completions = sum(1 for r in result.records if r.ok and start <= r.done_s < end)
            logger.info(
                "compare_policy %s: %.1f req/s over %.1fs", label.upper(), completions / max(end - start, 1e-9), end - start
            )
            return PolicyRound(
                completions=completions,
                window_s=max(0.0, end - start),
                ok_requests=sum(1 for r in result.records if r.ok),
                server_cpu_s=cpu,
                errors=sum(1 for r in result.records if not r.ok),
            )

        result = alternate_rounds(
            measure, {k: str(v or "default") for k, v in paths.items()}, rounds=args.compare_policy_rounds
        )
        if args.compare_open_rate is not None:
            rate = compare_open_rate(args.compare_open_rate, result, half_load=args.half_load)
            result["open_loop"] = _alternate_open_rounds(
                servers, bodies, args=args, rate=rate, warmup_s=warm, seconds=round_s
            )
        result["server_env"] = sides
        result["probe_status"] = {}
        for label, server in servers.items():
            status = _get_json(server.url + "/guardrails/status")
            probe = ((status.get("guardrails") or {}).get("counterfactual") or {}) if isinstance(status, dict) else status
            result["probe_status"][label] = (
                {k: probe.get(k) for k in ("enabled", "sample", "sampled", "errors", "pending", "dropped")}
                | {"probed_items": sum(k.get("items", 0) for k in probe.get("kinds") or [])}
                if isinstance(probe, dict)
                else probe
            )
    result.update(round_s=round(round_s, 3), warmup_s=round(warm, 3), concurrency=args.concurrency)
    if args.compare_probe is not None:
        ratio = result["throughput_ratio"]
        result["target"] = {
            "figure": "throughput_ratio (probe on / probe off)",
            "op": ">=",
            "bound": PROBE_TARGET,
            "met": None if ratio is None else ratio >= PROBE_TARGET,
        }
    return result


def parse_open_rate(spec: str) -> float | None:
    """``--compare-open-rate``: a rate in req/s above 0, or None for ``half``."""
    if spec.strip().lower() == "half":
        return None
    try:
        rate = float(spec)
    except ValueError:
        raise BenchError(f"--compare-open-rate {spec!r} is not a rate in req/s or 'half'") from None
    if not rate > 0:
        raise BenchError(f"--compare-open-rate {spec!r} must be above 0 req/s")
    return rate


def compare_open_rate(spec: str, saturation: dict[str, Any], *, half_load: float) -> float:
    """The open-loop rate of ``--compare-open-rate``: a number of req/s, or ``half``
    (``half_load`` x the lower of the two sides' saturation, so neither side is overloaded)."""
    rate = parse_open_rate(spec)
    if rate is not None:
        return rate
    rates = [(saturation.get(side) or {}).get("throughput_rps") for side in ("a", "b")]
    if not all(rates):
        raise BenchError("--compare-open-rate half: a side served nothing at saturation")
    return half_load * min(float(r) for r in rates if r)


def _alternate_open_rounds(
    servers: dict[str, Any],
    bodies: list[bytes],
    *,
    args: argparse.Namespace,
    rate: float,
    warmup_s: float,
    seconds: float,
) -> dict[str, Any]:
    """Open-loop rounds at ``rate``, A B then B A (as the saturation rounds); each side's
    latencies pooled over its rounds, so a drift of the machine falls on both alike."""
    from loadtests._policy_compare import alternating_order

    latencies: dict[str, list[float]] = {"a": [], "b": []}
    errors = {"a": 0, "b": 0}
    for label in alternating_order(args.compare_policy_rounds):
        result = asyncio.run(_open(servers[label].url, bodies, rate=rate, seconds=warmup_s + seconds, args=args))
        window = result.scheduled_in(warmup_s, warmup_s + seconds)
        latencies[label].extend(r.latency_s * 1000.0 for r in window if r.ok)
        errors[label] += sum(1 for r in window if not r.ok)
        logger.info("compare open loop %s at %.1f req/s: %d answered", label.upper(), rate, len(window))
    pooled = {label: {**_pooled(values), "errors": errors[label]} for label, values in latencies.items()}
    p99_a, p99_b = pooled["a"].get("p99_ms"), pooled["b"].get("p99_ms")
    return {
        "offered_rps": round(rate, 3),
        "rounds": args.compare_policy_rounds,
        **pooled,
        "p99_delta_ms": round(p99_b - p99_a, 3) if p99_a is not None and p99_b is not None else None,
    }


async def _closed_round(
    url: str, bodies: list[bytes], *, args: argparse.Namespace, warmup_s: float, seconds: float
) -> PhaseResult:
    """One comparison round: the saturation closed loop for ``warmup_s + seconds``, no extension."""
    _settle_client_heap()
    async with HttpSender(base_url=url, path="/classify", connections=max(args.concurrency, 8)) as send:
        return await run_closed_loop(
            send,
            bodies,
            concurrency=args.concurrency,
            duration_s=warmup_s + seconds,
            max_requests=args.max_requests,
            timeout_s=args.timeout,
            warmup_s=warmup_s,
            drain_s=args.drain,
        )


def _settle_client_heap() -> None:
    """Collect and freeze the load generator's heap before a measured loop.

    The client keeps every phase's request records; by the sixth phase of a long run its
    full collections stalled its own event loop long enough to show in the measured tail
    (issue 14: one pooled A/B run of eight phases drifted from p99 37 to 325 ms with a fresh
    server each phase; rerun with a collect-and-freeze between phases, it showed no drift).
    Frozen objects are never scanned again, so a collection only walks what the running
    loop allocates.
    """
    gc.collect()
    gc.freeze()


async def _smoke(url: str, body: dict[str, Any], expect_key: str, *, wait_s: float = 90.0) -> Any:
    """One real request; 503 is retried for ``wait_s`` (with several workers, /readyz turns
    ready with the first worker while another may still be loading its models)."""
    deadline = time.monotonic() + wait_s
    while True:
        status, payload = await post_json(url, "/classify", body)
        if status == 503 and time.monotonic() < deadline:
            await asyncio.sleep(1.0)
            continue
        if status != 200 or not isinstance(payload, dict) or expect_key not in payload:
            raise BenchError(f"smoke request to {url}/classify answered {status}: {str(payload)[:300]}")
        return payload


async def _closed(
    url: str, bodies: list[bytes], *, args: argparse.Namespace, warmup_s: float, max_s: float
) -> PhaseResult:
    _settle_client_heap()
    async with HttpSender(base_url=url, path="/classify", connections=max(args.concurrency, 8)) as send:
        return await run_closed_loop(
            send,
            bodies,
            concurrency=args.concurrency,
            duration_s=min(warmup_s + args.duration, max_s),
            max_requests=args.max_requests,
            timeout_s=args.timeout,
            warmup_s=warmup_s,
            min_completions=args.min_completions,
            max_duration_s=max_s,
            drain_s=args.drain,
        )


async def _open(
    url: str, bodies: list[bytes], *, rate: float, seconds: float, args: argparse.Namespace
) -> PhaseResult:
    _settle_client_heap()
    offsets = arrival_offsets(
        rate=rate, duration_s=seconds, max_requests=args.max_requests, arrival=args.arrival
    )
    async with HttpSender(base_url=url, path="/classify", connections=2048) as send:
        return await run_open_loop(send, bodies, offsets, timeout_s=args.timeout)


def _cpu_now() -> float:
    times = os.times()
    return times.user + times.system


def _saturation(
    server: Any, bodies: list[bytes], args: argparse.Namespace, deadline: Deadline, reserve_s: float
) -> dict[str, Any]:
    """Closed-loop saturation: completions per second inside the measurement window.

    Also reports Little's law (users / mean response time) as a cross-check: the two
    agree when the window held a steady state.
    """
    warm = args.warmup
    max_s = deadline.bounded(args.max_phase, reserve_s=reserve_s)
    if max_s <= warm + 1:
        raise BenchError("no time left for the saturation phase")
    server_cpu, client_cpu = server.cpu_seconds(), _cpu_now()
    result = asyncio.run(_closed(server.url, bodies, args=args, warmup_s=warm, max_s=max_s))
    server_cpu = None if server_cpu is None else (server.cpu_seconds() or 0.0) - server_cpu
    client_cpu = _cpu_now() - client_cpu
    served = sum(1 for r in result.records if r.ok)
    start, end = result.window()
    if end <= start:
        raise BenchError(f"no answer within {max_s:.0f}s of closed-loop load: {result.error_counts()}")
    summary = result.summary(start_s=start, end_s=end).model_dump()
    mean_s = (summary["mean_ms"] or 0.0) / 1000.0
    summary.update(
        concurrency=args.concurrency,
        window_s=[round(start, 3), round(end, 3)],
        littles_law_rps=round(args.concurrency / mean_s, 3) if mean_s > 0 else None,
        phase_ok_requests=served,
        server_cpu_ms_per_request=round(server_cpu * 1000 / served, 3)
        if served and server_cpu is not None
        else None,
        client_cpu_ms_per_request=round(client_cpu * 1000 / served, 3) if served else None,
        errors_by_kind=result.error_counts(),
    )
    return summary


def _get_json(url: str) -> Any:
    """One GET, decoded; the error text instead when it fails (it is only recorded)."""
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return json.loads(response.read())
    except (OSError, ValueError) as error:
        return f"{type(error).__name__}: {error}"


def _metric_lines(url: str, name: str) -> list[str] | str:
    """The samples of one metric from a Prometheus text page (shows the guardrails were on)."""
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            text = response.read().decode("utf-8", "replace")
    except OSError as error:
        return f"{type(error).__name__}: {error}"
    return [line for line in text.splitlines() if line.startswith(name)]


def _server_env(extra: dict[str, str]) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "BENTOML_DO_NOT_TRACK": "true",
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
            "PYTHONPATH": os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p),
        }
    )
    env.update(extra)
    return env


def phase_fairgate(
    args: argparse.Namespace,
    items: list[dict[str, str]],
    tags: dict[str, str],
    log_dir: Path,
    deadline: Deadline,
    *,
    extra_env: dict[str, str] | None = None,
    open_rate: float | None = None,
    log_name: str = "fairgate.log",
    latencies_ms: list[float] | None = None,
) -> dict[str, Any]:
    """Serve fairgate; saturation, then the half-load open loop. ``latencies_ms`` (when given)
    gets every successful half-load request's latency, for pooling over phases."""
    from loadtests._server import BentoServer

    extra = {"FAIRGATE_CLASSIFIER_TAG": tags["classifier"], "FAIRGATE_GUARD_TAG": tags["guard"]}
    if args.policy:
        extra["FAIRGATE_POLICY"] = str(args.policy)
    for pair in args.service_env:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise BenchError(f"--service-env {pair!r} is not KEY=VALUE")
        extra[key] = value
    extra.update(extra_env or {})
    bodies = encode_bodies(items)
    with BentoServer(
        target=args.fairgate_target,
        env=_server_env(extra),
        log_path=log_dir / log_name,
        cwd=REPO_ROOT,
        start_timeout_s=min(args.start_timeout, max(deadline.left() - 60, 10)),
    ) as server:
        sample = asyncio.run(_smoke(server.url, items[0], "action"))
        status = _get_json(server.url + "/guardrails/status")
        saturation = _saturation(server, bodies, args, deadline, reserve_s=150.0)
        rate = open_rate or args.open_rate or saturation["throughput_rps"] * args.half_load
        if rate <= 0:
            raise BenchError(f"fairgate served nothing at saturation: {saturation['errors_by_kind']}")
        warm = min(3.0, args.warmup)
        seconds = deadline.bounded(args.duration, reserve_s=110.0 + warm)
        result = asyncio.run(_open(server.url, bodies, rate=rate, seconds=warm + seconds, args=args))
        half = result.summary(start_s=warm, end_s=warm + seconds).model_dump()
        if latencies_ms is not None:
            latencies_ms.extend(r.latency_s * 1000.0 for r in result.scheduled_in(warm, warm + seconds) if r.ok)
        lags = sorted(r.send_lag_s for r in result.records if r.scheduled_s >= warm)
        half.update(
            offered_rps=round(rate, 3),
            arrival=args.arrival,
            warmup_s=warm,
            client_send_lag_p99_ms=round(lags[int(0.99 * (len(lags) - 1))] * 1000, 3) if lags else None,
            errors_by_kind=result.error_counts(),
        )
        decisions = _metric_lines(server.url + "/metrics", "fairgate_decisions_total")
        return {
            "startup_s": round(server.startup_s or 0, 1),
            "decisions_after_run": decisions,
            "sample_response": sample,
            "saturation": saturation,
            "half_load": half,
            "models": tags,
            "service_env": extra,
            "service_status": {
                k: status.get(k)
                for k in ("models", "shared_tokenization", "worker", "policy_version", "window_scope", "degraded")
            }
            if isinstance(status, dict)
            else status,
        }


def phase_fairgate_redis(
    args: argparse.Namespace,
    items: list[dict[str, str]],
    tags: dict[str, str],
    log_dir: Path,
    deadline: Deadline,
    without: dict[str, Any],
    *,
    log_name: str = "fairgate_redis.log",
    latencies_ms: list[float] | None = None,
) -> dict[str, Any]:
    """Phase 2 again with FAIRGATE_REDIS_URL, at the half-load rate of the run without Redis."""
    from loadtests._redis import RedisStartError, redis_for_bench

    rate = (without.get("half_load") or {}).get("offered_rps")
    try:
        with redis_for_bench(args.redis, log_dir=log_dir) as url:
            result = phase_fairgate(
                args, items, tags, log_dir, deadline,
                extra_env={"FAIRGATE_REDIS_URL": url}, open_rate=rate, log_name=log_name,
                latencies_ms=latencies_ms,
            )
    except RedisStartError as error:
        raise BenchError(str(error)) from error
    scope = (result.get("service_status") or {}).get("window_scope")
    if scope != "fleet":
        raise BenchError(f"the service did not use Redis (window_scope {scope!r}); see {log_name}")
    return result


def balanced_order(pairs: int) -> str:
    """``pairs`` L/R pairs in the Thue-Morse order (L R R L R L L R ...): each mode at every
    position, so a machine that drifts during the run weighs on both alike."""
    return "".join("LR"[bin(k).count("1") % 2] for k in range(2 * pairs))


def redis_rounds(
    args: argparse.Namespace,
    items: list[dict[str, str]],
    tags: dict[str, str],
    log_dir: Path,
    deadline: Deadline,
    report: dict[str, Any],
    latencies: dict[str, list[float]],
) -> dict[str, Any]:
    """The pairs after the first (``--redis-rounds``), each phase a fresh server at the first's half-load rate.

    A pair starts only when the budget holds two phases as long as the longest so far (plus
    a margin), so the order stays whole pairs; a phase that fails ends the rounds and keeps
    the pairs finished before it (its own latencies are dropped).
    """
    first = report["fairgate"]  # the L phase whose half-load rate every phase uses
    seconds = report.get("phase_seconds", {})
    phase_s = max(float(seconds.get("fairgate", 0.0)), float(seconds.get("fairgate_redis", 0.0)), 60.0)
    order = balanced_order(args.redis_rounds)
    phases: list[dict[str, Any]] = []
    stopped: str | None = None
    for pair in range(1, args.redis_rounds):
        if deadline.left() < 2 * phase_s + 60:
            stopped = f"the run's --budget left {deadline.left():.0f}s, under two phases of {phase_s:.0f}s"
            break
        kept = {mode: len(values) for mode, values in latencies.items()}
        done: list[dict[str, Any]] = []
        try:
            for k in (2 * pair, 2 * pair + 1):
                mode = order[k]
                started = time.monotonic()
                if mode == "L":
                    result = phase_fairgate(
                        args, items, tags, log_dir, deadline, open_rate=first["half_load"]["offered_rps"],
                        log_name=f"fairgate_round{k}.log", latencies_ms=latencies["L"],
                    )
                else:
                    result = phase_fairgate_redis(
                        args, items, tags, log_dir, deadline, first,
                        log_name=f"fairgate_redis_round{k}.log", latencies_ms=latencies["R"],
                    )
                phase_s = max(phase_s, time.monotonic() - started)
                done.append({"mode": mode, "saturation": result["saturation"], "half_load": result["half_load"]})
        except (BenchError, ValueError) as error:
            for mode, n in kept.items():  # the unfinished pair counts for neither mode
                del latencies[mode][n:]
            stopped = f"pair {pair + 1} failed: {error}"
            break
        phases.extend(done)
    if stopped is not None:
        logger.warning("redis rounds stopped after %d of %d pairs: %s", 1 + len(phases) // 2, args.redis_rounds, stopped)
    return {"order": order[: 2 + len(phases)], "phases": phases, **({"stopped": stopped} if stopped else {})}


def _pooled(latencies_ms: list[float]) -> dict[str, Any]:
    """Percentiles of one mode's pooled half-load latencies, by the same estimator as every phase's."""
    if not latencies_ms:
        return {"n": 0}
    return {"n": len(latencies_ms), **{f"p{q}_ms": round(percentile(latencies_ms, q), 3) for q in (50, 95, 99)}}


def redis_comparison(
    without: dict[str, Any],
    with_redis: dict[str, Any],
    *,
    rounds: dict[str, Any] | None = None,
    latencies: dict[str, list[float]] | None = None,
) -> dict[str, Any]:
    """Saturation with Redis over without (target >= 0.9), p99 at the same half-load rate (<= +5 ms).

    With ``rounds`` (more pairs than the first), saturation is the mean over each mode's
    phases and p99 is taken over every mode's pooled half-load ``latencies``.
    """
    sat = (without.get("saturation") or {}).get("throughput_rps")
    sat_redis = (with_redis.get("saturation") or {}).get("throughput_rps")
    p99 = (without.get("half_load") or {}).get("p99_ms")
    p99_redis = (with_redis.get("half_load") or {}).get("p99_ms")
    pooled: dict[str, Any] | None = None
    if rounds is not None and rounds.get("phases") and latencies is not None:
        by_mode: dict[str, list[float]] = {"L": [], "R": []}
        for mode, phase in [("L", without), ("R", with_redis)] + [(r["mode"], r) for r in rounds["phases"]]:
            value = (phase.get("saturation") or {}).get("throughput_rps")
            if value is not None:
                by_mode[mode].append(value)
        pooled = {"order": rounds["order"], "L": _pooled(latencies["L"]), "R": _pooled(latencies["R"])}
        sat = round(sum(by_mode["L"]) / len(by_mode["L"]), 3) if by_mode["L"] else None
        sat_redis = round(sum(by_mode["R"]) / len(by_mode["R"]), 3) if by_mode["R"] else None
        p99, p99_redis = pooled["L"].get("p99_ms"), pooled["R"].get("p99_ms")
    ratio = round(sat_redis / sat, 4) if sat and sat_redis is not None else None
    delta = round(p99_redis - p99, 3) if p99 is not None and p99_redis is not None else None
    return {
        **({"pooled": pooled} if pooled is not None else {}),
        "saturation_rps": [sat, sat_redis],
        "saturation_ratio": ratio,
        "p99_ms_half_load": [p99, p99_redis],
        "p99_delta_ms": delta,
        "targets": {
            "saturation_ratio": {"op": ">=", "bound": 0.9, "met": None if ratio is None else ratio >= 0.9},
            "p99_delta_ms": {"op": "<=", "bound": 5.0, "met": None if delta is None else delta <= 5.0},
        },
    }


def phase_usual(
    args: argparse.Namespace, items: list[dict[str, str]], log_dir: Path, deadline: Deadline
) -> dict[str, Any]:
    from loadtests._server import BentoServer

    workdir = Path(tempfile.mkdtemp(prefix="fairgate-usual-stack-"))
    extra = {"USUAL_STACK_WORKDIR": str(workdir)}
    try:
        with BentoServer(
            target=USUAL_TARGET,
            env=_server_env(extra),
            log_path=log_dir / "usual_stack.log",
            cwd=REPO_ROOT,
            start_timeout_s=min(args.start_timeout, max(deadline.left() - 40, 10)),
        ) as server:
            sample = asyncio.run(_smoke(server.url, items[0], "action"))
            saturation = _saturation(server, encode_bodies(items), args, deadline, reserve_s=15.0)
            return {
                "startup_s": round(server.startup_s or 0, 1),
                "sample_response": sample,
                "saturation": saturation,
            }
    finally:
        import shutil

        shutil.rmtree(workdir, ignore_errors=True)


# ---------------------------------------------------------------- run


def _run_phase(name: str, report: dict[str, Any], func: Any, *a: Any) -> None:
    started = time.monotonic()
    try:
        report[name] = func(*a)
    except BenchError as error:
        logger.error("%s phase failed: %s", name, error)
        report[name] = {"error": str(error)}
    except Exception as error:
        logger.exception("%s phase failed", name)
        report[name] = {"error": f"{type(error).__name__}: {error}"}
    report.setdefault("phase_seconds", {})[name] = round(time.monotonic() - started, 1)


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through the `with` blocks, which stop the servers


def run(args: argparse.Namespace) -> dict[str, Any]:
    deadline = Deadline(args.budget)
    corpus = load_corpus()
    items = make_items(corpus, len(corpus.benign), seed=0)  # the same texts, in order, for every phase
    log_dir = args.log_dir or Path(tempfile.mkdtemp(prefix="fairgate-bench-logs-"))
    report: dict[str, Any] = {
        "schema": SCHEMA,
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "load_avg_at_start": list(os.getloadavg()),
        },
        "texts": {"source": corpus.benign_source, "count": len(items)},
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "log_dir": str(log_dir),
    }
    tags: dict[str, str] = {}
    dirs: dict[str, Path] = {}
    try:
        tags["classifier"], dirs["classifier"] = resolve_model(args.classifier_tag)
        tags["guard"], dirs["guard"] = resolve_model(args.guard_tag)
    except BenchError as error:
        report["error"] = str(error)
    report["models"] = tags
    if "error" not in report:
        if comparing_policies(args):
            _run_phase("compare_policy", report, phase_compare_policy, args, items, tags, log_dir, deadline)
        if comparing(args):
            _run_phase("compare", report, phase_compare, args, corpus, deadline)
        if "floor" not in args.skip:
            _run_phase(
                "floor", report, phase_floor, args, corpus, dirs["classifier"], dirs["guard"], deadline
            )
        if "fairgate" not in args.skip:
            latencies: dict[str, list[float]] = {"L": [], "R": []}
            _run_phase(
                "fairgate", report, partial(phase_fairgate, latencies_ms=latencies["L"]),
                args, items, tags, log_dir, deadline,
            )
            if args.redis:
                _run_phase(
                    "fairgate_redis", report, partial(phase_fairgate_redis, latencies_ms=latencies["R"]),
                    args, items, tags, log_dir, deadline, report["fairgate"],
                )
                rounds = None
                if args.redis_rounds > 1 and not any("error" in report[k] for k in ("fairgate", "fairgate_redis")):
                    _run_phase(
                        "redis_rounds", report, redis_rounds,
                        args, items, tags, log_dir, deadline, report, latencies,
                    )
                    rounds = report["redis_rounds"] if "error" not in report["redis_rounds"] else None
                report["redis_comparison"] = redis_comparison(
                    report["fairgate"], report["fairgate_redis"], rounds=rounds, latencies=latencies
                )
    if "usual" not in args.skip:
        _run_phase("usual", report, phase_usual, args, items, log_dir, deadline)
    for name in (
        "floor", "fairgate", "usual",
        *(("compare",) if comparing(args) else ()),
        *(("compare_policy",) if comparing_policies(args) else ()),
    ):
        report.setdefault(name, {"skipped": True})
    fair = report["fairgate"]
    report.update(
        headline(
            floor_texts_per_s=report["floor"].get("texts_per_s"),
            fairgate_rps=(fair.get("saturation") or {}).get("throughput_rps"),
            usual_rps=(report["usual"].get("saturation") or {}).get("throughput_rps"),
            p99_ms_half_load=(fair.get("half_load") or {}).get("p99_ms"),
            fairgate_cpu_ms_per_request=(fair.get("saturation") or {}).get("server_cpu_ms_per_request"),
            usual_cpu_ms_per_request=(report["usual"].get("saturation") or {}).get(
                "server_cpu_ms_per_request"
            ),
            floor_cpu_ms_per_text=report["floor"].get("cpu_ms_per_text"),
        )
    )
    report["machine"]["load_avg_at_end"] = list(os.getloadavg())
    report["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    check_report(report)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        os.environ.setdefault(name, "1")
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
    signal.signal(signal.SIGTERM, _terminate)
    started = time.monotonic()
    report = run(args)
    report["wall_s"] = round(time.monotonic() - started, 1)
    args.out.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    print(format_table(report))
    if "redis_comparison" in report:
        comparison = report["redis_comparison"]
        pooled = comparison.get("pooled")
        if pooled:
            print(
                f"pooled over the phases {pooled['order']}: saturation is each mode's mean, "
                f"p99 over {pooled['L']['n']} (without) and {pooled['R']['n']} (with Redis) half-load requests"
            )
        print(
            f"with Redis: saturation {comparison['saturation_rps'][1]} req/s "
            f"({comparison['saturation_ratio']} of {comparison['saturation_rps'][0]}; target >= 0.9), "
            f"p99 at half load {comparison['p99_ms_half_load'][1]} ms "
            f"({comparison['p99_delta_ms']:+} ms vs {comparison['p99_ms_half_load'][0]}; target <= +5)"
            if comparison["p99_delta_ms"] is not None
            else f"with Redis: {comparison}"
        )
    print(f"\nwrote {args.out} in {report['wall_s']:.0f}s; server logs in {report['log_dir']}")
    print(
        "note: figures from one run on a shared 2-core machine; the load client shares the cores with the server."
    )
    if "a" in report.get("compare_policy", {}):
        comparison = report["compare_policy"]
        a, b = comparison["a"], comparison["b"]
        target = comparison.get("target")
        print(
            f"compare_policy ({a['rounds']} alternating rounds of {comparison['round_s']}s each, "
            f"{comparison['concurrency']} users): A {a['throughput_rps']} req/s ({a['policy']}), "
            f"B {b['throughput_rps']} req/s ({b['policy']}); saturation B/A {comparison['throughput_ratio']}"
            + (f" (target >= {target['bound']}: {'met' if target['met'] else 'MISSED'})" if target else "")
            + f"; server CPU ms/request A {a['server_cpu_ms_per_request']}, B {b['server_cpu_ms_per_request']}"
            f" (B/A {comparison['cpu_ms_per_request_ratio']})"
            + "".join(
                f"; {side.upper()} env {env}" for side, env in (comparison.get("server_env") or {}).items() if env
            )
        )
        opened = comparison.get("open_loop")
        if opened:
            a_open, b_open = opened["a"], opened["b"]
            print(
                f"compare_policy open loop at {opened['offered_rps']} req/s ({opened['rounds']} alternating rounds "
                f"each): A p50/p95/p99 {a_open.get('p50_ms')}/{a_open.get('p95_ms')}/{a_open.get('p99_ms')} ms "
                f"over {a_open['n']}, B {b_open.get('p50_ms')}/{b_open.get('p95_ms')}/{b_open.get('p99_ms')} ms "
                f"over {b_open['n']} (p99 B-A {opened['p99_delta_ms']} ms); errors A {a_open['errors']}, "
                f"B {b_open['errors']}"
            )
    if "compare" in report and "error" not in report["compare"]:
        comparison = report["compare"]
        print(
            f"compare (batch {comparison['batch_size']}, alternating rounds): "
            f"A {comparison['a']['cpu_ms_per_text']} CPU ms/text, B {comparison['b']['cpu_ms_per_text']}; "
            f"CPU B/A {comparison['cpu_ms_per_text_ratio']}, throughput B/A {comparison['throughput_ratio']}"
        )
    phases = (
        "floor", "fairgate", "usual",
        *(("fairgate_redis",) if args.redis else ()),
        *(("compare",) if comparing(args) else ()),
        *(("compare_policy",) if comparing_policies(args) else ()),
    )
    failed = [name for name in phases if "error" in report[name]] + (
        ["models"] if "error" in report else []
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
