"""``python -m loadtests.openloop``: constant-arrival-rate load against any fairgate URL.

    python -m loadtests.openloop --host http://127.0.0.1:3000 --rate 50 --duration 30 \
        --scenario mixed --csv loadtests/results/open50

Requests leave at fixed times (``--arrival uniform``: exactly 1/rate apart; ``poisson``:
exponential gaps) whether or not earlier ones have returned, and latency is measured
from each request's scheduled time, so a server that falls behind shows its queueing
delay instead of silently slowing the load down (what a closed loop, and locust, do).
Bounded by ``--duration``, ``--max-requests`` and ``--timeout``; then it stops.

Writes ``<csv>_requests.csv`` (one row per request) and ``<csv>_summary.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from loadtests._drivers import PhaseResult, arrival_offsets, run_open_loop
from loadtests._http import HttpSender, encode_bodies
from loadtests._texts import SKEWED_GROUP_WEIGHTS, UNIFORM_GROUP_WEIGHTS, batched, load_corpus, make_items

SCENARIOS = ("single", "batch", "mixed", "skewed")
LOOPBACK_PREFIXES = ("http://127.", "http://localhost", "http://[::1]")


def build_bodies(
    scenario: str, *, count: int, toxic_fraction: float, batch_size: int, seed: int
) -> tuple[str, list[bytes], int]:
    """``(path, bodies, texts_per_request)`` for a scenario; the same texts as the benchmark."""
    corpus = load_corpus()
    weights = SKEWED_GROUP_WEIGHTS if scenario == "skewed" else UNIFORM_GROUP_WEIGHTS
    fraction = toxic_fraction if scenario == "mixed" else 0.0
    if scenario == "batch":
        items = make_items(corpus, count * batch_size, group_weights=weights, seed=seed)
        return (
            "/classify_batch",
            encode_bodies([{"items": chunk} for chunk in batched(items, batch_size)]),
            batch_size,
        )
    items = make_items(corpus, count, toxic_fraction=fraction, group_weights=weights, seed=seed)
    return "/classify", encode_bodies(items), 1


def write_outputs(prefix: Path, result: PhaseResult, summary: dict[str, object]) -> None:
    """The per-request CSV and the summary JSON beside it."""
    prefix.parent.mkdir(parents=True, exist_ok=True)
    with Path(f"{prefix}_requests.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["scheduled_s", "sent_s", "done_s", "latency_ms", "status", "error"])
        for r in result.records:
            writer.writerow(
                [
                    f"{r.scheduled_s:.6f}",
                    f"{r.sent_s:.6f}",
                    f"{r.done_s:.6f}",
                    f"{r.latency_s * 1000:.3f}",
                    r.status or "",
                    r.error or "",
                ]
            )
    Path(f"{prefix}_summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtests.openloop", description=__doc__.splitlines()[0])
    parser.add_argument("--host", required=True, help="base URL of the service, e.g. http://127.0.0.1:3000")
    parser.add_argument("--rate", type=float, required=True, help="requests per second to offer")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of sending")
    parser.add_argument(
        "--warmup", type=float, default=2.0, help="seconds at the start left out of the summary"
    )
    parser.add_argument("--scenario", choices=SCENARIOS, default="single")
    parser.add_argument("--toxic-fraction", type=float, default=0.2)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--arrival", choices=("uniform", "poisson"), default="uniform")
    parser.add_argument("--max-requests", type=int, default=100_000)
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--csv", type=Path, default=None, help="output prefix for the CSV and summary files")
    parser.add_argument("--allow-remote", action="store_true", help="permit a non-loopback --host")
    args = parser.parse_args(argv)
    if not args.allow_remote and not args.host.startswith(LOOPBACK_PREFIXES):
        parser.error(
            f"--host {args.host} is not a loopback address; pass --allow-remote to load a remote service you own"
        )
    offsets = arrival_offsets(
        rate=args.rate,
        duration_s=args.duration,
        max_requests=args.max_requests,
        arrival=args.arrival,
        seed=args.seed,
    )
    path, bodies, per_request = build_bodies(
        args.scenario,
        count=min(len(offsets), 4096),
        toxic_fraction=args.toxic_fraction,
        batch_size=args.batch_size,
        seed=args.seed,
    )

    async def go() -> PhaseResult:
        async with HttpSender(base_url=args.host, path=path, connections=2048) as send:
            return await run_open_loop(send, bodies, offsets, timeout_s=args.timeout)

    result = asyncio.run(go())
    warm = min(args.warmup, args.duration / 2)
    stats = result.summary(start_s=warm, end_s=args.duration, texts_per_request=per_request)
    summary = {
        "host": args.host,
        "mode": "open-loop",
        "scenario": args.scenario,
        "path": path,
        "offered_rps": args.rate,
        "arrival": args.arrival,
        "warmup_s": warm,
        **stats.model_dump(),
        "errors_by_kind": result.error_counts(),
    }
    if args.csv is not None:
        write_outputs(args.csv, result, summary)
    print(json.dumps(summary, indent=2))
    return 0 if stats.errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
