"""``python -m loadtests.redis_cost``: what the shared rate windows cost Redis (docs/fleet.md).

For the default policy (or ``--policy``), with count windows and with one-hour time
windows: the client round trip of one batch and Redis's CPU per script call
(``INFO commandstats``) for several batch sizes, then the memory of every window filled
(``MEMORY USAGE`` summed over the keys). ``--method sequential`` measures the same with the
e-detectors updated in the record script (and their state in the memory figure). Starts a private redis-server from PATH unless
``--url`` names one (its data under the policy's namespace is left in place).
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

logger = logging.getLogger("loadtests.redis_cost")

WINDOWS = (("count", {"size": 2000}), ("time", {"seconds": 3600}))


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def measure(
    url: str, *, policy_path: str | None, batch_sizes: Sequence[int], n: int, seed: int, method: str | None = None
) -> list[dict[str, Any]]:
    import redis

    from fairgate.guardrails.policy import Policy, load_policy
    from fairgate.guardrails.rates import RateMonitor
    from fairgate.guardrails.redis_store import RedisWindowStore

    client = redis.Redis.from_url(url)
    base = load_policy(policy_path)
    rows = []
    for label, window in WINDOWS:
        data = base.model_dump()
        data["rates"]["window"] = window
        if method is not None:
            data["rates"]["method"] = method
        data["version"] = f"{base.version}-cost-{label}-{os.getpid()}"
        policy = Policy.from_mapping(data)
        store = RedisWindowStore.from_url(url, policy_version=policy.version, timeout_s=1.0)
        monitors = [
            RateMonitor(monitor=m, rates=policy.rates, groups=policy.label_values, store=store, clock=time.time)
            for m in policy.rates.monitors
        ]
        rng = random.Random(seed)
        groups = policy.label_values
        for size in batch_sizes:
            client.config_resetstat()
            trips = []
            for _ in range(n):
                items = [((rng.choice(groups),), rng.random() < 0.3) for _ in range(size)]
                started = time.perf_counter()
                reply = store.record([m.batch(items) for m in monitors], now=time.time())
                trips.append(time.perf_counter() - started)
                for monitor in monitors:
                    pending = monitor.absorb(reply.monitors[monitor.name])
                    if pending is not None:
                        monitor.settle(pending, store.publish([pending.update]).monitors[monitor.name])
            stats = client.info("commandstats").get("cmdstat_evalsha", {})
            rows.append(
                {
                    "window": label,
                    "method": policy.rates.method,
                    "batch": size,
                    "round_trip_p50_ms": round(_percentile(trips, 0.5) * 1000, 3),
                    "round_trip_p99_ms": round(_percentile(trips, 0.99) * 1000, 3),
                    "redis_us_per_script_call": stats.get("usec_per_call"),
                    "script_calls": stats.get("calls"),
                    "redis_us_per_item": round(stats.get("usec_per_call", 0) * stats.get("calls", 0) / (n * size), 1),
                }
            )
        # Every window full: count windows get `size` outcomes, time windows one batch in each bucket.
        spec = monitors[0].spec
        stamps = [time.time()] if spec.seconds is None else [
            time.time() - i * spec.seconds / spec.buckets for i in range(spec.buckets - 1, -1, -1)
        ]
        fill = spec.size or 10
        for stamp in stamps:
            for monitor in monitors:
                store.add({monitor.key(g): [rng.random() < 0.3 for _ in range(fill)] for g in groups}, now=stamp,
                          spec=spec)
        keys = list(client.scan_iter(match="{" + store.namespace + ":*", count=1000))
        memory = sum(client.memory_usage(k) or 0 for k in keys)
        rows.append({"window": label, "keys": len(keys), "memory_kib": round(memory / 1024, 1),
                     "monitors": len(monitors), "groups": len(groups)})
        store.clear()
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtests.redis_cost", description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="auto", help="a Redis URL, or 'auto' for a private redis-server")
    parser.add_argument("--policy", default=None, help="policy YAML (default: the bundled policy)")
    parser.add_argument("--batches", default="1,8,32,128", help="items per batch, comma-separated")
    parser.add_argument("--n", type=int, default=1000, help="batches per size")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--method", choices=("window", "sequential"), default=None,
                        help="rates.method to measure (default: the policy's)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from loadtests._redis import redis_for_bench

    with redis_for_bench(args.url, log_dir=Path(tempfile.mkdtemp(prefix="fairgate-redis-cost-"))) as url:
        rows = measure(url, policy_path=args.policy, batch_sizes=[int(b) for b in args.batches.split(",")],
                       n=args.n, seed=args.seed, method=args.method)
    print(f"load average at end: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    for row in rows:
        print("  ".join(f"{k}={v}" for k, v in row.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
