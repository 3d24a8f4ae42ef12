"""Locust scenarios for fairgate (or any service with the same API), headless-friendly.

    locust -f loadtests/locustfile.py --headless --host http://127.0.0.1:3000 \
        -u 32 -r 8 -t 60s --csv loadtests/results/run SingleUser

Users (pick one or several by class name; by default all run, weighted):

- ``SingleUser``: ``POST /classify``, one benign text, groups uniform.
- ``BatchUser``: ``POST /classify_batch`` with ``--batch-size`` items.
- ``MixedUser``: benign and toxic texts (``--toxic-fraction``, default 0.2), so the
  guard flags and blocks some of them.
- ``SkewedGroupsUser``: groups drawn 60/25/5 with some unknown and missing groups, so the
  per-group rate monitors see unbalanced traffic.

These are closed-loop (each user waits for its answer); locust's ``constant_throughput``
only paces each user and stays closed-loop when the server is slow. For latency under a
fixed arrival rate use the open-loop driver: ``python -m loadtests.openloop``.

Besides locust's own ``--csv`` files, ``<csv prefix>_summary.json`` is written at the end
with p50/p95/p99, throughput and failures per endpoint.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from locust import FastHttpUser, between, events, task

from loadtests._texts import SKEWED_GROUP_WEIGHTS, UNIFORM_GROUP_WEIGHTS, TextCorpus, load_corpus, make_items

logger = logging.getLogger(__name__)
POOL_SIZE = 4096


@events.init_command_line_parser.add_listener
def _add_arguments(parser: Any) -> None:
    parser.add_argument(
        "--toxic-fraction", type=float, default=0.2, help="share of toxic texts for MixedUser"
    )
    parser.add_argument("--batch-size", type=int, default=16, help="items per /classify_batch for BatchUser")
    parser.add_argument(
        "--think-time", type=float, default=0.0, help="max seconds a user waits between requests"
    )
    parser.add_argument("--seed", type=int, default=0)


class _Pools:
    """Request bodies built once per locust process (not per user), lazily."""

    def __init__(self) -> None:
        self._corpus: TextCorpus | None = None
        self._cache: dict[tuple[str, float, int], list[dict[str, str]]] = {}

    def items(self, kind: str, *, toxic_fraction: float = 0.0, seed: int = 0) -> list[dict[str, str]]:
        key = (kind, toxic_fraction, seed)
        if key not in self._cache:
            if self._corpus is None:
                self._corpus = load_corpus()
            weights = SKEWED_GROUP_WEIGHTS if kind == "skewed" else UNIFORM_GROUP_WEIGHTS
            self._cache[key] = make_items(
                self._corpus, POOL_SIZE, toxic_fraction=toxic_fraction, group_weights=weights, seed=seed
            )
        return self._cache[key]


POOLS = _Pools()


class _FairgateUser(FastHttpUser):
    abstract = True
    kind = "uniform"
    toxic_fraction = 0.0

    def wait_time(self) -> float:  # type: ignore[override]
        think = float(getattr(self.environment.parsed_options, "think_time", 0.0) or 0.0)
        return between(0.0, think)(self) if think > 0 else 0.0

    def on_start(self) -> None:
        options = self.environment.parsed_options
        seed = int(getattr(options, "seed", 0) or 0)
        self._items = POOLS.items(self.kind, toxic_fraction=self._toxic_fraction(), seed=seed)
        self._next = hash(id(self)) % len(self._items)

    def _toxic_fraction(self) -> float:
        return self.toxic_fraction

    def _take(self, count: int = 1) -> list[dict[str, str]]:
        items = [self._items[(self._next + i) % len(self._items)] for i in range(count)]
        self._next = (self._next + count) % len(self._items)
        return items

    def _classify(self, item: dict[str, str], name: str) -> None:
        with self.client.post("/classify", json=item, name=name, catch_response=True) as response:
            if response.status_code != 200:
                response.failure(f"HTTP {response.status_code}")
            elif "action" not in (response.json() or {}):
                response.failure("response has no 'action'")


class SingleUser(_FairgateUser):
    weight = 4

    @task
    def classify(self) -> None:
        self._classify(self._take()[0], "/classify")


class BatchUser(_FairgateUser):
    weight = 1

    @task
    def classify_batch(self) -> None:
        size = int(getattr(self.environment.parsed_options, "batch_size", 16) or 16)
        with self.client.post(
            "/classify_batch",
            json={"items": self._take(size)},
            name=f"/classify_batch[{size}]",
            catch_response=True,
        ) as response:
            if response.status_code != 200:
                response.failure(f"HTTP {response.status_code}")
            else:
                body = response.json()
                results = body.get("results", body) if isinstance(body, dict) else body
                if not isinstance(results, list) or len(results) != size:
                    response.failure(f"expected {size} results")


class MixedUser(_FairgateUser):
    weight = 2
    kind = "mixed"

    def _toxic_fraction(self) -> float:
        return float(getattr(self.environment.parsed_options, "toxic_fraction", 0.2))

    @task
    def classify(self) -> None:
        self._classify(self._take()[0], "/classify [mixed]")


class SkewedGroupsUser(_FairgateUser):
    weight = 2
    kind = "skewed"

    @task
    def classify(self) -> None:
        self._classify(self._take()[0], "/classify [skewed groups]")


@events.quitting.add_listener
def _write_summary(environment: Any, **_: Any) -> None:
    """``<csv prefix>_summary.json``: the figures a person reads first, per endpoint."""
    prefix = getattr(environment.parsed_options, "csv_prefix", None)
    stats = environment.stats
    rows = []
    for entry in [*stats.entries.values(), stats.total]:
        rows.append(
            {
                "name": entry.name,
                "method": entry.method,
                "requests": entry.num_requests,
                "failures": entry.num_failures,
                "rps": round(entry.total_rps, 3),
                "p50_ms": entry.get_response_time_percentile(0.50),
                "p95_ms": entry.get_response_time_percentile(0.95),
                "p99_ms": entry.get_response_time_percentile(0.99),
                "max_ms": entry.max_response_time,
            }
        )
    summary = {"host": environment.host, "mode": "closed-loop", "endpoints": rows}
    text = json.dumps(summary, indent=2)
    if prefix:
        path = Path(f"{prefix}_summary.json")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n", encoding="utf-8")
        logger.info("summary written to %s", path)
    else:
        logger.info("summary: %s", text)
